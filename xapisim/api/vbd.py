"""VBD messages with xapi's VBD operation table, which also gives the VBD's
allowed_operations."""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from typing import Any

from xapisim import current_operations
from xapisim.api import allowed_operations, generic, handler
from xapisim.context import CallContext
from xapisim.domains import device_name
from xapisim.errors import XenAPIError
from xapisim.hotplug import hotplug_error
from xapisim.placement import assert_vdi_shareable
from xapisim.schema import NULL_REF
from xapisim.sr_state import sr_plugged_on
from xapisim.store import Store

_VBD_OPS = ["attach", "eject", "insert", "plug", "unplug", "unplug_force", "pause", "unpause"]
_VALID_USERDEVICE = re.compile(r"^(autodetect|\d+|(xvd|hd|sd)[a-z]{1,2}\d*)$")


def vbd_errors(store: Store, vbd: str) -> dict[str, XenAPIError]:
    """xapi's VBD operation table: the first error set for each operation."""
    rec = store.raw("VBD", vbd)
    table: dict[str, XenAPIError] = {}

    def set_error(err: XenAPIError, ops) -> None:
        for op in ops:
            table.setdefault(op, err)

    current = rec["current_operations"]
    if current:
        task, op = next(iter(current.items()))
        set_error(XenAPIError("OTHER_OPERATION_IN_PROGRESS", "VBD", vbd, op, task),
                  [o for o in _VBD_OPS if o not in ("pause", "unpause")])
    if not rec["unpluggable"]:
        set_error(XenAPIError("VBD_NOT_UNPLUGGABLE", vbd), ["unplug", "unplug_force"])
    if rec["type"] != "CD":
        set_error(XenAPIError("VBD_NOT_REMOVABLE_MEDIA", vbd), ["insert", "eject"])
    if rec["empty"]:
        set_error(XenAPIError("VBD_IS_EMPTY", vbd), ["eject"])
    else:
        set_error(XenAPIError("VBD_NOT_EMPTY", vbd), ["insert"])
    vm = rec["VM"]
    power = store.raw("VM", vm)["power_state"] if store.has("VM", vm) else "Halted"
    if power == "Running":
        if rec["currently_attached"]:
            set_error(XenAPIError("DEVICE_ALREADY_ATTACHED", vbd), ["plug"])
        else:
            set_error(XenAPIError("DEVICE_ALREADY_DETACHED", vbd), ["unplug", "unplug_force"])
        no_hotplug = hotplug_error(store, vm, "can_use_hotplug_vbd", rec["type"] == "CD")
        if no_hotplug is not None:
            set_error(no_hotplug, ["plug", "unplug", "unplug_force"])
    else:
        bad = ["plug", "unplug", "unplug_force"]
        if power != "Paused":
            bad += ["pause", "unpause"]
        set_error(XenAPIError("VM_BAD_POWER_STATE", vm, "running", power.lower()), bad)
    if store.has("VM", vm):
        for op in store.raw("VM", vm)["current_operations"].values():
            if op in ("clean_shutdown", "hard_shutdown", "suspend", "pause"):
                set_error(XenAPIError("OPERATION_NOT_ALLOWED",
                                      f"Current operation on VM:{vm} is {op}"), ["plug", "unplug"])
    if rec["type"] == "CD" and power == "Suspended":
        set_error(XenAPIError("VM_BAD_POWER_STATE", vm, "halted, running", "suspended"),
                  ["insert", "eject"])
    if not rec["empty"] and store.has("VDI", rec["VDI"]):
        vdi = store.raw("VDI", rec["VDI"])
        if not vdi["managed"]:
            set_error(XenAPIError("VDI_NOT_MANAGED", vbd), _VBD_OPS)
        for task, op in vdi["current_operations"].items():
            if op not in ("copy", "mirror"):
                set_error(XenAPIError("OTHER_OPERATION_IN_PROGRESS", "VDI", rec["VDI"], op, task),
                          ["attach", "plug", "insert"])
                break
    return table


@allowed_operations("VBD")
def vbd_allowed(sim, ref: str) -> list[str]:
    errors = vbd_errors(sim.store, ref)
    return [op for op in _VBD_OPS if op not in errors]


def _assert_vbd_op(store: Store, vbd: str, op: str) -> None:
    err = vbd_errors(store, vbd).get(op)
    if err is not None:
        raise err


def vbd_operation(ctx: CallContext, vbd: str, op: str) -> AbstractContextManager[None]:
    def refresh_vdi() -> None:
        # The VDI's allowed operations depend on its VBDs' operations.
        vdi = ctx.store.raw("VBD", vbd)["VDI"]
        if ctx.store.has("VDI", vdi):
            ctx.sim.refresh_allowed_operations("VDI", vdi)

    return current_operations.hold(ctx, "VBD", vbd, op, _assert_vbd_op, on_release=refresh_vdi)


@handler("VBD.create")
def vbd_create(ctx: CallContext, record: dict[str, Any]) -> str:
    store = ctx.store
    generic.check_constructor_fields(store, "VBD", record)
    with store.lock:
        vm = record["VM"]
        vm_rec = store.raw("VM", vm)
        empty = record["empty"]
        vdi = record["VDI"]
        vbd_type = record["type"]
        if not empty:
            vdi_rec = store.raw("VDI", vdi)
            if vdi_rec["type"] in ("ha_statefile", "redo_log", "cbt_metadata"):
                raise XenAPIError("VDI_INCOMPATIBLE_TYPE", vdi, vdi_rec["type"])
        if vbd_type == "CD" and record["mode"] != "RO":
            raise XenAPIError("VBD_CDS_MUST_BE_READONLY")
        if vbd_type != "CD" and empty:
            raise XenAPIError("VBD_NOT_REMOVABLE_MEDIA", "in constructor")
        if not empty and record["mode"] == "RW" and store.raw("VDI", vdi)["read_only"]:
            raise XenAPIError("VDI_READONLY", vdi)
        for task, op in vm_rec["current_operations"].items():
            if op in ("migrate_send", "pool_migrate"):
                raise XenAPIError("OTHER_OPERATION_IN_PROGRESS", "VM", vm, op, task)
        userdevice = record["userdevice"]
        if not _VALID_USERDEVICE.match(userdevice):
            raise XenAPIError("INVALID_DEVICE", userdevice)
        used = {store.raw("VBD", b)["userdevice"] for b in vm_rec["VBDs"] if store.has("VBD", b)}
        if userdevice == "autodetect":
            free = [str(i) for i in range(255) if str(i) not in used]
            if not free:
                raise XenAPIError("INVALID_DEVICE", userdevice)
            userdevice = free[0]
        elif userdevice in used:
            raise XenAPIError("DEVICE_ALREADY_EXISTS", userdevice)
        suspended = vm_rec["power_state"] == "Suspended"
        fields = {
            **generic.constructor_values(store, "VBD", record),
            "userdevice": userdevice,
            "VDI": NULL_REF if empty and vdi not in store.tables["VDI"] else vdi,
            "device": record.get("device", "") if suspended else "",
            "currently_attached": bool(record.get("currently_attached")) if suspended else False,
            "storage_lock": False, "status_code": 0, "status_detail": "",
            "runtime_properties": {}, "qos_supported_algorithms": [],
        }
        vbd = store.create("VBD", fields)
        ctx.sim.refresh_allowed_operations("VBD", vbd)
        if store.has("VDI", fields["VDI"]):
            ctx.sim.refresh_allowed_operations("VDI", fields["VDI"])
        return vbd


@handler("VBD.destroy")
def vbd_destroy(ctx: CallContext, vbd: str) -> None:
    store = ctx.store
    with store.lock:
        rec = store.raw("VBD", vbd)
        if rec["currently_attached"]:
            vm_uuid = store.raw("VM", rec["VM"])["uuid"] if store.has("VM", rec["VM"]) else ""
            raise XenAPIError("OPERATION_NOT_ALLOWED",
                              f"VBD '{rec['uuid']}' still attached to '{vm_uuid}'")
        vdi = rec["VDI"]
        store.destroy("VBD", vbd)
        if store.has("VDI", vdi):
            ctx.sim.refresh_allowed_operations("VDI", vdi)


@handler("VBD.plug")
def vbd_plug(ctx: CallContext, vbd: str) -> None:
    store = ctx.store
    with vbd_operation(ctx, vbd, "plug"):
        ctx.work()
        with store.lock:
            rec = store.raw("VBD", vbd)
            vm = store.raw("VM", rec["VM"])
            if vm["power_state"] != "Running":
                raise XenAPIError("VM_BAD_POWER_STATE", rec["VM"], "running",
                                  vm["power_state"].lower())
            if not rec["empty"]:
                vdi = rec["VDI"]
                sr = store.raw("VDI", vdi)["SR"]
                if not sr_plugged_on(store, sr, vm["resident_on"]):
                    raise XenAPIError("VM_REQUIRES_SR", rec["VM"], sr)
                assert_vdi_shareable(store, vbd, vdi, "plug")
            store.update("VBD", vbd, currently_attached=True,
                         device=rec["device"] or device_name(rec["userdevice"]))


@handler("VBD.unplug", "VBD.unplug_force")
def vbd_unplug(ctx: CallContext, vbd: str) -> None:
    store = ctx.store
    op = "unplug_force" if ctx.method.endswith("unplug_force") else "unplug"
    with vbd_operation(ctx, vbd, op):
        ctx.work()
        with store.lock:
            rec = store.raw("VBD", vbd)
            if not rec["currently_attached"]:
                raise XenAPIError("DEVICE_ALREADY_DETACHED", vbd)
            store.update("VBD", vbd, currently_attached=False)


@handler("VBD.insert")
def vbd_insert(ctx: CallContext, vbd: str, vdi: str) -> None:
    store = ctx.store
    with store.lock:
        store.raw("VDI", vdi)
    with vbd_operation(ctx, vbd, "insert"):
        ctx.work()
        with store.lock:
            store.update("VBD", vbd, VDI=vdi, empty=False)
            ctx.sim.refresh_allowed_operations("VDI", vdi)


@handler("VBD.eject")
def vbd_eject(ctx: CallContext, vbd: str) -> None:
    store = ctx.store
    with vbd_operation(ctx, vbd, "eject"):
        ctx.work()
        with store.lock:
            old = store.raw("VBD", vbd)["VDI"]
            store.update("VBD", vbd, VDI=NULL_REF, empty=True)
            if store.has("VDI", old):
                ctx.sim.refresh_allowed_operations("VDI", old)


@handler("VBD.assert_attachable")
def vbd_assert_attachable(ctx: CallContext, vbd: str) -> None:
    store = ctx.store
    with store.lock:
        rec = store.raw("VBD", vbd)
        _assert_vbd_op(store, vbd, "attach")
        if not rec["empty"] and store.has("VDI", rec["VDI"]):
            assert_vdi_shareable(store, vbd, rec["VDI"], "attach")


@handler("VBD.set_mode")
def vbd_set_mode(ctx: CallContext, vbd: str, value: str) -> None:
    store = ctx.store
    with store.lock:
        rec = store.raw("VBD", vbd)
        if rec["currently_attached"]:
            raise XenAPIError("DEVICE_ALREADY_ATTACHED", vbd)
        store.update("VBD", vbd, mode=value)
