"""VM power-state messages: start, shutdown, reboot, pause, suspend,
resume and power_state_reset.

Each handler checks xapi's preconditions (vm_rules.vm_op_error: blocked,
power state, concurrency, template, ...), records the operation in
current_operations, spends the message's configured duration (where a
task.cancel stops it with nothing changed) and then applies the effect."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from xapisim import domains, guest_console, memory, placement, vm_rules
from xapisim.api import handler
from xapisim.api.vm import expect_power_state, vm_operation
from xapisim.context import CallContext
from xapisim.errors import XenAPIError
from xapisim.schema import NULL_REF
from xapisim.sr_state import sr_plugged_on
from xapisim.vdi_records import destroy_vdi, new_vdi


def _cancel_others(ctx: CallContext, vm: str, ops: set[str]) -> None:
    """hard_shutdown/hard_reboot cancel the VM's pending clean operations
    first, as xapi's message forwarding does, and wait for them to stop."""
    store = ctx.store
    with store.lock:
        current = dict(store.raw("VM", vm)["current_operations"])
    # Only Async calls run under a task object that can be cancelled; a sync
    # call in progress finds the VM halted when it resumes, and fails.
    victims = [t for t, op in current.items()
               if op in ops and t != ctx.op_ref and store.has("task", t)]
    for task in victims:
        with contextlib.suppress(XenAPIError):
            ctx.sim.tasks.cancel(task)
    deadline = time.monotonic() + 5.0
    while victims and time.monotonic() < deadline:
        with store.lock:
            current = store.raw("VM", vm)["current_operations"] if store.has("VM", vm) else {}
            victims = [t for t in victims if t in current]
        if victims:
            time.sleep(0.01)


# -- start / shutdown / reboot ---------------------------------------------------------------


def _boot_target(ctx: CallContext, vm: str, host: str | None, op: str) -> str:
    """Where start/resume (``host`` None) or start_on/resume_on will put the
    domain, refusing before any time is spent."""
    sim, store = ctx.sim, ctx.store
    with store.lock:
        vm_rules.assert_vm_op(store, vm, op)
        if host is None:
            target = placement.choose_host(sim, vm)
        else:
            store.raw("host", host)
            placement.assert_can_boot_here(sim, vm, host)
            target = host
        placement.assert_vbds_attachable(store, vm)
    return target


def _start(ctx: CallContext, vm: str, host: str | None, paused: bool, op: str) -> None:
    sim, store = ctx.sim, ctx.store
    target = _boot_target(ctx, vm, host, op)
    with vm_operation(ctx, vm, op):
        ctx.work()
        with store.lock:
            expect_power_state(store, vm, "Halted")
            placement.assert_can_boot_here(sim, vm, target)
            placement.assert_vbds_attachable(store, vm)
            domains.boot(sim, vm, target, paused=paused)


@handler("VM.start")
def vm_start(ctx: CallContext, vm: str, start_paused: bool, force: bool) -> None:
    _start(ctx, vm, None, start_paused, "start")


@handler("VM.start_on")
def vm_start_on(ctx: CallContext, vm: str, host: str, start_paused: bool, force: bool) -> None:
    _start(ctx, vm, host, start_paused, "start_on")


def _halt_running(ctx: CallContext, vm: str, op: str, states: tuple[str, ...]) -> None:
    store = ctx.store
    with store.lock:
        rec = expect_power_state(store, vm, *states)
        suspended = rec["power_state"] == "Suspended"
        suspend_vdi = rec["suspend_VDI"]
        domains.record_shutdown(store, vm, "halted", "external", rec["actions_after_shutdown"])
        guest_console.ended(ctx.sim, rec["resident_on"], rec["domid"], "halted")
        domains.halt(ctx.sim, vm)
        if suspended:
            # the saved memory image is of no use any more
            store.update("VM", vm, suspend_VDI=NULL_REF)
            if store.has("VDI", suspend_vdi):
                destroy_vdi(ctx.sim, suspend_vdi)


@handler("VM.clean_shutdown")
def vm_clean_shutdown(ctx: CallContext, vm: str) -> None:
    with vm_operation(ctx, vm, "clean_shutdown"):
        ctx.work()
        _halt_running(ctx, vm, "clean_shutdown", ("Running",))


_HARD_CANCELS = {"clean_shutdown", "clean_reboot", "hard_reboot", "pool_migrate", "call_plugin",
                 "shutdown", "suspend"}


@handler("VM.hard_shutdown")
def vm_hard_shutdown(ctx: CallContext, vm: str) -> None:
    with vm_operation(ctx, vm, "hard_shutdown"):
        _cancel_others(ctx, vm, _HARD_CANCELS)
        ctx.work()
        with ctx.store.lock:
            if ctx.store.raw("VM", vm)["power_state"] == "Halted":
                return  # a cancelled operation got there first; xapi is quiet too
            _halt_running(ctx, vm, "hard_shutdown", ("Paused", "Suspended", "Running"))


@handler("VM.shutdown")
def vm_shutdown(ctx: CallContext, vm: str) -> None:
    with vm_operation(ctx, vm, "shutdown"):
        ctx.work()
        with ctx.store.lock:
            rec = expect_power_state(ctx.store, vm, "Paused", "Suspended", "Running")
            # a clean shutdown when the guest can do one, else a hard one
            _halt_running(ctx, vm, "shutdown", (rec["power_state"],))


def _reboot(ctx: CallContext, vm: str, states: tuple[str, ...]) -> None:
    store = ctx.store
    with store.lock:
        rec = expect_power_state(store, vm, *states)
        domains.record_shutdown(store, vm, "rebooted", "external", rec["actions_after_reboot"])
        guest_console.ended(ctx.sim, rec["resident_on"], rec["domid"], "rebooted")
        domains.reboot(ctx.sim, vm)


@handler("VM.clean_reboot")
def vm_clean_reboot(ctx: CallContext, vm: str) -> None:
    with vm_operation(ctx, vm, "clean_reboot"):
        ctx.work()
        _reboot(ctx, vm, ("Running",))


@handler("VM.hard_reboot")
def vm_hard_reboot(ctx: CallContext, vm: str) -> None:
    with vm_operation(ctx, vm, "hard_reboot"):
        _cancel_others(ctx, vm, {"clean_shutdown", "clean_reboot", "pool_migrate",
                                 "call_plugin", "suspend"})
        ctx.work()
        _reboot(ctx, vm, ("Running", "Paused"))


@handler("VM.power_state_reset")
def vm_power_state_reset(ctx: CallContext, vm: str) -> None:
    store = ctx.store
    with store.lock:
        rec = store.raw("VM", vm)
        if rec["is_control_domain"]:
            raise XenAPIError("CANNOT_RESET_CONTROL_DOMAIN", vm)
        store.update("VM", vm, current_operations={})
        if rec["power_state"] != "Halted":
            domains.halt(ctx.sim, vm)
            store.update("VM", vm, suspend_VDI=NULL_REF)
        ctx.sim.refresh_allowed_operations("VM", vm)


# -- pause / suspend / resume --------------------------------------------------------------------


@handler("VM.pause")
def vm_pause(ctx: CallContext, vm: str) -> None:
    with vm_operation(ctx, vm, "pause"):
        ctx.work()
        with ctx.store.lock:
            expect_power_state(ctx.store, vm, "Running")
            domains.set_paused(ctx.sim, vm, True)


@handler("VM.unpause")
def vm_unpause(ctx: CallContext, vm: str) -> None:
    with vm_operation(ctx, vm, "unpause"):
        ctx.work()
        with ctx.store.lock:
            expect_power_state(ctx.store, vm, "Paused")
            domains.set_paused(ctx.sim, vm, False)


def _suspend_sr(store, vm: str, rec: dict[str, Any], host: str) -> str:
    candidates = [rec["suspend_SR"]]
    pools = store.refs("pool")
    if pools:
        p = store.raw("pool", pools[0])
        candidates += [p["suspend_image_SR"], p["default_SR"]]
    candidates.append(store.raw("host", host)["suspend_image_sr"])
    for sr in candidates:
        if store.has("SR", sr) and sr_plugged_on(store, sr, host):
            return sr
    raise XenAPIError("VM_NO_SUSPEND_SR", vm)


@handler("VM.suspend")
def vm_suspend(ctx: CallContext, vm: str) -> None:
    store = ctx.store
    with vm_operation(ctx, vm, "suspend"):
        with store.lock:
            rec = expect_power_state(store, vm, "Running")
            sr = _suspend_sr(store, vm, rec, rec["resident_on"])
        ctx.work()
        with store.lock:
            rec = expect_power_state(store, vm, "Running")
            size = rec["memory_static_max"] + 8 * memory.MiB
            vdi = new_vdi(ctx.sim, sr, size, name_label=f"Suspend image for {rec['name_label']}",
                          vdi_type="suspend", other_config={"vm": vm})
            domains.suspend(ctx.sim, vm, vdi)


def _resume(ctx: CallContext, vm: str, host: str | None, paused: bool, op: str) -> None:
    sim, store = ctx.sim, ctx.store
    target = _boot_target(ctx, vm, host, op)
    with vm_operation(ctx, vm, op):
        ctx.work()
        with store.lock:
            rec = expect_power_state(store, vm, "Suspended")
            placement.assert_can_boot_here(sim, vm, target)
            suspend_vdi = rec["suspend_VDI"]
            domains.boot(sim, vm, target, paused=paused)
            if store.has("VDI", suspend_vdi):
                destroy_vdi(sim, suspend_vdi)


@handler("VM.resume")
def vm_resume(ctx: CallContext, vm: str, start_paused: bool, force: bool) -> None:
    _resume(ctx, vm, None, start_paused, "resume")


@handler("VM.resume_on")
def vm_resume_on(ctx: CallContext, vm: str, host: str, start_paused: bool, force: bool) -> None:
    _resume(ctx, vm, host, start_paused, "resume_on")
