"""What happens to a VM's domain, shared by the VM messages, the guest
events and host failure: domain ids, booting, halting, suspending,
pausing and rebooting, with the devices, metrics and console that follow a
domain, and the ``last_shutdown_*`` facts xapi records.

Callers hold ``store.lock`` for the state changes (it is re-entrant)."""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from xapisim import guest_console
from xapisim.guest_agent import drop_guest_metrics, schedule_guest_agent
from xapisim.memory import host_free_memory, refresh_host_memory, vm_memory_overhead
from xapisim.schema import NULL_REF
from xapisim.store import XDateTime, now_datetime

if TYPE_CHECKING:
    from xapisim.services import SimServices
    from xapisim.store import Store

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


_domids: weakref.WeakKeyDictionary[Any, dict[str, int]] = weakref.WeakKeyDictionary()
_domid_lock = threading.Lock()


def alloc_domid(sim: SimServices, host: str) -> int:
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


def _set_devices_attached(sim: SimServices, vm: str, attached: bool) -> None:
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


def boot(sim: SimServices, vm: str, host: str, paused: bool = False,
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
        guest_console.booted(sim, host, rec["domid"], rec, vcpus, actual)
        refresh_host_memory(store, host)
        if old_host != host:
            refresh_host_memory(store, old_host)
        sim.refresh_allowed_operations("VM", vm)
        domid = rec["domid"]
    if not paused:
        schedule_guest_agent(sim, vm, domid)


def _replace_console(sim: SimServices, vm: str, host: str | None) -> None:
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


def _end_domain(sim: SimServices, vm: str, vm_fields: dict[str, Any],
                metrics_fields: dict[str, Any], detach_devices: bool) -> None:
    """The domain stops running (destroyed or saved): guest metrics, console
    and the host's memory go with it; ``vm_fields`` say what the VM is now."""
    store = sim.store
    with store.lock:
        rec = store.raw("VM", vm)
        host = rec["resident_on"]
        drop_guest_metrics(sim, vm)
        metrics = rec["metrics"]
        if store.has("VM_metrics", metrics):
            store.update("VM_metrics", metrics, memory_actual=0, state=[],
                         last_updated=now_datetime(), **metrics_fields)
        store.update("VM", vm, resident_on=NULL_REF, domid=-1, **vm_fields)
        if detach_devices:
            _set_devices_attached(sim, vm, False)
        _replace_console(sim, vm, None)
        refresh_host_memory(store, host)
        sim.refresh_allowed_operations("VM", vm)


def halt(sim: SimServices, vm: str) -> None:
    """The domain is gone: Halted, no host, devices detached."""
    _end_domain(sim, vm,
                {"power_state": "Halted", "scheduled_to_be_resident_on": NULL_REF,
                 "requires_reboot": False},
                {"VCPUs_utilisation": {}, "VCPUs_CPU": {}, "current_domain_type": "unspecified"},
                detach_devices=True)


def suspend(sim: SimServices, vm: str, suspend_vdi: str) -> None:
    """The domain's memory went to ``suspend_vdi``; devices stay attached."""
    with sim.store.lock:
        rec = sim.store.raw("VM", vm)
        boot_record = rec["last_booted_record"] or f"<simulated boot record of {rec['uuid']}>"
        _end_domain(sim, vm,
                    {"power_state": "Suspended", "suspend_VDI": suspend_vdi,
                     "last_booted_record": boot_record},
                    {}, detach_devices=False)


def set_paused(sim: SimServices, vm: str, paused: bool) -> None:
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


def reboot(sim: SimServices, vm: str) -> None:
    """A new domain on the same host (xenopsd destroys and rebuilds it)."""
    store = sim.store
    with store.lock:
        rec = store.raw("VM", vm)
        host = rec["resident_on"]
        _set_devices_attached(sim, vm, False)
        boot(sim, vm, host)


def move(sim: SimServices, vm: str, host: str) -> None:
    """The domain now lives on ``host`` under a new domid."""
    store = sim.store
    rec = store.raw("VM", vm)
    old = rec["resident_on"]
    store.update("VM", vm, resident_on=host, domid=alloc_domid(sim, host))
    refresh_host_memory(store, host)
    refresh_host_memory(store, old)
    sim.refresh_allowed_operations("VM", vm)


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
