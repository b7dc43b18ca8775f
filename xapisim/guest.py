"""Things that happen to VMs without an API call: the guest crashes, shuts
itself down or reboots, or its host dies. Each applies the VM's
actions_after_* setting and records the ``last_shutdown_*`` keys with
initiator "internal", as xapi does for guest-initiated events.

Plain functions for the control API and tests:
    crash(sim, vm), guest_shutdown(sim, vm), guest_reboot(sim, vm),
    host_failed(sim, host)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xapisim import domains, guest_console, memory
from xapisim.errors import XenAPIError
from xapisim.store import now_datetime

if TYPE_CHECKING:
    from xapisim.services import SimServices

_RESTARTS = {"restart", "coredump_and_restart", "rename_restart"}


def _running_vm(sim: SimServices, vm: str) -> dict:
    rec = sim.store.raw("VM", vm)
    if rec["power_state"] not in ("Running", "Paused"):
        raise XenAPIError("VM_BAD_POWER_STATE", vm, "running", rec["power_state"].lower())
    return rec


def crash(sim: SimServices, vm: str) -> str:
    """The domain crashed. actions_after_crash decides: destroy -> Halted,
    restart -> a new domain, preserve -> the dead domain stays Paused.
    Returns the VM's power state afterwards."""
    store = sim.store
    with store.lock:
        rec = _running_vm(sim, vm)
        action = rec["actions_after_crash"]
        domains.record_shutdown(store, vm, "crashed", "internal", action)
        guest_console.ended(sim, rec["resident_on"], rec["domid"], "crashed")
        if action in _RESTARTS:
            domains.reboot(sim, vm)
        elif action == "preserve":
            domains.set_paused(sim, vm, True)
        else:
            domains.halt(sim, vm)
        return store.raw("VM", vm)["power_state"]


def guest_shutdown(sim: SimServices, vm: str) -> str:
    """The guest powered itself off; actions_after_shutdown decides."""
    store = sim.store
    with store.lock:
        rec = _running_vm(sim, vm)
        action = rec["actions_after_shutdown"]
        domains.record_shutdown(store, vm, "halted", "internal", action)
        guest_console.ended(sim, rec["resident_on"], rec["domid"], "halted")
        if action == "restart":
            domains.reboot(sim, vm)
        else:
            domains.halt(sim, vm)
        return store.raw("VM", vm)["power_state"]


def guest_reboot(sim: SimServices, vm: str) -> str:
    """The guest rebooted itself; actions_after_reboot decides."""
    store = sim.store
    with store.lock:
        rec = _running_vm(sim, vm)
        action = rec["actions_after_reboot"]
        domains.record_shutdown(store, vm, "rebooted", "internal", action)
        guest_console.ended(sim, rec["resident_on"], rec["domid"], "rebooted")
        if action == "destroy":
            domains.halt(sim, vm)
        else:
            domains.reboot(sim, vm)
        return store.raw("VM", vm)["power_state"]


def host_failed(sim: SimServices, host: str) -> list[str]:
    """The host died: its metrics say not live, every guest on it is Halted
    (crashed, from xapi's point of view). Returns the VMs that went down.
    The host joins sim.failed_hosts, whose listener then refuses calls."""
    store = sim.store
    down = []
    with store.lock:
        h = store.raw("host", host)
        sim.failed_hosts.add(host)
        for vm in list(h["resident_VMs"]):
            if not store.has("VM", vm):
                continue
            rec = store.raw("VM", vm)
            if rec["is_control_domain"]:
                continue
            domains.record_shutdown(store, vm, "crashed", "internal", "destroy")
            domains.halt(sim, vm)
            store.update("VM", vm, current_operations={})
            sim.refresh_allowed_operations("VM", vm)
            down.append(vm)
        if store.has("host_metrics", h["metrics"]):
            store.update("host_metrics", h["metrics"], live=False, last_updated=now_datetime())
    return down


def host_recovered(sim: SimServices, host: str) -> None:
    """The host is back: live again, memory figures recomputed."""
    store = sim.store
    with store.lock:
        h = store.raw("host", host)
        sim.failed_hosts.discard(host)
        if store.has("host_metrics", h["metrics"]):
            store.update("host_metrics", h["metrics"], live=True, last_updated=now_datetime())
        memory.refresh_host_memory(store, host)
