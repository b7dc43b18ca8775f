"""The VM object: VM.create and VM.destroy, the template flag, the VM's
allowed_operations, and what every VM operation handler shares: holding
the operation in current_operations and checking the power state once the
work is done."""

from __future__ import annotations

import uuid as uuidlib
from contextlib import AbstractContextManager
from typing import Any

from xapisim import current_operations, memory, vm_rules
from xapisim.api import allowed_operations, generic, handler
from xapisim.context import CallContext
from xapisim.errors import XenAPIError
from xapisim.schema import NULL_REF
from xapisim.store import new_ref


@allowed_operations("VM")
def vm_allowed(sim, ref: str) -> list[str]:
    return vm_rules.vm_allowed_operations(sim.store, ref)


def vm_operation(ctx: CallContext, vm: str, op: str) -> AbstractContextManager[None]:
    """Hold ``op`` in the VM's current_operations, refusing it first with
    xapi's checks (several operations may run at once where xapi allows it,
    e.g. hard_shutdown during a clean_shutdown)."""
    return current_operations.hold(ctx, "VM", vm, op, vm_rules.assert_vm_op)


def expect_power_state(store, vm: str, *states: str) -> dict[str, Any]:
    """The VM's record if it is in one of ``states``; handlers check again
    after their work because another call may have changed it meanwhile."""
    rec = store.raw("VM", vm)
    if rec["power_state"] not in states:
        raise vm_rules.bad_power_state(vm, states, rec["power_state"])
    return rec


@handler("VM.create")
def vm_create(ctx: CallContext, record: dict[str, Any]) -> str:
    store = ctx.store
    ref = new_ref()
    other = dict(record.get("other_config", {}))
    other.setdefault("mac_seed", str(uuidlib.uuid4()))
    power = record.get("power_state", "Halted")
    suspended = power == "Suspended"
    if suspended and (not record.get("last_boot_CPU_flags") or
                      not record.get("last_booted_record") or
                      record.get("suspend_VDI", NULL_REF) == NULL_REF):
        raise vm_rules.bad_power_state(ref, ("Halted",), power)
    domain_type = record.get("domain_type", "unspecified")
    if domain_type == "unspecified":
        domain_type = "hvm" if record.get("HVM_boot_policy") else "pv"
    with store.lock:
        for name in ("affinity", "suspend_VDI", "suspend_SR"):
            value = record.get(name, NULL_REF)
            cls = {"affinity": "host", "suspend_VDI": "VDI", "suspend_SR": "SR"}[name]
            if value != NULL_REF and not store.has(cls, value):
                raise XenAPIError("HANDLE_INVALID", cls, value)
        metrics = store.create("VM_metrics", {
            "current_domain_type": domain_type if suspended else "unspecified",
        })
        try:
            vm = generic.create(ctx, "VM", record, **{
                "other_config": other,
                "power_state": "Suspended" if suspended else "Halted",
                "suspend_VDI": record.get("suspend_VDI", NULL_REF) if suspended else NULL_REF,
                "last_booted_record": record.get("last_booted_record", "") if suspended else "",
                "last_boot_CPU_flags": record.get("last_boot_CPU_flags", {}) if suspended
                else {},
                "domain_type": domain_type,
                "metrics": metrics,
                "domid": -1,
                "resident_on": NULL_REF,
                "is_default_template": False,
                "is_control_domain": False,
                "blocked_operations": {},
            })
        except XenAPIError:
            store.destroy("VM_metrics", metrics)
            raise
        store.update("VM", vm, memory_overhead=memory.vm_memory_overhead(store.raw("VM", vm)))
        ctx.sim.refresh_allowed_operations("VM", vm)
    return vm


@handler("VM.destroy")
def vm_destroy(ctx: CallContext, vm: str) -> None:
    store = ctx.store
    with store.lock:
        vm_rules.assert_vm_op(store, vm, "destroy")
        rec = store.raw("VM", vm)
        if rec["other_config"].get("default_template") == "true":
            raise XenAPIError("VM_CANNOT_DELETE_DEFAULT_TEMPLATE", vm)
        destroy_vm_records(ctx.sim, vm)


def destroy_vm_records(sim, vm: str) -> None:
    """VM.destroy's database work: the VM with its VBDs, VIFs, consoles and
    metrics; its VDIs stay (xapi's Xapi_vm_helpers.destroy)."""
    store = sim.store
    with store.lock:
        rec = store.raw("VM", vm)
        for child in rec["children"]:
            if store.has("VM", child):
                store.update("VM", child, parent=rec["parent"])
        for cls, field in (("VBD", "VBDs"), ("VIF", "VIFs"), ("console", "consoles")):
            for dev in list(rec[field]):
                if store.has(cls, dev):
                    if cls == "VBD":
                        vdi = store.raw("VBD", dev)["VDI"]
                    store.destroy(cls, dev)
                    if cls == "VBD" and store.has("VDI", vdi):
                        sim.refresh_allowed_operations("VDI", vdi)
        for cls, field in (("VM_metrics", "metrics"), ("VM_guest_metrics", "guest_metrics")):
            if store.has(cls, rec[field]):
                store.destroy(cls, rec[field])
        host = rec["resident_on"]
        store.destroy("VM", vm)
        memory.refresh_host_memory(store, host)


@handler("VM.set_is_a_template")
def vm_set_is_a_template(ctx: CallContext, vm: str, value: bool) -> None:
    store = ctx.store
    with store.lock:
        rec = store.raw("VM", vm)
        if value and not rec["is_a_template"]:
            vm_rules.assert_vm_op(store, vm, "make_into_template")
        store.update("VM", vm, is_a_template=value)
        if not value:
            store.update("VM", vm, is_default_template=False)
        ctx.sim.refresh_allowed_operations("VM", vm)
