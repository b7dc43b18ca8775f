"""Declared (non-implicit) field setters and set/map edits of the classes
sim-lifecycle owns, e.g. VM.set_actions_after_crash, VM.add_to_NVRAM,
VIF.add_ipv4_allowed, network.add_purpose, VDI.set_on_boot.

The data model lists these as ordinary messages, so the generic implicit
handlers don't answer them; here each becomes a plain write, registered
only where no module has a handler of its own. A few have xapi side
effects, handled explicitly below."""

from __future__ import annotations

import math
from typing import Any

from xapisim import memory, vm_rules
from xapisim.api import HANDLERS, handler
from xapisim.context import CallContext
from xapisim.errors import XenAPIError
from xapisim.schema import load

# Far past any real use (xapi's default is 1.0); keeps the overhead finite.
MAX_SHADOW_MULTIPLIER = 1e6
CLASSES = ("VM", "VDI", "VBD", "VIF", "SR", "PBD", "network", "PIF", "host")
# VM setters that are VM operations in xapi (checked like them)
VM_OPS = {"set_HVM_shadow_multiplier": "changing_shadow_memory",
          "set_NVRAM": "changing_NVRAM", "add_to_NVRAM": "changing_NVRAM",
          "remove_from_NVRAM": "changing_NVRAM"}


def _refresh(ctx: CallContext, cls: str, ref: str) -> None:
    ctx.sim.refresh_allowed_operations(cls, ref)


def _set(cls: str, field: str, op: str | None):
    def fn(ctx: CallContext, ref: str, value: Any) -> None:
        with ctx.store.lock:
            ctx.store.raw(cls, ref)
            if op:
                vm_rules.assert_vm_op(ctx.store, ref, op)
            ctx.store.update(cls, ref, **{field: value})
            _refresh(ctx, cls, ref)
    return fn


def _set_add(cls: str, field: str):
    def fn(ctx: CallContext, ref: str, value: Any) -> None:
        with ctx.store.lock:
            cur = ctx.store.raw(cls, ref)[field]
            if value not in cur:
                ctx.store.update(cls, ref, **{field: [*cur, value]})
    return fn


def _set_remove(cls: str, field: str):
    def fn(ctx: CallContext, ref: str, value: Any) -> None:
        with ctx.store.lock:
            cur = ctx.store.raw(cls, ref)[field]
            ctx.store.update(cls, ref, **{field: [v for v in cur if v != value]})
    return fn


def _map_add(cls: str, field: str, op: str | None):
    def fn(ctx: CallContext, ref: str, key: str, value: Any) -> None:
        with ctx.store.lock:
            cur = ctx.store.raw(cls, ref)[field]
            if op:
                vm_rules.assert_vm_op(ctx.store, ref, op)
            if key in cur:
                raise XenAPIError("MAP_DUPLICATE_KEY", cls, field, ref, key)
            ctx.store.update(cls, ref, **{field: {**cur, key: value}})
    return fn


def _map_remove(cls: str, field: str, op: str | None):
    def fn(ctx: CallContext, ref: str, key: str) -> None:
        with ctx.store.lock:
            cur = dict(ctx.store.raw(cls, ref)[field])
            if op:
                vm_rules.assert_vm_op(ctx.store, ref, op)
            cur.pop(key, None)
            ctx.store.update(cls, ref, **{field: cur})
    return fn


def _register_fallbacks() -> None:
    model = load()
    for cls in CLASSES:
        c = model.classes[cls]
        for name, msg in c.messages.items():
            wire = f"{cls}.{name}"
            if msg.implicit or wire in HANDLERS:
                continue
            nparams = len(msg.params) - 1
            op = VM_OPS.get(name) if cls == "VM" else None
            fn = None
            for prefix in ("add_to_", "remove_from_", "set_", "add_", "remove_"):
                field = name[len(prefix):]
                if not name.startswith(prefix) or field not in c.fields:
                    continue
                kind = c.fields[field].type.kind
                if prefix == "set_" and nparams == 2:
                    fn = _set(cls, field, op)
                elif prefix == "add_to_" and kind == "map" and nparams == 3:
                    fn = _map_add(cls, field, op)
                elif prefix == "remove_from_" and kind == "map" and nparams == 2:
                    fn = _map_remove(cls, field, op)
                elif prefix == "add_" and kind == "set" and nparams == 2:
                    fn = _set_add(cls, field)
                elif prefix == "remove_" and kind == "set" and nparams == 2:
                    fn = _set_remove(cls, field)
                break
            if fn is not None:
                HANDLERS[wire] = fn


# -- setters with side effects ----------------------------------------------------------------


@handler("VM.set_HVM_boot_policy")
def vm_set_hvm_boot_policy(ctx: CallContext, vm: str, value: str) -> None:
    """xapi derives domain_type from the boot policy."""
    with ctx.store.lock:
        ctx.store.raw("VM", vm)
        ctx.store.update("VM", vm, HVM_boot_policy=value, domain_type="hvm" if value else "pv")
        ctx.store.update("VM", vm, memory_overhead=memory.vm_memory_overhead(
            ctx.store.raw("VM", vm)))


@handler("VM.set_domain_type")
def vm_set_domain_type(ctx: CallContext, vm: str, value: str) -> None:
    with ctx.store.lock:
        rec = ctx.store.raw("VM", vm)
        if value == "unspecified":
            raise XenAPIError("INVALID_VALUE", "domain_type", value)
        policy = rec["HVM_boot_policy"]
        if value == "hvm" and not policy:
            policy = "BIOS order"
        elif value != "hvm":
            policy = ""
        ctx.store.update("VM", vm, domain_type=value, HVM_boot_policy=policy)
        ctx.store.update("VM", vm, memory_overhead=memory.vm_memory_overhead(rec))


@handler("VM.set_actions_after_crash")
def vm_set_actions_after_crash(ctx: CallContext, vm: str, value: str) -> None:
    with ctx.store.lock:
        rec = ctx.store.raw("VM", vm)
        kind = rec["domain_type"]
        if value.startswith("coredump") and kind in ("hvm", "pvh", "pv_in_pvh"):
            raise XenAPIError("VALUE_NOT_SUPPORTED", "VM.actions_after_crash", value,
                              "cannot invoke a coredump of an HVM, PVH or PV-in-PVH domain")
        ctx.store.update("VM", vm, actions_after_crash=value)


@handler("VM.set_suspend_VDI")
def vm_set_suspend_vdi(ctx: CallContext, vm: str, value: str) -> None:
    with ctx.store.lock:
        rec = ctx.store.raw("VM", vm)
        if rec["power_state"] != "Suspended":
            raise vm_rules.bad_power_state(vm, ("Suspended",), rec["power_state"])
        ctx.store.raw("VDI", value)
        ctx.store.update("VM", vm, suspend_VDI=value)


@handler("VM.set_HVM_shadow_multiplier")
def vm_set_hvm_shadow_multiplier(ctx: CallContext, vm: str, value: float) -> None:
    """xapi refuses a multiplier below 1 (INVALID_VALUE [multiplier,
    value]); the simulator also refuses inf and nan (which xapi's XML-RPC
    parser lets through), as its memory arithmetic could not use them."""
    if not math.isfinite(value) or value < 1.0 or value > MAX_SHADOW_MULTIPLIER:
        raise XenAPIError("INVALID_VALUE", "multiplier", repr(value))
    with ctx.store.lock:
        ctx.store.raw("VM", vm)
        vm_rules.assert_vm_op(ctx.store, vm, VM_OPS["set_HVM_shadow_multiplier"])
        ctx.store.update("VM", vm, HVM_shadow_multiplier=value)
        ctx.store.update("VM", vm, memory_overhead=memory.vm_memory_overhead(
            ctx.store.raw("VM", vm)))
        _refresh(ctx, "VM", vm)


_register_fallbacks()
