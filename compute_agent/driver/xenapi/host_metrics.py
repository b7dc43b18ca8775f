"""The host's metrics for the manager: one RrdPoller (rrd.py) on the host
this agent manages, its VMs mapped to the instances the agent made them
for, and the latest result kept for get_diagnostics and the host's CPU
utilisation.

The poller uses a dedicated session of the pool (its handle goes in the
``/rrd_updates`` query string); a session dom0 no longer knows is
replaced on the next poll. VM uuids map to instance uuids through the
VMs' agent marks, read with one query of the host's resident VMs when the
RRDs name a VM not seen before; VMs that are not this agent's (the
control domain, other tools' guests) are remembered as such and left out.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.xenapi import ownership, rrd
from compute_agent.driver.xenapi.host import HostInfo
from compute_agent.driver.xenapi.session import SessionPool, XenAPISession
from compute_agent.driver.xenapi.vm_ops import VMOps


class HostMetrics:
    def __init__(self, pool: SessionPool, host_info: HostInfo, vmops: VMOps, agent_host: str,
                 interval: int, fmt: str):
        self.pool = pool
        self.host_info = host_info
        self.vmops = vmops
        self.agent_host = agent_host
        self.interval = interval
        self.fmt = fmt
        self._lock = threading.Lock()
        self._poller: rrd.RrdPoller | None = None
        self._session: XenAPISession | None = None
        self._instance_of: dict[str, str | None] = {}
        self.latest: dict[str, Any] | None = None

    def _make_poller(self) -> rrd.RrdPoller:
        ref = self.host_info.host_ref()
        rec = self.pool.call("host.get_record", ref)
        base = urllib.parse.urlsplit(self.pool.url)
        address = rec["address"]
        host = f"[{address}]" if ":" in address else address
        netloc = f"{host}:{base.port}" if base.port else host
        url = urllib.parse.urlunsplit((base.scheme, netloc, "", "", ""))
        self._session = session = self.pool.dedicated()
        return rrd.RrdPoller(url, rec["uuid"], session.handle, session.forget,
                             self.pool.settings.tls, interval=5,
                             window=max(60, 2 * self.interval), fmt=self.fmt)

    def _map_vms(self, vm_uuids: list[str]) -> None:
        if all(u in self._instance_of for u in vm_uuids):
            return
        ref = self.host_info.host_ref()
        recs = self.pool.call("VM.get_all_records_where", f'field "resident_on" = "{ref}"')
        for rec in recs.values():
            mine = ownership.owned_by(rec, self.agent_host) and not rec.get("is_a_snapshot")
            self._instance_of[rec["uuid"]] = ownership.instance_of(rec) if mine else None

    def poll(self) -> dict[str, Any]:
        with self._lock:
            if self._poller is None:
                self._poller = self._make_poller()
            snap = self._poller.poll()
            self._map_vms(list(snap.vms))
            # forget VMs that left the host: the map stays as big as the host
            self._instance_of = {u: i for u, i in self._instance_of.items() if u in snap.vms}
            instances = {}
            for vm_uuid, values in snap.vms.items():
                inst = self._instance_of.get(vm_uuid)
                if inst:
                    instances[inst] = {"vm_uuid": vm_uuid, **rrd.vm_figures(values)}
            self.latest = {"host_uuid": snap.host_uuid, "sampled_at": snap.sampled_at,
                           "step": snap.step, "host": rrd.host_figures(snap.host),
                           "instances": instances}
            return self.latest

    def fresh(self) -> dict[str, Any] | None:
        """The latest poll if it is at most one interval old."""
        latest = self.latest
        if latest is not None and time.time() - latest["sampled_at"] <= self.interval:
            return latest
        return None

    def diagnostics(self, instance: dict[str, Any]) -> dict[str, Any]:
        uuid = instance["uuid"]
        latest = self.fresh() or self.poll()
        figures = latest["instances"].get(uuid)
        if figures is None:
            _ref, rec = self.vmops.require(instance)
            if rec.get("power_state") not in ("Running", "Paused"):
                raise exceptions.InstanceNotRunning(uuid, str(rec.get("power_state")).lower())
            # started since the last poll: its RRD is in the next one
            latest = self.poll()
            figures = latest["instances"].get(uuid) or {"vm_uuid": rec["uuid"],
                                                       **rrd.vm_figures({})}
        return {"sampled_at": latest["sampled_at"], "step": latest["step"], **figures}

    def host_cpu_utilisation(self) -> float | None:
        latest = self.fresh()
        if latest is not None:
            return latest["host"]["cpu"]["average"]
        try:
            return float(self.pool.call("host.query_data_source", self.host_info.host_ref(),
                                        "cpu_avg"))
        except exceptions.HypervisorError:
            return None  # a dom0 without the data source still reports the rest

    def close(self) -> None:
        if self._session is not None:
            self.pool.release_dedicated(self._session)
            self._session = None
