"""Whether a VM can run on a host, and which host VM.start / VM.resume
pick: the checks of xapi's assert_can_boot_here (host live and enabled,
SRs plugged, networks present, memory, CPUs) and xapi's rule that a VDI
which isn't sharable has at most one writer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xapisim.errors import XenAPIError
from xapisim.memory import assert_enough_memory
from xapisim.sr_state import sr_plugged_on

if TYPE_CHECKING:
    from xapisim.services import SimServices
    from xapisim.store import Store


def host_live(sim: SimServices, host: str) -> bool:
    store = sim.store
    if host in sim.failed_hosts:
        return False
    metrics = store.raw("host", host)["metrics"]
    return not store.has("host_metrics", metrics) or store.raw("host_metrics", metrics)["live"]


def vm_srs(store: Store, vm: str, with_suspend: bool = True) -> list[str]:
    rec = store.raw("VM", vm)
    vdis = []
    for vbd in rec["VBDs"]:
        if not store.has("VBD", vbd):
            continue
        b = store.raw("VBD", vbd)
        if not b["empty"] and store.has("VDI", b["VDI"]):
            vdis.append(b["VDI"])
    if with_suspend and rec["power_state"] == "Suspended" and store.has("VDI", rec["suspend_VDI"]):
        vdis.append(rec["suspend_VDI"])
    srs: list[str] = []
    for vdi in vdis:
        sr = store.raw("VDI", vdi)["SR"]
        if sr not in srs:
            srs.append(sr)
    return srs


def validate_basic(store: Store, vm: str) -> None:
    rec = store.raw("VM", vm)
    if rec["VCPUs_max"] < 1:
        raise XenAPIError("INVALID_VALUE", "VCPUs_max", str(rec["VCPUs_max"]))
    if rec["VCPUs_at_startup"] < 1:
        raise XenAPIError("INVALID_VALUE", "VCPUs-at-startup", str(rec["VCPUs_at_startup"]))
    if rec["VCPUs_at_startup"] > rec["VCPUs_max"]:
        raise XenAPIError("VALUE_NOT_SUPPORTED", "VCPUs-at-startup",
                          str(rec["VCPUs_at_startup"]), "value greater than VCPUs-max")
    m = (rec["memory_static_min"], rec["memory_dynamic_min"], rec["memory_dynamic_max"],
         rec["memory_static_max"])
    if not (0 <= m[0] <= m[1] <= m[2] <= m[3]) or m[3] == 0:
        raise XenAPIError("MEMORY_CONSTRAINT_VIOLATION",
                          "static_min <= dynamic_min <= dynamic_max <= static_max")
    if rec["HVM_shadow_multiplier"] < 1.0:
        raise XenAPIError("INVALID_VALUE", "HVM_shadow_multiplier",
                          str(rec["HVM_shadow_multiplier"]))
    for vbd in rec["VBDs"]:
        b = store.raw("VBD", vbd)
        if not b["empty"] and not store.has("VDI", b["VDI"]):
            raise XenAPIError("VM_REQUIRES_VDI", vm, b["VDI"])


def assert_can_boot_here(sim: SimServices, vm: str, host: str, memory: bool = True) -> None:
    """xapi's assert_can_boot_here, for the checks the simulator models."""
    store = sim.store
    rec = store.raw("VM", vm)
    validate_basic(store, vm)
    if not host_live(sim, host):
        raise XenAPIError("HOST_OFFLINE", host)
    local_move = rec["power_state"] == "Running" and rec["resident_on"] == host
    if not rec["is_control_domain"] and not local_move and not store.raw("host", host)["enabled"]:
        raise XenAPIError("HOST_DISABLED", host)
    for sr in vm_srs(store, vm):
        if not sr_plugged_on(store, sr, host):
            raise XenAPIError("VM_REQUIRES_SR", vm, sr)
    host_nets = {store.raw("PIF", p)["network"] for p in store.raw("host", host)["PIFs"]
                 if store.has("PIF", p)}
    for vif in rec["VIFs"]:
        net = store.raw("VIF", vif)["network"]
        if store.has("network", net) and store.raw("network", net)["PIFs"] and \
                net not in host_nets:
            raise XenAPIError("VM_REQUIRES_NETWORK", vm, net)
    if memory:
        assert_enough_memory(store, vm, host)
    pcpus = int(store.raw("host", host)["cpu_info"].get("cpu_count", "0") or 0)
    if pcpus and rec["VCPUs_max"] > pcpus and \
            rec["platform"].get("vcpu-unrestricted") not in ("true", "1"):
        raise XenAPIError("HOST_NOT_ENOUGH_PCPUS", str(rec["VCPUs_max"]), str(pcpus))


def assert_vdi_shareable(store: Store, vbd: str, vdi: str, op: str) -> None:
    """xapi's VBD sharing check: a VDI that is not sharable can't be attached
    by a second VBD if either of them wants to write (VBDs of suspended VMs
    don't count)."""
    rec = store.raw("VBD", vbd)
    v = store.raw("VDI", vdi)
    if v["sharable"]:
        return
    others = []
    for other in v["VBDs"]:
        if other == vbd or not store.has("VBD", other):
            continue
        o = store.raw("VBD", other)
        if store.has("VM", o["VM"]) and store.raw("VM", o["VM"])["power_state"] == "Suspended":
            continue
        if o["currently_attached"] or o["current_operations"]:
            others.append(o)
    if any(o["mode"] == "RW" for o in others) or (rec["mode"] == "RW" and others):
        raise XenAPIError("VDI_IN_USE", vdi, op)


def assert_vbds_attachable(store: Store, vm: str) -> None:
    for vbd in store.raw("VM", vm)["VBDs"]:
        b = store.raw("VBD", vbd)
        if not b["empty"] and store.has("VDI", b["VDI"]) and not b["currently_attached"]:
            assert_vdi_shareable(store, vbd, b["VDI"], "attach")


def choose_host(sim: SimServices, vm: str) -> str:
    """Where VM.start / VM.resume put a VM: its affinity if it can boot there,
    else the first host that can; failing that, a host where only memory is
    short (the start then fails with HOST_NOT_ENOUGH_FREE_MEMORY there, as
    xapi retries placement without memory checks)."""
    store = sim.store
    rec = store.raw("VM", vm)
    hosts = store.refs("host")
    affinity = rec["affinity"]
    if affinity in hosts:
        hosts.remove(affinity)
        hosts.insert(0, affinity)
    validate_basic(store, vm)
    for memory in (True, False):
        for host in hosts:
            try:
                assert_can_boot_here(sim, vm, host, memory=memory)
            except XenAPIError:
                continue
            return host
    raise XenAPIError("NO_HOSTS_AVAILABLE")
