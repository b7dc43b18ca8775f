"""The end-to-end tests' view of instances and of dom0 (the processes and
the RPC client are in tests/functional/harness.py and rpc_client.py).

- :func:`instance_spec` / :func:`watch` / :func:`finished_actions`: builds
  and what they go through, read over RPC and from the database.
- :func:`dom0_inventory` / :func:`assert_dom0_matches_db`: what dom0 holds,
  read through a separate XenAPI SDK session over HTTP, against the database.

Every wait polls with a deadline.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from compute_agent import exceptions
from compute_agent.db.api import Database
from compute_agent.rpc.rpcapi import ComputeAPI
from tests.functional.harness import SETTLE_S, SimProcess, wait_until

# Keys the agent writes into the other_config of what it creates in dom0
# (compute_agent/driver/xenapi/ownership.py); spelled out here on purpose:
# the test checks the agent's promise, not its constant.
INSTANCE_MARK = "compute_agent_instance_uuid"
HOST_MARK = "compute_agent_host"
NULL_REF = "OpaqueRef:NULL"
# The image cache's base VDIs (compute_agent/driver/xenapi/image_cache.py):
# the agent's, but no instance's.
IMAGE_CACHE_MARK = "compute_agent_image"

# power_state numbers of the RPC contract and the xapi power state each means.
XAPI_POWER = {1: "Running", 3: "Paused", 4: "Halted", 7: "Suspended"}


# --------------------------------------------------------------------------- instances


def instance_spec(name: str = "e2e-vm", memory_mb: int = 256, **overrides: Any) -> dict:
    body: dict[str, Any] = {
        "uuid": str(uuidlib.uuid4()), "name": name,
        "flavor": {"vcpus": 1, "memory_mb": memory_mb, "root_gb": 1},
        "image": {"id": None, "url": None, "disk_format": None},
        "networks": [], "metadata": {},
    }
    body.update(overrides)
    return body


def is_settled(inst: dict) -> bool:
    return inst["task_state"] is None and inst["vm_state"] != "building"


StateKey = tuple[str, Any, int]


def state_of(inst: dict) -> StateKey:
    return (inst["vm_state"], inst["task_state"], inst["power_state"])


def watch(api: ComputeAPI, host: str | None, uuid: str,
          until: Callable[[dict], bool] = is_settled, timeout: float = SETTLE_S,
          step: float = 0.02) -> tuple[dict, list[StateKey], list[int]]:
    """Poll get_instance until ``until(instance)``. Returns the last
    instance, the distinct (vm_state, task_state, power_state) seen in
    order, and every progress value read. INSTANCE_NOT_FOUND counts as "not
    yet" (a build cast the agent has not consumed)."""
    deadline = time.monotonic() + timeout
    seen: list[StateKey] = []
    progress: list[int] = []
    inst: dict | None = None
    while True:
        try:
            inst = api.get_instance(host, uuid)
        except exceptions.InstanceNotFound:
            inst = None
        if inst is not None:
            key = state_of(inst)
            if not seen or seen[-1] != key:
                seen.append(key)
            progress.append(inst["progress"])
            if until(inst):
                return inst, seen, progress
        if time.monotonic() >= deadline:
            pytest.fail(f"instance {uuid} did not settle within {timeout} s; last {inst}; "
                        f"seen {seen}")
        time.sleep(step)


def finished_actions(db: Database, uuid: str, count: int) -> list[tuple[str, str]]:
    """(action, result) of the instance's ``count`` actions, once all are
    finished: a refused request's action is recorded after the refusal
    went back to the caller, so a reader may be quicker."""
    def check() -> list[tuple[str, str]] | None:
        actions = db.list_actions(uuid)
        if len(actions) >= count and all(a["result"] for a in actions):
            return [(a["action"], a["result"]) for a in actions]
        return None

    return wait_until(check, SETTLE_S, f"{count} finished actions of {uuid}")


# --------------------------------------------------------------------------- dom0 vs database


@dataclass
class Inventory:
    """What dom0 holds, as the agent marked it."""

    vms: dict[str, list[dict]] = field(default_factory=dict)  # instance uuid -> VM records
    vdis: dict[str, list[dict]] = field(default_factory=dict)  # instance uuid -> VDI records
    vm_refs: set[str] = field(default_factory=set)
    vdi_refs: set[str] = field(default_factory=set)
    dangling_vbds: list[dict] = field(default_factory=list)  # VBDs of no VM, or of a gone VDI
    dangling_vifs: list[dict] = field(default_factory=list)
    vbds: dict[str, dict] = field(default_factory=dict)
    cached_images: list[dict] = field(default_factory=list)  # the image cache's VDIs


def dom0_inventory(xenapi: Any, agent_host: str) -> Inventory:
    inv = Inventory()
    all_vms = xenapi.VM.get_all_records()
    all_vdis = xenapi.VDI.get_all_records()
    inv.vm_refs = set(all_vms)
    inv.vdi_refs = set(all_vdis)
    for ref, rec in all_vms.items():
        other = rec["other_config"]
        if rec["is_control_domain"] or other.get(HOST_MARK) != agent_host:
            continue
        rec = dict(rec, ref=ref)
        inv.vms.setdefault(other.get(INSTANCE_MARK, ""), []).append(rec)
    for ref, rec in all_vdis.items():
        other = rec["other_config"]
        if other.get(HOST_MARK) != agent_host:
            continue
        if other.get(IMAGE_CACHE_MARK) and not other.get(INSTANCE_MARK):
            inv.cached_images.append(dict(rec, ref=ref))  # the image cache's base
            continue
        inv.vdis.setdefault(other.get(INSTANCE_MARK, ""), []).append(dict(rec, ref=ref))
    inv.vbds = xenapi.VBD.get_all_records()
    for ref, vbd in inv.vbds.items():
        if vbd["VM"] not in all_vms or (vbd["VDI"] != NULL_REF and vbd["VDI"] not in all_vdis):
            inv.dangling_vbds.append(dict(vbd, ref=ref))
    for ref, vif in xenapi.VIF.get_all_records().items():
        if vif["VM"] not in all_vms:
            inv.dangling_vifs.append(dict(vif, ref=ref))
    return inv


# Marks of a rescue VM and of the disks of a rescue and a resize
# (compute_agent/driver/xenapi/ownership.py), spelled out on purpose.
RESCUE_MARK = "compute_agent_rescue"
DISK_MARK = "compute_agent_disk"
WITH_VM = ("active", "stopped", "paused", "suspended", "rescued", "resized")


def _split_rescue(inst: dict, vms: list[dict], vdis: list[dict]) -> tuple[list, list]:
    """For a rescued instance: check its rescue VM (running the power state
    the database shows, its rescue disk first, the instance's root disk
    second) and return the instance's own VMs and disks without it."""
    rescues = [v for v in vms if v["other_config"].get(RESCUE_MARK) == "true"]
    own = [v for v in vms if v not in rescues]
    if inst["vm_state"] != "rescued":
        assert rescues == [], f"rescue VM left for {inst['vm_state']} {inst['uuid']}"
        return own, vdis
    assert len(rescues) == 1, f"rescued {inst['uuid']} has {len(rescues)} rescue VMs"
    assert rescues[0]["power_state"] == XAPI_POWER[inst["power_state"]], (inst, rescues)
    assert own and own[0]["power_state"] == "Halted", "the rescued VM is not halted"
    rescue_disks = [d for d in vdis if d["other_config"].get(DISK_MARK) == "rescue"]
    assert len(rescue_disks) == 1, f"rescued {inst['uuid']}: rescue disks {rescue_disks}"
    assert set(rescues[0]["VBDs"]) >= set(rescue_disks[0]["VBDs"])
    return own, [d for d in vdis if d not in rescue_disks]


def assert_dom0_matches_db(sim: SimProcess, db: Database, agent_host: str) -> dict[str, int]:
    """Every instance of ``agent_host`` in the database is settled and dom0
    agrees with it: exactly one marked VM per live instance (in the power
    state the database shows, with its root VDI attached; a rescued one also
    its rescue VM and disk, a resized one the backup of its root disk), no
    VM and no VDI for a deleted instance or an error instance without a VM,
    no VM or VDI marked for an instance the database does not have, and no
    VBD or VIF left without its VM. Returns the count of instances per
    vm_state."""
    insts = db.list_instances(host=agent_host, include_deleted=True, internal=True)
    with sim.session() as xenapi:
        inv = dom0_inventory(xenapi, agent_host)
    counts: dict[str, int] = {}
    live: set[str] = set()
    for inst in insts:
        uuid = inst["uuid"]
        counts[inst["vm_state"]] = counts.get(inst["vm_state"], 0) + 1
        vms, vdis = inv.vms.get(uuid, []), inv.vdis.get(uuid, [])
        assert inst["task_state"] is None, f"not settled: {inst}"
        has_vm = inst["vm_state"] in WITH_VM or (
            inst["vm_state"] == "error" and inst["power_state"] != 0)
        if inst["vm_state"] == "error":
            assert inst["fault"] is not None, f"error without a fault: {inst}"
        if not has_vm:
            assert vms == [], f"{inst['vm_state']} instance {uuid} has VMs in dom0: {vms}"
            assert vdis == [], f"{inst['vm_state']} instance {uuid} left VDIs: {vdis}"
            continue
        live.add(uuid)
        vms, vdis = _split_rescue(inst, vms, vdis)
        assert len(vms) == 1, f"instance {uuid} has {len(vms)} VMs in dom0"
        vm = vms[0]
        backups = [d for d in vdis if d["other_config"].get(DISK_MARK) == "resize-backup"]
        assert len(backups) == (inst["vm_state"] == "resized"), (
            f"{inst['vm_state']} instance {uuid} has resize backups {backups}")
        vdis = [d for d in vdis if d not in backups]
        if inst["vm_state"] == "rescued":
            pass  # the power state shown is the rescue VM's (checked above)
        elif inst["power_state"] in XAPI_POWER:
            assert vm["power_state"] == XAPI_POWER[inst["power_state"]], (inst, vm["power_state"])
        if inst.get("vm_ref"):
            assert inst["vm_ref"] == vm["ref"], "the database names another VM"
        attached = {inv.vbds[b]["VDI"] for b in vm["VBDs"] if b in inv.vbds}
        assert {d["ref"] for d in vdis} == attached - {NULL_REF}, (
            f"VDIs marked for {uuid} are not the disks of its VM")
        root_gb = (inst.get("flavor") or {}).get("root_gb") or 0
        if root_gb:
            assert [int(d["virtual_size"]) for d in vdis] == [root_gb * 1024**3]
    unknown_vms = set(inv.vms) - live
    assert not unknown_vms, f"VMs in dom0 for no live instance: {unknown_vms}"
    unknown_vdis = set(inv.vdis) - live
    assert not unknown_vdis, f"VDIs in dom0 for no live instance: {unknown_vdis}"
    assert inv.dangling_vbds == [], f"VBDs left without their VM or VDI: {inv.dangling_vbds}"
    assert inv.dangling_vifs == [], f"VIFs left without their VM: {inv.dangling_vifs}"
    return counts
