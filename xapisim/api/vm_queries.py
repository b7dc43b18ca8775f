"""Questions about a VM: whether an operation, a host or agility is
possible (the assert_* messages), possible hosts, free device slots, the
boot record and data sources; VM.send_sysrq/send_trigger only check that
the VM could take them."""

from __future__ import annotations

from typing import Any

from xapisim import placement, vm_rules
from xapisim.api import handler
from xapisim.context import CallContext
from xapisim.errors import XenAPIError


@handler("VM.assert_operation_valid")
def vm_assert_operation_valid(ctx: CallContext, vm: str, op: str) -> None:
    with ctx.store.lock:
        vm_rules.assert_vm_op(ctx.store, vm, op)


@handler("VM.update_allowed_operations")
def vm_update_allowed_operations(ctx: CallContext, vm: str) -> None:
    with ctx.store.lock:
        ctx.store.raw("VM", vm)
        ctx.sim.refresh_allowed_operations("VM", vm)


@handler("VM.assert_can_boot_here")
def vm_assert_can_boot_here(ctx: CallContext, vm: str, host: str) -> None:
    with ctx.store.lock:
        ctx.store.raw("host", host)
        placement.assert_can_boot_here(ctx.sim, vm, host)


@handler("VM.get_possible_hosts")
def vm_get_possible_hosts(ctx: CallContext, vm: str) -> list[str]:
    out = []
    with ctx.store.lock:
        ctx.store.raw("VM", vm)
        for host in ctx.store.refs("host"):
            try:
                placement.assert_can_boot_here(ctx.sim, vm, host)
            except XenAPIError:
                continue
            out.append(host)
    return out


@handler("VM.get_allowed_VBD_devices")
def vm_get_allowed_vbd_devices(ctx: CallContext, vm: str) -> list[str]:
    with ctx.store.lock:
        used = {ctx.store.raw("VBD", b)["userdevice"] for b in ctx.store.raw("VM", vm)["VBDs"]}
    return [str(i) for i in range(16) if str(i) not in used]


@handler("VM.get_allowed_VIF_devices")
def vm_get_allowed_vif_devices(ctx: CallContext, vm: str) -> list[str]:
    with ctx.store.lock:
        used = {ctx.store.raw("VIF", v)["device"] for v in ctx.store.raw("VM", vm)["VIFs"]}
    return [str(i) for i in range(7) if str(i) not in used]


@handler("VM.get_boot_record")
def vm_get_boot_record(ctx: CallContext, vm: str) -> dict[str, Any]:
    return ctx.store.get("VM", vm)


@handler("VM.get_cooperative")
def vm_get_cooperative(ctx: CallContext, vm: str) -> bool:
    ctx.store.raw("VM", vm)
    return True


@handler("VM.send_sysrq", "VM.send_trigger")
def vm_send_key(ctx: CallContext, vm: str, key: str) -> None:
    with ctx.store.lock:
        vm_rules.assert_vm_op(ctx.store, vm, ctx.method.split(".")[1])


@handler("VM.assert_agile")
def vm_assert_agile(ctx: CallContext, vm: str) -> None:
    """A VM is agile when every disk is on a shared SR."""
    store = ctx.store
    with store.lock:
        for sr in placement.vm_srs(store, vm, with_suspend=False):
            if not store.raw("SR", sr)["shared"]:
                raise XenAPIError("HA_CONSTRAINT_VIOLATION_SR_NOT_SHARED", sr)


@handler("VM.get_data_sources")
def vm_get_data_sources(ctx: CallContext, vm: str) -> list[dict[str, Any]]:
    ctx.store.raw("VM", vm)
    return []


@handler("VM.record_data_source", "VM.forget_data_source_archives")
def vm_record_data_source(ctx: CallContext, vm: str, data_source: str) -> None:
    ctx.store.raw("VM", vm)


@handler("VM.query_data_source")
def vm_query_data_source(ctx: CallContext, vm: str, data_source: str) -> float:
    with ctx.store.lock:
        rec = ctx.store.raw("VM", vm)
        if rec["power_state"] != "Running":
            raise vm_rules.bad_power_state(vm, ("Running",), rec["power_state"])
        if data_source == "memory" and ctx.store.has("VM_metrics", rec["metrics"]):
            return float(ctx.store.raw("VM_metrics", rec["metrics"])["memory_actual"])
    return 0.0
