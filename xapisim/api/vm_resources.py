"""A VM's memory and VCPU settings, while halted and live: the memory
range setters (xapi's static_min <= dynamic_min <= dynamic_max <=
static_max), VCPU counts, maximise_memory and the live adjustments."""

from __future__ import annotations

from xapisim import memory, vm_rules
from xapisim.api import handler
from xapisim.context import CallContext
from xapisim.errors import XenAPIError


def _set_memory(ctx: CallContext, vm: str, op: str, **values: int) -> None:
    store = ctx.store
    with store.lock:
        vm_rules.assert_vm_op(store, vm, op)
        rec = store.raw("VM", vm)
        m = {k: values.get(k, rec[k]) for k in ("memory_static_min", "memory_dynamic_min",
                                                "memory_dynamic_max", "memory_static_max")}
        if not (0 <= m["memory_static_min"] <= m["memory_dynamic_min"] <=
                m["memory_dynamic_max"] <= m["memory_static_max"]):
            raise XenAPIError("MEMORY_CONSTRAINT_VIOLATION",
                              "static_min <= dynamic_min <= dynamic_max <= static_max")
        store.update("VM", vm, **values)
        store.update("VM", vm, memory_overhead=memory.vm_memory_overhead(rec))
        ctx.sim.refresh_allowed_operations("VM", vm)


@handler("VM.set_memory_limits")
def vm_set_memory_limits(ctx: CallContext, vm: str, static_min: int, static_max: int,
                         dynamic_min: int, dynamic_max: int) -> None:
    _set_memory(ctx, vm, "changing_memory_limits", memory_static_min=static_min,
                memory_static_max=static_max, memory_dynamic_min=dynamic_min,
                memory_dynamic_max=dynamic_max)


@handler("VM.set_memory_static_range")
def vm_set_memory_static_range(ctx: CallContext, vm: str, min: int, max: int) -> None:
    _set_memory(ctx, vm, "changing_static_range", memory_static_min=min, memory_static_max=max)


@handler("VM.set_memory_dynamic_range")
def vm_set_memory_dynamic_range(ctx: CallContext, vm: str, min: int, max: int) -> None:
    _set_memory(ctx, vm, "changing_dynamic_range", memory_dynamic_min=min,
                memory_dynamic_max=max)


@handler("VM.set_memory")
def vm_set_memory(ctx: CallContext, vm: str, value: int) -> None:
    _set_memory(ctx, vm, "changing_memory_limits", memory_static_max=value,
                memory_dynamic_min=value, memory_dynamic_max=value)


@handler("VM.set_memory_static_max")
def vm_set_memory_static_max(ctx: CallContext, vm: str, value: int) -> None:
    _set_memory(ctx, vm, "changing_static_range", memory_static_max=value)


@handler("VM.set_memory_static_min")
def vm_set_memory_static_min(ctx: CallContext, vm: str, value: int) -> None:
    _set_memory(ctx, vm, "changing_static_range", memory_static_min=value)


@handler("VM.set_memory_dynamic_max")
def vm_set_memory_dynamic_max(ctx: CallContext, vm: str, value: int) -> None:
    _set_memory(ctx, vm, "changing_dynamic_range", memory_dynamic_max=value)


@handler("VM.set_memory_dynamic_min")
def vm_set_memory_dynamic_min(ctx: CallContext, vm: str, value: int) -> None:
    _set_memory(ctx, vm, "changing_dynamic_range", memory_dynamic_min=value)


@handler("VM.set_VCPUs_max")
def vm_set_vcpus_max(ctx: CallContext, vm: str, value: int) -> None:
    store = ctx.store
    with store.lock:
        vm_rules.assert_vm_op(store, vm, "changing_VCPUs")
        if value < 1:
            raise XenAPIError("INVALID_VALUE", "VCPU values must satisfy: 0 < VCPUs_at_startup "
                              "≤ VCPUs_max", str(value))
        if value < store.raw("VM", vm)["VCPUs_at_startup"]:
            raise XenAPIError("VALUE_NOT_SUPPORTED", "VCPUs_max", str(value),
                              "value less than VCPUs_at_startup")
        store.update("VM", vm, VCPUs_max=value)
        store.update("VM", vm, memory_overhead=memory.vm_memory_overhead(store.raw("VM", vm)))


@handler("VM.set_VCPUs_at_startup")
def vm_set_vcpus_at_startup(ctx: CallContext, vm: str, value: int) -> None:
    store = ctx.store
    with store.lock:
        vm_rules.assert_vm_op(store, vm, "changing_VCPUs")
        if value < 1 or value > store.raw("VM", vm)["VCPUs_max"]:
            raise XenAPIError("VALUE_NOT_SUPPORTED", "VCPUs_at_startup", str(value),
                              "value must be between 1 and VCPUs_max")
        store.update("VM", vm, VCPUs_at_startup=value)


@handler("VM.set_VCPUs_number_live")
def vm_set_vcpus_number_live(ctx: CallContext, vm: str, nvcpu: int) -> None:
    store = ctx.store
    with store.lock:
        vm_rules.assert_vm_op(store, vm, "changing_VCPUs_live")
        rec = store.raw("VM", vm)
        if nvcpu < 1 or nvcpu > rec["VCPUs_max"]:
            raise XenAPIError("VALUE_NOT_SUPPORTED", "nvcpu", str(nvcpu),
                              "value must be between 1 and VCPUs_max")
        store.update("VM", vm, VCPUs_at_startup=nvcpu)
        if store.has("VM_metrics", rec["metrics"]):
            store.update("VM_metrics", rec["metrics"], VCPUs_number=nvcpu,
                         VCPUs_utilisation={i: 0.0 for i in range(nvcpu)})


@handler("VM.set_memory_target_live")
def vm_set_memory_target_live(ctx: CallContext, vm: str, target: int) -> None:
    ctx.store.raw("VM", vm)


@handler("VM.wait_memory_target_live")
def vm_wait_memory_target_live(ctx: CallContext, vm: str) -> None:
    with ctx.store.lock:
        vm_rules.assert_vm_op(ctx.store, vm, "awaiting_memory_live")


@handler("VM.maximise_memory")
def vm_maximise_memory(ctx: CallContext, vm: str, total: int, approximate: bool) -> int:
    """The largest static_max that fits in ``total`` bytes with overhead."""
    with ctx.store.lock:
        rec = dict(ctx.store.raw("VM", vm))
    lo, hi = 0, max(total, 0)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        rec["memory_static_max"] = mid
        if mid + memory.vm_memory_overhead(rec) <= total:
            lo = mid
        else:
            hi = mid - 1
    if approximate:
        lo -= lo % memory.MiB
    return lo


@handler("VM.add_to_VCPUs_params_live")
def vm_add_to_vcpus_params_live(ctx: CallContext, vm: str, key: str, value: str) -> None:
    with ctx.store.lock:
        vm_rules.assert_vm_op(ctx.store, vm, "changing_VCPUs_live")
        params = dict(ctx.store.raw("VM", vm)["VCPUs_params"])
        params[key] = value
        ctx.store.update("VM", vm, VCPUs_params=params)


@handler("VM.set_shadow_multiplier_live")
def vm_set_shadow_multiplier_live(ctx: CallContext, vm: str, multiplier: float) -> None:
    with ctx.store.lock:
        vm_rules.assert_vm_op(ctx.store, vm, "changing_shadow_memory_live")
        if multiplier < 1.0:
            raise XenAPIError("INVALID_VALUE", "multiplier", str(multiplier))
        ctx.store.update("VM", vm, HVM_shadow_multiplier=multiplier)
