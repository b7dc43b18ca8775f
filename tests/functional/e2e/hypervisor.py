"""Each driver's hypervisor as the end-to-end tests see it, from outside the
agent, so that one suite checks both drivers against the database.

- :class:`XenAPIView`: dom0 read through a separate XenAPI SDK session over
  HTTP (the simulator is another process; the agent's marks tell its VMs
  and VDIs).
- :class:`LibvirtView`: libvirt's ``test:///<node file>`` lives inside the
  agent process, so no other process can open it; the view reads what the
  agent reports libvirt holds for it (``get_host_status``:
  ``hypervisor_instances`` and ``resources``), which the driver reads from
  libvirt on every call.

Both answer the same questions: which instances the hypervisor holds for
the agent and in what power state, does it agree with the database, and
the checks of a fresh build and of a reboot each can make.
"""

from __future__ import annotations

import base64
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from compute_agent.db.api import Database
from compute_agent.rpc.rpcapi import ComputeAPI
from tests.functional.harness import PASSWORD, USER, SimProcess

from .stack import WITH_VM, XAPI_POWER, assert_dom0_matches_db, dom0_inventory

MiB, GiB = 1024**2, 1024**3
NOSTATE, RUNNING, PAUSED = 0, 1, 3
ACTIVE_POWER = (RUNNING, PAUSED)  # a domain libvirt counts as active
XAPI_TO_POWER = {name: number for number, name in XAPI_POWER.items()}


class HypervisorView(Protocol):
    driver: str
    # True when each hypervisor call takes long enough (the simulator's
    # 0.2 s dom0 tasks) for a poll to see an operation in progress.
    observable_progress: bool

    def power_states(self) -> dict[str, int]:
        """instance uuid -> power state of every instance the hypervisor
        holds a VM (or disks) of for the agent."""

    def assert_matches_db(self, db: Database) -> dict[str, int]:
        """Every instance of the agent is settled and the hypervisor agrees
        with the database; the count of instances per vm_state."""

    def check_built(self, uuid: str, body: dict) -> Any:
        """A freshly built instance as its spec asked; returns a marker of
        its current boot (compared by check_rebooted)."""

    def check_rebooted(self, uuid: str, before: Any) -> Any:
        """The guest really restarted since ``before``; the new marker."""

    def root_disk_head(self, uuid: str, n: int) -> bytes:
        """The first ``n`` bytes of the instance's root disk."""


class XenAPIView:
    driver = "xenapi"
    observable_progress = True

    def __init__(self, sim: SimProcess, host: str):
        self.sim = sim
        self.host = host

    def power_states(self) -> dict[str, int]:
        with self.sim.session() as xenapi:
            inv = dom0_inventory(xenapi, self.host)
        found = {uuid: NOSTATE for uuid in inv.vdis}
        for uuid, vms in inv.vms.items():
            found[uuid] = XAPI_TO_POWER.get(vms[0]["power_state"], NOSTATE)
        return found

    def assert_matches_db(self, db: Database) -> dict[str, int]:
        return assert_dom0_matches_db(self.sim, db, self.host)

    def vm(self, uuid: str) -> dict:
        """The one VM dom0 has for the instance (by the agent's marks), with
        its VBD, VDI and VIF records."""
        with self.sim.session() as xenapi:
            found = [dict(rec, ref=ref) for ref, rec in xenapi.VM.get_all_records().items()
                     if rec["other_config"].get("compute_agent_instance_uuid") == uuid]
            assert len(found) == 1, f"dom0 has {len(found)} VMs for {uuid}"
            vm = found[0]
            vm["vbd_records"] = [xenapi.VBD.get_record(b) for b in vm["VBDs"]]
            vm["vdi_records"] = [xenapi.VDI.get_record(b["VDI"]) for b in vm["vbd_records"]]
            vm["vif_records"] = [xenapi.VIF.get_record(v) for v in vm["VIFs"]]
        return vm

    def check_built(self, uuid: str, body: dict) -> Any:
        vm = self.vm(uuid)
        flavor = body["flavor"]
        assert vm["power_state"] == "Running" and vm["name_label"] == body["name"]
        assert vm["other_config"]["compute_agent_host"] == self.host
        assert int(vm["memory_static_max"]) == flavor["memory_mb"] * MiB
        assert int(vm["VCPUs_at_startup"]) == flavor["vcpus"]
        assert [int(d["virtual_size"]) for d in vm["vdi_records"]] == [flavor["root_gb"] * GiB]
        assert [b["bootable"] for b in vm["vbd_records"]] == [True]
        assert len(vm["vif_records"]) == 1  # device 0 on the management network
        return vm["domid"]

    def check_rebooted(self, uuid: str, before: Any) -> Any:
        vm = self.vm(uuid)
        # dom0 really rebooted the guest: a new domain, reason recorded.
        assert vm["power_state"] == "Running"
        assert vm["domid"] != before
        assert vm["other_config"]["last_shutdown_reason"] == "rebooted"
        return vm["domid"]

    def root_disk_head(self, uuid: str, n: int) -> bytes:
        """Exported by dom0 (GET /export_raw_vdi of the root VDI)."""
        vm = self.vm(uuid)
        root = next(b for b in vm["vbd_records"] if b["userdevice"] == "0")
        with self.sim.session() as xenapi:
            vdi_uuid = xenapi.VDI.get_uuid(root["VDI"])
        req = urllib.request.Request(
            f"{self.sim.url}/export_raw_vdi?vdi={vdi_uuid}&format=raw", method="GET")
        req.add_header("Authorization", "Basic " + base64.b64encode(
            f"{USER}:{PASSWORD}".encode()).decode())
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - the simulator
            return resp.read(n)


class LibvirtView:
    driver = "libvirt"
    observable_progress = False  # test:/// answers every call at once

    def __init__(self, api: ComputeAPI, host: str, pool_dir: Path | None = None):
        self.api = api
        self.host = host
        self.pool_dir = pool_dir  # the storage pool's target directory

    def status(self) -> dict:
        status = self.api.get_host_status(self.host)
        assert status["hypervisor_available"] is True, status
        return status

    def power_states(self) -> dict[str, int]:
        return dict(self.status()["hypervisor_instances"])

    def assert_matches_db(self, db: Database) -> dict[str, int]:
        """libvirt holds a domain for exactly the instances the database
        shows with a VM, in the power state it shows, and nothing else (no
        domain, no volume) for deleted or failed builds; the running
        domains use the memory and vCPUs of those instances' flavors (the
        node holds the agent's domains only)."""
        rows = db.list_instances(host=self.host, include_deleted=True, internal=True)
        expected: dict[str, int] = {}
        counts: dict[str, int] = {}
        memory_mb = vcpus = 0
        for row in rows:
            counts[row["vm_state"]] = counts.get(row["vm_state"], 0) + 1
            assert row["task_state"] is None, f"not settled: {row}"
            if row["vm_state"] == "error":
                assert row["fault"] is not None, f"error without a fault: {row}"
            if row["vm_state"] in WITH_VM or (row["vm_state"] == "error"
                                              and row["power_state"] != NOSTATE):
                expected[row["uuid"]] = row["power_state"]
                if row["power_state"] in ACTIVE_POWER:
                    memory_mb += row["flavor"]["memory_mb"]
                    vcpus += row["flavor"]["vcpus"]
        status = self.status()
        held = status["hypervisor_instances"]
        assert held == expected, f"libvirt holds {held}, the database says {expected}"
        resources = status["resources"]
        assert (resources["memory_mb_used"], resources["vcpus_used"]) == (memory_mb, vcpus), (
            resources, memory_mb, vcpus)
        return counts

    def check_built(self, uuid: str, body: dict) -> Any:
        status = self.status()
        assert status["hypervisor_instances"].get(uuid) == RUNNING, status
        # The node holds only this agent's domains: the running ones'
        # memory and vCPUs include this one's flavor.
        resources = status["resources"]
        assert resources["running_vms"] >= 1
        assert resources["memory_mb_used"] >= body["flavor"]["memory_mb"]
        assert resources["vcpus_used"] >= body["flavor"]["vcpus"]
        return None

    def root_disk_head(self, uuid: str, n: int) -> bytes:
        """Read from the root volume's file in the pool's directory (the
        agent wrote it there: the test driver has no volume upload)."""
        assert self.pool_dir is not None, "a node without a pool directory"
        with open(self.pool_dir / f"instance-{uuid}-root", "rb") as f:
            return f.read(n)

    def check_rebooted(self, uuid: str, before: Any) -> Any:
        # test:/// restarts the domain inside one call; all that shows from
        # outside is that it runs.
        assert self.power_states().get(uuid) == RUNNING
        return None
