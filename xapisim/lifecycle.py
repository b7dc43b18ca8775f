"""What happens to a VM's domain, shared by the VM messages, the guest
events and host failure: which operations a VM allows in which state, host
selection and memory accounting, domain ids, booting and halting (with
the devices, metrics and guest agent that follow a domain), and the
``last_shutdown_*`` facts xapi records.

Rules follow xapi's xapi_vm_lifecycle.ml / xapi_vm_helpers.ml; callers hold
``store.lock`` for the state changes (it is re-entrant)."""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from xapisim.errors import XenAPIError
from xapisim.schema import NULL_REF
from xapisim.store import XDateTime, now_datetime

if TYPE_CHECKING:
    from xapisim.server import Simulator
    from xapisim.store import Store

MiB = 1024 * 1024
PAGES_PER_MIB = 256

# -- operations and power states ------------------------------------------------

# xapi's allowed_power_states, in xapi's order (the order shows in the
# "expected" parameter of VM_BAD_POWER_STATE).
_ALL = ("Halted", "Paused", "Suspended", "Running")
POWER_STATES_FOR_OP: dict[str, tuple[str, ...]] = {
    "import": (),
    "changing_VCPUs": ("Halted",),
    "changing_static_range": ("Halted",),
    "changing_memory_limits": ("Halted",),
    "changing_shadow_memory": ("Halted",),
    "changing_NVRAM": ("Halted",),
    "make_into_template": ("Halted",),
    "provision": ("Halted",),
    "start": ("Halted",),
    "start_on": ("Halted",),
    "create_vtpm": ("Halted",),
    "unpause": ("Paused",),
    "csvm": ("Suspended",),
    "resume": ("Suspended",),
    "resume_on": ("Suspended",),
    "changing_dynamic_range": ("Halted", "Running"),
    "clone": ("Halted",),
    "copy": ("Halted",),
    "create_template": ("Halted", "Suspended"),
    "destroy": ("Halted", "Suspended"),
    "export": ("Halted", "Suspended"),
    "hard_reboot": ("Paused", "Running"),
    "checkpoint": ("Paused", "Suspended", "Running"),
    "get_boot_record": ("Paused", "Suspended", "Running"),
    "shutdown": ("Paused", "Suspended", "Running"),
    "hard_shutdown": ("Paused", "Suspended", "Running"),
    "migrate_send": ("Halted", "Suspended", "Running"),
}
for _op in ("awaiting_memory_live", "call_plugin", "clean_reboot", "clean_shutdown",
            "changing_memory_live", "changing_shadow_memory_live", "changing_VCPUs_live",
            "data_source_op", "pause", "pool_migrate", "send_sysrq", "send_trigger",
            "snapshot_with_quiesce", "suspend"):
    POWER_STATES_FOR_OP[_op] = ("Running",)
for _op in ("assert_operation_valid", "metadata_export", "power_state_reset", "revert",
            "reverting", "snapshot", "update_allowed_operations", "query_services"):
    POWER_STATES_FOR_OP[_op] = _ALL

# Operations xapi never lists in allowed_operations.
IGNORED_OPS = {
    "create_template", "power_state_reset", "csvm", "get_boot_record", "send_sysrq",
    "send_trigger", "query_services", "shutdown", "call_plugin", "changing_memory_live",
    "awaiting_memory_live", "changing_memory_limits", "changing_shadow_memory_live",
    "changing_VCPUs", "assert_operation_valid", "data_source_op",
    "update_allowed_operations", "import", "reverting",
}
TEMPLATE_OPS = {
    "changing_dynamic_range", "changing_static_range", "changing_memory_limits",
    "changing_shadow_memory", "changing_VCPUs", "changing_NVRAM", "clone", "copy", "export",
    "metadata_export", "provision",
}
SNAPSHOT_OPS = {"revert", "clone", "copy", "export", "destroy", "hard_shutdown",
                "metadata_export"}
CONTROL_DOMAIN_OPS = {
    "data_source_op", "changing_memory_live", "awaiting_memory_live", "metadata_export",
    "changing_dynamic_range", "changing_memory_limits", "changing_static_range", "start",
    "start_on", "changing_VCPUs", "destroy",
}
# Operations that may run beside others (xapi's is_allowed_concurrently).
_LONG_COPIES = {"clone", "copy", "export"}
_SNAPSHOTS = {"snapshot", "checkpoint"}
_PAIRS = {(("snapshot_with_quiesce",), "snapshot"), (("migrate_send",), "metadata_export"),
          (("migrate_send",), "clean_shutdown"), (("migrate_send",), "clean_reboot")}

# xapi's Record_util.on_crash_behaviour_to_string, used for last_shutdown_action
ACTION_NAMES = {
    "destroy": "Destroy",
    "coredump_and_destroy": "Core dump and destroy",
    "restart": "Restart",
    "coredump_and_restart": "Core dump and restart",
    "preserve": "Preserve",
    "rename_restart": "Rename restart",
    "soft_reboot": "Restart",
}


def power_states_for(rec: dict[str, Any], op: str) -> tuple[str, ...]:
    states = POWER_STATES_FOR_OP.get(op, _ALL)
    if op in ("clone", "copy") and rec.get("is_a_snapshot"):
        states = ("Halted", "Suspended")
    if op in ("changing_VCPUs", "changing_static_range", "changing_memory_limits") and \
            rec.get("is_control_domain"):
        states = ("Halted", "Running")
    return states


def bad_power_state(vm: str, expected: tuple[str, ...] | list[str], actual: str) -> XenAPIError:
    return XenAPIError("VM_BAD_POWER_STATE", vm, ", ".join(s.lower() for s in expected),
                       actual.lower())


def concurrent_ok(op: str, current: list[str]) -> bool:
    if not current:
        return True
    if op == "hard_shutdown":
        return op not in current
    if op == "hard_reboot":
        return not any(o in ("hard_shutdown", "hard_reboot") for o in current)
    if (tuple(current), op) in _PAIRS:
        return True
    for group in (_LONG_COPIES, _SNAPSHOTS, {"get_boot_record"}):
        if op in group and all(o in group for o in current):
            return True
    return False


def vm_op_error(store: Store, vm: str, op: str) -> XenAPIError | None:
    """The first reason ``op`` is refused on ``vm`` now, in xapi's order of
    checks, or None."""
    rec = store.raw("VM", vm)
    blocked = rec.get("blocked_operations", {})
    if op in blocked:
        return XenAPIError("OPERATION_BLOCKED", vm, blocked[op])
    states = power_states_for(rec, op)
    if rec["power_state"] not in states:
        return bad_power_state(vm, states, rec["power_state"])
    current = rec.get("current_operations", {})
    if current and not concurrent_ok(op, list(current.values())):
        task, cur = next(iter(current.items()))
        return XenAPIError("OTHER_OPERATION_IN_PROGRESS", "VM", vm, cur, task)
    if rec["is_a_template"] and not rec.get("is_a_snapshot"):
        default = rec.get("is_default_template") or \
            rec["other_config"].get("default_template") in ("true", "1")
        if op not in TEMPLATE_OPS and not (op in ("destroy", "migrate_send") and not default):
            return XenAPIError("VM_IS_TEMPLATE", vm)
    if rec.get("is_a_snapshot") and op not in SNAPSHOT_OPS:
        return XenAPIError("OPERATION_NOT_ALLOWED", f"VM {vm} is a snapshot")
    if op == "provision" and not rec["is_a_template"]:
        return XenAPIError("OPERATION_NOT_ALLOWED", "Only templates can be provisioned")
    if op == "revert" and not rec.get("is_a_snapshot"):
        return XenAPIError("OPERATION_NOT_ALLOWED", "Only snapshots can be reverted")
    if rec["is_control_domain"]:
        if op in ("changing_VCPUs", "destroy") and rec["domid"] == 0:
            return XenAPIError("OPERATION_NOT_ALLOWED", "This operation is not allowed on dom0")
        if op not in CONTROL_DOMAIN_OPS:
            return XenAPIError("OPERATION_NOT_ALLOWED",
                               "This operation is not allowed on a control domain")
    if op == "snapshot_with_quiesce":
        return XenAPIError("VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED", vm, "VSS support removed")
    if op in ("suspend", "checkpoint", "pool_migrate", "migrate_send"):
        if rec["platform"].get("nomigrate") in ("true", "1") and rec["power_state"] != "Halted":
            return XenAPIError("VM_IS_IMMOBILE", vm)
    return None


def vm_allowed_operations(store: Store, vm: str) -> list[str]:
    ops = store.model.enums["vm_operations"]
    return [op for op in ops if op not in IGNORED_OPS and vm_op_error(store, vm, op) is None]


def assert_vm_op(store: Store, vm: str, op: str) -> None:
    err = vm_op_error(store, vm, op)
    if err is not None:
        raise err


# -- memory -------------------------------------------------------------------------


def _mib_up(nbytes: int) -> int:
    return -(-max(nbytes, 0) // MiB)


def _mib_of_pages(pages: int) -> int:
    return -(-pages // PAGES_PER_MIB)


def vm_memory_overhead(rec: dict[str, Any]) -> int:
    """xapi's Memory_check.vm_compute_memory_overhead, in bytes."""
    static_max_mib = _mib_up(rec["memory_static_max"])
    vcpus = max(int(rec["VCPUs_max"]), 0)
    kind = rec.get("domain_type") or "unspecified"
    if kind == "unspecified":
        kind = "hvm" if rec.get("HVM_boot_policy") else "pv"
    multiplier = rec.get("HVM_shadow_multiplier") or 1.0
    if kind == "pv":
        internal, multiplier, shim = 0, 1.0, 0
    elif kind == "pv_in_pvh":
        internal, shim = 1, 23 + static_max_mib // 90
    else:
        internal, shim = 1, 0
    shadow = max(1, int(_mib_of_pages(256 * vcpus + 2 * static_max_mib) * multiplier))
    mib = internal + 1 + shadow + _mib_of_pages(38 * vcpus) + shim
    return mib * MiB


def vm_start_memory(rec: dict[str, Any]) -> int:
    """Bytes a VM needs free on a host to start (xapi's dynamic_min policy)."""
    return _mib_up(rec["memory_dynamic_min"]) * MiB + vm_memory_overhead(rec)


def _footprint(store: Store, vm: str) -> tuple[int, int]:
    """(actual bytes in use, bytes it could shrink to) of a resident VM."""
    rec = store.raw("VM", vm)
    actual = 0
    if store.has("VM_metrics", rec["metrics"]):
        actual = store.raw("VM_metrics", rec["metrics"])["memory_actual"]
    overhead = rec["memory_overhead"]
    if rec["is_control_domain"]:
        return actual + overhead, actual + overhead
    return actual + overhead, min(actual, rec["memory_dynamic_min"]) + overhead


def host_free_memory(store: Store, host: str) -> int:
    h = store.raw("host", host)
    total = store.raw("host_metrics", h["metrics"])["memory_total"]
    used = sum(_footprint(store, vm)[0] for vm in h["resident_VMs"] if store.has("VM", vm))
    return total - h["memory_overhead"] - used


def host_free_memory_compressed(store: Store, host: str) -> int:
    """Free memory if every guest ballooned down to dynamic_min (xapi's
    host.compute_free_memory)."""
    h = store.raw("host", host)
    total = store.raw("host_metrics", h["metrics"])["memory_total"]
    used = sum(_footprint(store, vm)[1] for vm in h["resident_VMs"] if store.has("VM", vm))
    return total - h["memory_overhead"] - used


def refresh_host_memory(store: Store, host: str) -> None:
    if host == NULL_REF or not store.has("host", host):
        return
    metrics = store.raw("host", host)["metrics"]
    if store.has("host_metrics", metrics):
        store.update("host_metrics", metrics, memory_free=max(host_free_memory(store, host), 0),
                     last_updated=now_datetime())


# -- domids ---------------------------------------------------------------------------

_domids: weakref.WeakKeyDictionary[Any, dict[str, int]] = weakref.WeakKeyDictionary()
_domid_lock = threading.Lock()


def alloc_domid(sim: Simulator, host: str) -> int:
    """Xen gives each new domain the next id on its host; dom0 is 0."""
    with _domid_lock:
        counters = _domids.setdefault(sim, {})
        if host not in counters:
            store = sim.store
            used = [store.raw("VM", v)["domid"] for v in store.raw("host", host)["resident_VMs"]
                    if store.has("VM", v)]
            counters[host] = max([0, *used]) + 1
        domid = counters[host]
        counters[host] += 1
        return domid


# -- host checks ------------------------------------------------------------------------


def host_live(sim: Simulator, host: str) -> bool:
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


def sr_plugged_on(store: Store, sr: str, host: str) -> bool:
    if not store.has("SR", sr):
        return False
    for pbd in store.raw("SR", sr)["PBDs"]:
        p = store.raw("PBD", pbd)
        if p["host"] == host and p["currently_attached"]:
            return True
    return False


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


def assert_can_boot_here(sim: Simulator, vm: str, host: str, memory: bool = True) -> None:
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


def assert_enough_memory(store: Store, vm: str, host: str) -> None:
    rec = store.raw("VM", vm)
    needed = vm_start_memory(rec)
    available = host_free_memory_compressed(store, host)
    if rec["resident_on"] == host:
        available += _footprint(store, vm)[1]
    if available < needed:
        raise XenAPIError("HOST_NOT_ENOUGH_FREE_MEMORY", str(needed), str(available))


def choose_host(sim: Simulator, vm: str) -> str:
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


# -- state changes ------------------------------------------------------------------------


def _refresh(sim: Simulator, cls: str, refs: list[str]) -> None:
    for ref in refs:
        sim.refresh_allowed_operations(cls, ref)


def device_name(userdevice: str) -> str:
    """The guest device name of a VBD userdevice: 0 -> xvda, 1 -> xvdb, ..."""
    if userdevice.isdigit():
        n = int(userdevice)
        letters = ""
        n += 1
        while n:
            n, r = divmod(n - 1, 26)
            letters = chr(ord("a") + r) + letters
        return "xvd" + letters
    return userdevice


def _set_devices_attached(sim: Simulator, vm: str, attached: bool) -> None:
    store = sim.store
    rec = store.raw("VM", vm)
    for cls, field in (("VBD", "VBDs"), ("VIF", "VIFs")):
        for dev in rec[field]:
            if store.has(cls, dev):
                fields: dict[str, Any] = {"currently_attached": attached}
                if attached and cls == "VBD" and not store.raw(cls, dev)["device"]:
                    fields["device"] = device_name(store.raw(cls, dev)["userdevice"])
                if not attached:
                    fields["current_operations"] = {}
                if store.raw(cls, dev)["currently_attached"] != attached or not attached:
                    store.update(cls, dev, **fields)
                sim.refresh_allowed_operations(cls, dev)
                if cls == "VBD":
                    vdi = store.raw("VBD", dev)["VDI"]
                    if store.has("VDI", vdi):
                        sim.refresh_allowed_operations("VDI", vdi)


def _ensure_metrics(store: Store, vm: str) -> str:
    metrics = store.raw("VM", vm)["metrics"]
    if not store.has("VM_metrics", metrics):
        metrics = store.create("VM_metrics", {"VCPUs_utilisation": {}, "start_time": XDateTime(
            "19700101T00:00:00Z")})
        store.update("VM", vm, metrics=metrics)
    return metrics


def boot(sim: Simulator, vm: str, host: str, paused: bool = False,
         start_time: XDateTime | None = None) -> None:
    """Give ``vm`` a new domain on ``host`` (start, resume, restart)."""
    store = sim.store
    with store.lock:
        rec = store.raw("VM", vm)
        old_host = rec["resident_on"]
        drop_guest_metrics(sim, vm)
        overhead = vm_memory_overhead(rec)
        store.update("VM", vm, memory_overhead=overhead, resident_on=host,
                     scheduled_to_be_resident_on=NULL_REF)
        # Balloon up to dynamic_max if the host has room, never below dynamic_min.
        spare = host_free_memory(store, host) - overhead
        actual = max(rec["memory_dynamic_min"], min(rec["memory_dynamic_max"], spare))
        metrics = _ensure_metrics(store, vm)
        vcpus = rec["VCPUs_at_startup"]
        kind = rec["domain_type"]
        if kind == "unspecified":
            kind = "hvm" if rec["HVM_boot_policy"] else "pv"
        store.update("VM_metrics", metrics, memory_actual=actual, VCPUs_number=vcpus,
                     VCPUs_utilisation={i: 0.0 for i in range(vcpus)},
                     VCPUs_CPU={i: i % max(1, sim.host_cpus) for i in range(vcpus)},
                     start_time=start_time or now_datetime(), last_updated=now_datetime(),
                     state=["paused"] if paused else [], current_domain_type=kind,
                     hvm=kind != "pv", install_time=store.raw("VM_metrics", metrics)[
                         "install_time"] if store.raw("VM_metrics", metrics)["install_time"]
                     != "19700101T00:00:00Z" else now_datetime())
        store.update("VM", vm, domid=alloc_domid(sim, host), memory_target=actual,
                     power_state="Paused" if paused else "Running",
                     domarch="x64", suspend_VDI=NULL_REF)
        _set_devices_attached(sim, vm, True)
        _replace_console(sim, vm, host)
        refresh_host_memory(store, host)
        if old_host != host:
            refresh_host_memory(store, old_host)
        sim.refresh_allowed_operations("VM", vm)
        domid = rec["domid"]
    if not paused:
        schedule_guest_agent(sim, vm, domid)


def _replace_console(sim: Simulator, vm: str, host: str | None) -> None:
    """A running domain has an RFB console on its host; xapi makes it when
    the domain is built and removes it with the domain."""
    store = sim.store
    for console in list(store.raw("VM", vm)["consoles"]):
        store.destroy("console", console)
    if host is None:
        return
    console = store.create("console", {"VM": vm, "protocol": "rfb"})
    uuid = store.raw("console", console)["uuid"]
    address = store.raw("host", host)["address"]
    store.update("console", console,
                 location=f"{sim.scheme}://{address}:{sim.port}/console?uuid={uuid}")


def halt(sim: Simulator, vm: str) -> None:
    """The domain is gone: Halted, no host, devices detached."""
    store = sim.store
    with store.lock:
        rec = store.raw("VM", vm)
        host = rec["resident_on"]
        drop_guest_metrics(sim, vm)
        metrics = rec["metrics"]
        if store.has("VM_metrics", metrics):
            store.update("VM_metrics", metrics, memory_actual=0, VCPUs_utilisation={},
                         VCPUs_CPU={}, state=[], current_domain_type="unspecified",
                         last_updated=now_datetime())
        store.update("VM", vm, power_state="Halted", resident_on=NULL_REF,
                     scheduled_to_be_resident_on=NULL_REF, domid=-1, requires_reboot=False)
        _set_devices_attached(sim, vm, False)
        _replace_console(sim, vm, None)
        refresh_host_memory(store, host)
        sim.refresh_allowed_operations("VM", vm)


def suspend(sim: Simulator, vm: str, suspend_vdi: str) -> None:
    """The domain's memory went to ``suspend_vdi``; devices stay attached."""
    store = sim.store
    with store.lock:
        rec = store.raw("VM", vm)
        host = rec["resident_on"]
        drop_guest_metrics(sim, vm)
        metrics = rec["metrics"]
        if store.has("VM_metrics", metrics):
            store.update("VM_metrics", metrics, memory_actual=0, state=[],
                         last_updated=now_datetime())
        store.update("VM", vm, power_state="Suspended", resident_on=NULL_REF, domid=-1,
                     suspend_VDI=suspend_vdi, last_booted_record=rec["last_booted_record"] or
                     f"<simulated boot record of {rec['uuid']}>")
        _replace_console(sim, vm, None)
        refresh_host_memory(store, host)
        sim.refresh_allowed_operations("VM", vm)


def set_paused(sim: Simulator, vm: str, paused: bool) -> None:
    store = sim.store
    with store.lock:
        rec = store.raw("VM", vm)
        store.update("VM", vm, power_state="Paused" if paused else "Running")
        if store.has("VM_metrics", rec["metrics"]):
            store.update("VM_metrics", rec["metrics"], state=["paused"] if paused else [],
                         last_updated=now_datetime())
        sim.refresh_allowed_operations("VM", vm)
        domid = rec["domid"]
    if not paused:
        schedule_guest_agent(sim, vm, domid)


def reboot(sim: Simulator, vm: str) -> None:
    """A new domain on the same host (xenopsd destroys and rebuilds it)."""
    store = sim.store
    with store.lock:
        rec = store.raw("VM", vm)
        host = rec["resident_on"]
        _set_devices_attached(sim, vm, False)
        boot(sim, vm, host)


def record_shutdown(store: Store, vm: str, reason: str, initiator: str, action: str) -> None:
    """xapi's record_shutdown_details: four other_config keys, replaced on
    every shutdown or reboot. reason is halted|rebooted|crashed|suspended,
    initiator external (an API call) or internal (the guest)."""
    other = dict(store.raw("VM", vm)["other_config"])
    other.update({
        "last_shutdown_reason": reason,
        "last_shutdown_initiator": initiator,
        "last_shutdown_action": ACTION_NAMES.get(action, action),
        "last_shutdown_time": str(now_datetime()),
    })
    store.update("VM", vm, other_config=other)


# -- the guest agent --------------------------------------------------------------------------


def drop_guest_metrics(sim: Simulator, vm: str) -> None:
    store = sim.store
    gm = store.raw("VM", vm)["guest_metrics"]
    if gm != NULL_REF:
        store.update("VM", vm, guest_metrics=NULL_REF)
        if store.has("VM_guest_metrics", gm):
            store.destroy("VM_guest_metrics", gm)


def guest_agent_delay(sim: Simulator) -> float:
    """How long after boot the guest agent reports: the configured duration
    of the pseudo-message ``guest.agent`` (the task duration by default)."""
    return sim.faults.duration("guest.agent")


def schedule_guest_agent(sim: Simulator, vm: str, domid: int) -> None:
    def report() -> None:
        if sim.running:
            publish_guest_metrics(sim, vm, domid)

    delay = guest_agent_delay(sim)
    if delay <= 0:
        report()
        return
    t = threading.Timer(delay, report)
    t.daemon = True
    t.start()


def _guest_os(rec: dict[str, Any]) -> dict[str, str]:
    label = (rec["other_config"].get("base_template_name") or rec["name_label"]).lower()
    if "windows" in label:
        return {"name": "Microsoft Windows Server 2022 Standard|C:\\Windows|\\Device\\Harddisk0",
                "distro": "windows", "major": "10", "minor": "0"}
    if "ubuntu" in label:
        return {"name": "Ubuntu 22.04.4 LTS", "uname": "5.15.0-105-generic",
                "distro": "ubuntu", "major": "22", "minor": "04"}
    return {"name": "Debian GNU/Linux 12 (bookworm)", "uname": "6.1.0-21-amd64",
            "distro": "debian", "major": "12", "minor": "5"}


def publish_guest_metrics(sim: Simulator, vm: str, domid: int) -> None:
    """What a guest agent writes once the guest is up: OS, IPs of its VIFs,
    PV drivers. Skipped if the domain changed meanwhile."""
    store = sim.store
    with store.lock:
        if not store.has("VM", vm):
            return
        rec = store.raw("VM", vm)
        if rec["power_state"] != "Running" or rec["domid"] != domid or \
                rec["guest_metrics"] != NULL_REF:
            return
        networks: dict[str, str] = {}
        for vif in rec["VIFs"]:
            if not store.has("VIF", vif):
                continue
            v = store.raw("VIF", vif)
            device = v["device"] or "0"
            mac = v["MAC"] or "00:00:00:00:00:00"
            octets = [int(x, 16) for x in mac.split(":")[-2:]] if ":" in mac else [0, 1]
            networks[f"{device}/ip"] = f"10.{int(device) % 256 if device.isdigit() else 0}." \
                                       f"{octets[0]}.{max(octets[1], 2) % 254 + 1}"
            networks[f"{device}/ipv4/0"] = networks[f"{device}/ip"]
        gm = store.create("VM_guest_metrics", {
            "os_version": _guest_os(rec),
            "PV_drivers_version": {"major": "9", "minor": "3", "micro": "3", "build": "0"},
            "PV_drivers_up_to_date": True,
            "PV_drivers_detected": True,
            "networks": networks,
            "disks": {},
            "memory": {},
            "other": {"feature-shutdown": "1", "feature-poweroff": "1", "feature-reboot": "1",
                      "feature-suspend": "1", "feature-vcpu-hotplug": "1",
                      "has-vendor-device": "0", "platform-feature-multiprocessor-suspend": "1"},
            "live": True,
            "can_use_hotplug_vbd": "yes",
            "can_use_hotplug_vif": "yes",
            "last_updated": now_datetime(),
        })
        store.update("VM", vm, guest_metrics=gm)
        sim.refresh_allowed_operations("VM", vm)
