"""VDI messages with xapi's state errors and the VDI's allowed_operations.
Plain field setters (VDI.set_name_label, set_sharable, ...) are
api/setters.py's."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from xapisim import current_operations, vdi_data
from xapisim.api import allowed_operations, generic, handler
from xapisim.context import CallContext
from xapisim.errors import XenAPIError
from xapisim.schema import NULL_REF
from xapisim.sr_state import (
    assert_space,
    assert_sr_op,
    assert_sr_plugged,
    refresh_sr_usage,
    sr_attached_anywhere,
    sr_supported_ops,
)
from xapisim.store import Store, XDateTime
from xapisim.vdi_records import EPOCH, clone_vdi, copy_vdi, destroy_vdi, new_vdi

VDI_SR_OP = {"clone": "vdi_clone", "snapshot": "vdi_snapshot", "resize": "vdi_resize",
             "resize_online": "vdi_resize", "destroy": "vdi_destroy", "copy": "vdi_create",
             "mirror": "vdi_mirror", "enable_cbt": "vdi_enable_cbt",
             "disable_cbt": "vdi_disable_cbt", "data_destroy": "vdi_data_destroy",
             "set_on_boot": "vdi_set_on_boot", "list_changed_blocks": "vdi_list_changed_blocks"}
# VDI operations allowed while a VBD has the VDI attached (xapi's "live" ops)
VDI_LIVE_OPS = {"snapshot", "resize_online", "blocked", "clone", "mirror", "enable_cbt",
                "disable_cbt", "data_destroy"}
VDI_LISTED_OPS = ["clone", "copy", "resize", "resize_online", "snapshot", "mirror", "destroy",
                  "forget", "update", "force_unlock", "generate_config", "enable_cbt",
                  "disable_cbt", "data_destroy", "list_changed_blocks", "set_on_boot"]


def _active_vbds(store: Store, vdi: str) -> list[dict[str, Any]]:
    return [store.raw("VBD", b) for b in store.raw("VDI", vdi)["VBDs"]
            if store.has("VBD", b) and store.raw("VBD", b)["currently_attached"]]


def vdi_op_error(store: Store, vdi: str, op: str) -> XenAPIError | None:
    rec = store.raw("VDI", vdi)
    for task, cur in rec["current_operations"].items():
        if cur != "copy":
            return XenAPIError("OTHER_OPERATION_IN_PROGRESS", "VDI", vdi, cur, task)
    sr = rec["SR"]
    if op == "resize" and store.has("SR", sr) and not sr_attached_anywhere(store, sr):
        return XenAPIError("SR_HAS_NO_PBDS", sr)
    active = _active_vbds(store, vdi)
    if op in VDI_LIVE_OPS:
        blocked = False
    elif op == "copy":
        blocked = any(b["mode"] == "RW" for b in active)
    else:
        blocked = bool(active)
    if op == "resize_online" and not active:
        return XenAPIError("VDI_NOT_AVAILABLE", vdi)
    if blocked:
        return XenAPIError("VDI_IN_USE", vdi, op)
    for b in rec["VBDs"]:
        if store.has("VBD", b) and store.raw("VBD", b)["current_operations"]:
            task, cur = next(iter(store.raw("VBD", b)["current_operations"].items()))
            return XenAPIError("OTHER_OPERATION_IN_PROGRESS", "VDI", vdi, cur, task)
    sr_op = VDI_SR_OP.get(op)
    if sr_op and store.has("SR", sr) and sr_op not in sr_supported_ops(store.raw("SR", sr)):
        return XenAPIError("SR_OPERATION_NOT_SUPPORTED", sr)
    if op in ("resize", "resize_online", "snapshot", "clone") and rec["is_a_snapshot"] \
            and op.startswith("resize"):
        return XenAPIError("OPERATION_NOT_ALLOWED", "cannot resize a snapshot")
    return None


@allowed_operations("VDI")
def vdi_allowed(sim, ref: str) -> list[str]:
    store = sim.store
    return [op for op in VDI_LISTED_OPS if op != "force_unlock" and
            vdi_op_error(store, ref, op) is None]


def _assert_vdi_op(store: Store, vdi: str, op: str) -> None:
    err = vdi_op_error(store, vdi, op)
    if err is not None:
        raise err


def vdi_operation(ctx: CallContext, vdi: str, op: str) -> AbstractContextManager[None]:
    return current_operations.hold(ctx, "VDI", vdi, op, _assert_vdi_op)


@handler("VDI.create")
def vdi_create(ctx: CallContext, record: dict[str, Any]) -> str:
    store = ctx.store
    generic.check_constructor_fields(store, "VDI", record)
    with store.lock:
        sr = record["SR"]
        store.raw("SR", sr)
        assert_sr_op(store, sr, "vdi_create")
        assert_sr_plugged(store, sr)
    ctx.work()
    with store.lock:
        return new_vdi(ctx.sim, sr, record["virtual_size"],
                       name_label=record.get("name_label", ""),
                       name_description=record.get("name_description", ""),
                       vdi_type=record["type"], sharable=record["sharable"],
                       read_only=record["read_only"], other_config=record["other_config"],
                       sm_config=record.get("sm_config"),
                       xenstore_data=record.get("xenstore_data"), tags=record.get("tags"))


@handler("VDI.destroy")
def vdi_destroy(ctx: CallContext, vdi: str) -> None:
    store = ctx.store
    with store.lock:
        rec = store.raw("VDI", vdi)
        assert_sr_plugged(store, rec["SR"])
        if not rec["managed"]:
            raise XenAPIError("VDI_NOT_MANAGED", vdi)
    with vdi_operation(ctx, vdi, "destroy"):
        ctx.work()
        with store.lock:
            if _active_vbds(store, vdi):
                raise XenAPIError("VDI_IN_USE", vdi, "destroy")
            destroy_vdi(ctx.sim, vdi)


@handler("VDI.forget")
def vdi_forget(ctx: CallContext, vdi: str) -> None:
    store = ctx.store
    with store.lock:
        _assert_vdi_op(store, vdi, "forget")
        sr = store.raw("VDI", vdi)["SR"]
        for vbd in list(store.raw("VDI", vdi)["VBDs"]):
            store.destroy("VBD", vbd)
        store.destroy("VDI", vdi)
        refresh_sr_usage(store, sr)


@handler("VDI.clone")
def vdi_clone(ctx: CallContext, vdi: str, driver_params: dict[str, str]) -> str:
    with vdi_operation(ctx, vdi, "clone"):
        ctx.work()
        with ctx.store.lock:
            return clone_vdi(ctx.sim, vdi)


@handler("VDI.snapshot")
def vdi_snapshot(ctx: CallContext, vdi: str, driver_params: dict[str, str]) -> str:
    with vdi_operation(ctx, vdi, "snapshot"):
        ctx.work()
        with ctx.store.lock:
            return clone_vdi(ctx.sim, vdi, snapshot=True)


@handler("VDI.copy")
def vdi_copy(ctx: CallContext, vdi: str, sr: str, base_vdi: str, into_vdi: str) -> str:
    store = ctx.store
    with store.lock:
        src = store.raw("VDI", vdi)
        if into_vdi != NULL_REF:
            into = store.raw("VDI", into_vdi)
            if into["virtual_size"] < src["virtual_size"]:
                raise XenAPIError("VDI_TOO_SMALL", into_vdi, str(src["virtual_size"]))
        else:
            store.raw("SR", sr)
            assert_sr_op(store, sr, "vdi_create")
            assert_sr_plugged(store, sr)
            assert_space(store, sr, src["virtual_size"])
        if base_vdi != NULL_REF:
            store.raw("VDI", base_vdi)
    with vdi_operation(ctx, vdi, "copy"):
        ctx.work()
        with store.lock:
            if into_vdi != NULL_REF:
                vdi_data.copy_by_ref(ctx.sim, vdi, into_vdi)
                return into_vdi
            return copy_vdi(ctx.sim, vdi, sr)


def _resize(ctx: CallContext, vdi: str, size: int, op: str) -> None:
    store = ctx.store
    with store.lock:
        rec = store.raw("VDI", vdi)
        _assert_vdi_op(store, vdi, op)
        if size < rec["virtual_size"]:
            raise XenAPIError("VDI_TOO_SMALL", vdi, str(rec["virtual_size"]))
        assert_space(store, rec["SR"], size - rec["virtual_size"])
    with vdi_operation(ctx, vdi, op):
        ctx.work()
        with store.lock:
            rec = store.raw("VDI", vdi)
            # xapi/SM round the size up to whole MiB on block SRs
            assert_space(store, rec["SR"], size - rec["virtual_size"])
            store.update("VDI", vdi, virtual_size=size, physical_utilisation=size)
            refresh_sr_usage(store, rec["SR"])
            vdi_data.resize(ctx.sim, rec["uuid"], size)


@handler("VDI.resize")
def vdi_resize(ctx: CallContext, vdi: str, size: int) -> None:
    _resize(ctx, vdi, size, "resize")


@handler("VDI.resize_online")
def vdi_resize_online(ctx: CallContext, vdi: str, size: int) -> None:
    _resize(ctx, vdi, size, "resize_online")


@handler("VDI.update")
def vdi_update(ctx: CallContext, vdi: str) -> None:
    with ctx.store.lock:
        ctx.store.raw("VDI", vdi)


@handler("VDI.introduce")
def vdi_introduce(ctx: CallContext, uuid: str, name_label: str, name_description: str, sr: str,
                  type: str, sharable: bool, read_only: bool, other_config: dict[str, str],
                  location: str, xenstore_data: dict[str, str], sm_config: dict[str, str],
                  managed: bool, virtual_size: int, physical_utilisation: int,
                  metadata_of_pool: str, is_a_snapshot: bool, snapshot_time: str,
                  snapshot_of: str) -> str:
    store = ctx.store
    with store.lock:
        store.raw("SR", sr)
        assert_sr_op(store, sr, "vdi_introduce")
        if not location:
            raise XenAPIError("VDI_LOCATION_MISSING", sr, location)
        if uuid and uuid in store.by_uuid:
            raise XenAPIError("DB_UNIQUENESS_CONSTRAINT_VIOLATION", "VDI", "uuid", uuid)
        vdi = store.create("VDI", {
            "name_label": name_label, "name_description": name_description, "SR": sr,
            "type": type, "sharable": sharable, "read_only": read_only,
            "other_config": other_config, "location": location, "xenstore_data": xenstore_data,
            "sm_config": sm_config, "managed": managed, "virtual_size": virtual_size,
            "physical_utilisation": physical_utilisation, "metadata_of_pool": metadata_of_pool,
            "is_a_snapshot": is_a_snapshot, "snapshot_time": XDateTime(snapshot_time or EPOCH),
            "snapshot_of": snapshot_of, "parent": NULL_REF, "missing": False,
        })
        if uuid:
            store.update("VDI", vdi, uuid=uuid)
        refresh_sr_usage(store, sr)
        ctx.sim.refresh_allowed_operations("VDI", vdi)
        return vdi
