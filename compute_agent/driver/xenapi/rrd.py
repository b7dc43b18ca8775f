"""Metrics from dom0's RRDs: one ``GET /rrd_updates`` per host and poll,
turned into per-VM and host figures.

xcp-rrdd keeps a round-robin database per running VM and per host and
serves their recent rows at ``/rrd_updates``. ``RrdPoller`` asks each
host it watches for everything at once (``host=true``, every resident
VM, ``cf=AVERAGE``), never one request per VM, streaming the answer
through rrd_parse. The first poll asks for the last ``window`` seconds
relative to dom0's own clock (a negative ``start``); each later poll
starts at the ``end`` dom0 gave last, so clock skew between the agent and
dom0 does not matter.

The poller's view is replaced by each poll: a VM missing from the new
legend is gone (stopped, migrated away), a new one appears. A VM still in
the legend whose new rows are all NaN keeps its previous values.

The figures (``vm_figures``, ``host_figures``) are rates and gauges as
rrdd stores them: ``cpuN`` is the fraction of one physical CPU a vCPU
used over the step, ``vif_*``/``vbd_*``/``pif_*`` are bytes per second,
``memory`` is bytes, ``memory_internal_free`` and the host's
``memory_*_kib`` are KiB.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.xenapi import errors
from compute_agent.driver.xenapi.rrd_parse import RrdUpdate, parse_json, parse_xml
from compute_agent.driver.xenapi.transport import TLSSettings

LOG = logging.getLogger(__name__)

FORMATS = ("xml", "json")


@dataclass
class HostSnapshot:
    """What one host's rrdd said at its last poll."""

    host_uuid: str
    sampled_at: float  # agent's clock, seconds since the epoch
    step: int
    end: int  # dom0's time of the newest row
    vms: dict[str, dict[str, float]] = field(default_factory=dict)
    host: dict[str, float] = field(default_factory=dict)


class RrdPoller:
    """Polls one host's ``/rrd_updates``. ``handle()`` gives a logged-in
    session reference (a secret: it goes in the query string and nowhere
    else); ``invalidate()`` is called when dom0 answers 401 to it."""

    def __init__(self, host_url: str, host_uuid: str, handle: Callable[[], str],
                 invalidate: Callable[[], None], tls: TLSSettings, *,
                 interval: int = 5, window: int = 60, fmt: str = "xml",
                 timeout: float = 30.0):
        if fmt not in FORMATS:
            raise exceptions.InvalidInput("metrics.rrd_format", f"must be one of {FORMATS}")
        self.host_url = host_url
        self.host_uuid = host_uuid
        self._handle = handle
        self._invalidate = invalidate
        self.tls = tls
        self.interval = interval
        self.window = window
        self.fmt = fmt
        self.timeout = timeout
        self._next_start: int | None = None
        self._lock = threading.Lock()
        self.snapshot: HostSnapshot | None = None
        self.requests = 0

    def _connection(self) -> http.client.HTTPConnection:
        u = urllib.parse.urlsplit(self.host_url)
        if u.scheme == "https":
            return http.client.HTTPSConnection(u.hostname or "", u.port,
                                               timeout=self.timeout, context=self.tls.context())
        return http.client.HTTPConnection(u.hostname or "", u.port, timeout=self.timeout)

    def _fetch(self, start: int) -> RrdUpdate:
        for attempt in (1, 2):
            query = {"start": str(start), "cf": "AVERAGE", "host": "true",
                     "interval": str(self.interval), "session_id": self._handle()}
            if self.fmt == "json":
                query["json"] = "true"
            conn = self._connection()
            try:
                self.requests += 1
                conn.request("GET", "/rrd_updates?" + urllib.parse.urlencode(query))
                resp = conn.getresponse()
                if resp.status == 401 and attempt == 1:
                    resp.read()
                    self._invalidate()  # the session died: log in again, once
                    continue
                if resp.status != 200:
                    raise exceptions.HypervisorError(
                        errors.redact_url(self.host_url), str(resp.status),
                        code="RRD_UPDATES_FAILED")
                return (parse_json if self.fmt == "json" else parse_xml)(resp)
            except (OSError, http.client.HTTPException) as e:
                raise exceptions.HypervisorUnavailable(
                    errors.redact_url(self.host_url), f"/rrd_updates: {e!r}") from None
            finally:
                conn.close()
        raise AssertionError("unreachable")

    def poll(self) -> HostSnapshot:
        """One request; the new snapshot (also kept as ``snapshot``)."""
        with self._lock:
            start = self._next_start if self._next_start is not None else -self.window
            update = self._fetch(start)
            previous = self.snapshot
            vms: dict[str, dict[str, float]] = {}
            for uuid, values in update.of_kind("vm").items():
                old = previous.vms.get(uuid, {}) if previous else {}
                vms[uuid] = {**old, **values}
            host_values = update.of_kind("host").get(self.host_uuid)
            if host_values is None:
                # a host answers for itself; the legend says under which uuid
                hosts = update.of_kind("host")
                host_values = next(iter(hosts.values()), {}) if len(hosts) == 1 else {}
            old_host = previous.host if previous else {}
            snap = HostSnapshot(self.host_uuid, time.time(), update.step or self.interval,
                                update.end, vms, {**old_host, **host_values})
            if update.end:
                self._next_start = update.end
            self.snapshot = snap
            return snap


# -- figures ----------------------------------------------------------------------------


def _indexed(values: dict[str, float], prefix: str) -> list[float]:
    found = sorted((int(k[len(prefix):]), v) for k, v in values.items()
                   if k.startswith(prefix) and k[len(prefix):].isdigit())
    return [v for _, v in found]


def _devices(values: dict[str, float], prefix: str, names: tuple[str, str]
             ) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key, v in values.items():
        if not key.startswith(prefix):
            continue
        device, _, what = key[len(prefix):].rpartition("_")
        if device and what in names:
            out.setdefault(device, {})[what] = v
    return out


def vm_figures(values: dict[str, float]) -> dict[str, Any]:
    """A VM's figures from its RRD values (pure)."""
    cpus = _indexed(values, "cpu")
    memory = values.get("memory")
    free_kib = values.get("memory_internal_free")
    vifs = _devices(values, "vif_", ("rx", "tx"))
    vbds = _devices(values, "vbd_", ("read", "write"))
    return {
        "cpu": {"count": len(cpus), "utilisation": cpus,
                "average": sum(cpus) / len(cpus) if cpus else None},
        "memory": {"total_bytes": int(memory) if memory is not None else None,
                   "free_bytes": int(free_kib * 1024) if free_kib is not None else None},
        "disks": [{"device": d, "read_bytes_per_second": v.get("read", 0.0),
                   "write_bytes_per_second": v.get("write", 0.0)}
                  for d, v in sorted(vbds.items())],
        "nics": [{"device": d, "rx_bytes_per_second": v.get("rx", 0.0),
                  "tx_bytes_per_second": v.get("tx", 0.0)}
                 for d, v in sorted(vifs.items())],
    }


def host_figures(values: dict[str, float]) -> dict[str, Any]:
    """The host's figures from its RRD values (pure)."""
    cpus = _indexed(values, "cpu")
    avg = values.get("cpu_avg")
    if avg is None and cpus:
        avg = sum(cpus) / len(cpus)
    total = values.get("memory_total_kib")
    free = values.get("memory_free_kib")
    pifs = _devices(values, "pif_", ("rx", "tx"))
    return {
        "cpu": {"count": len(cpus), "utilisation": cpus, "average": avg},
        "memory": {"total_bytes": int(total * 1024) if total is not None else None,
                   "free_bytes": int(free * 1024) if free is not None else None},
        "load_average": values.get("loadavg"),
        "nics": [{"device": d, "rx_bytes_per_second": v.get("rx", 0.0),
                  "tx_bytes_per_second": v.get("tx", 0.0)}
                 for d, v in sorted(pifs.items())],
    }
