"""Storage: SR, PBD, VDI and VBD messages with xapi's state errors, SR
space accounting (physical_utilisation, virtual_allocation) and the
allowed_operations of VDIs, VBDs and SRs.

The simulator's SRs are thick: a VDI uses its whole virtual_size of the SR's
physical space, so an SR fills up (SR_FULL) as VDIs are created."""

from __future__ import annotations

import contextlib
import re
import uuid as uuidlib
from collections.abc import Iterator
from typing import Any

from xapisim import vdi_data
from xapisim.api import allowed_operations, generic, handler
from xapisim.context import CallContext
from xapisim.domains import device_name
from xapisim.errors import XenAPIError
from xapisim.placement import assert_vdi_shareable, sr_plugged_on
from xapisim.schema import NULL_REF
from xapisim.store import Store, XDateTime, now_datetime

EPOCH = XDateTime("19700101T00:00:00Z")
SR_TYPES = {"ext", "lvm", "nfs", "lvmoiscsi", "lvmohba", "iso", "udev", "file", "smb",
            "dummy", "xfs", "zfs", "largeblock", "cifs", "gfs2", "lvmofcoe", "glusterfs",
            "cephfs", "moosefs", "linstor"}
# SR types whose VDIs are files in a directory the SR can rescan.
SR_OPS = ["scan", "destroy", "forget", "plug", "unplug", "update", "vdi_create",
          "vdi_introduce", "vdi_destroy", "vdi_resize", "vdi_clone", "vdi_snapshot",
          "vdi_mirror", "vdi_enable_cbt", "vdi_disable_cbt", "vdi_data_destroy",
          "vdi_list_changed_blocks", "vdi_set_on_boot", "pbd_create", "pbd_destroy"]
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


# -- SR space and VDI objects (also used by VM clone/copy/snapshot/suspend) ------------------


def pool_default_sr(store: Store) -> str:
    pools = store.refs("pool")
    if pools:
        sr = store.raw("pool", pools[0])["default_SR"]
        if store.has("SR", sr):
            return sr
    return NULL_REF


def sr_attached_anywhere(store: Store, sr: str) -> bool:
    return any(store.raw("PBD", p)["currently_attached"] for p in store.raw("SR", sr)["PBDs"]
               if store.has("PBD", p))


def _sr_refresh_usage(store: Store, sr: str) -> None:
    """Recompute the SR's totals from its VDIs (ISO SRs report nothing used)."""
    rec = store.raw("SR", sr)
    vdis = [store.raw("VDI", v) for v in rec["VDIs"] if store.has("VDI", v)]
    phys = sum(v["physical_utilisation"] for v in vdis)
    virt = sum(v["virtual_size"] for v in vdis)
    if rec["physical_utilisation"] != phys or rec["virtual_allocation"] != virt:
        store.update("SR", sr, physical_utilisation=phys, virtual_allocation=virt)


def _assert_space(store: Store, sr: str, extra: int) -> None:
    rec = store.raw("SR", sr)
    if rec["content_type"] == "iso" or rec["physical_size"] <= 0:
        return
    if rec["physical_utilisation"] + extra > rec["physical_size"]:
        raise XenAPIError("SR_FULL", str(rec["physical_utilisation"] + extra),
                          str(rec["physical_size"]))


def _assert_sr_op(store: Store, sr: str, op: str) -> None:
    if op not in sr_supported_ops(store.raw("SR", sr)):
        raise XenAPIError("SR_OPERATION_NOT_SUPPORTED", sr)


def _assert_sr_plugged(store: Store, sr: str) -> None:
    if not sr_attached_anywhere(store, sr):
        raise XenAPIError("SR_HAS_NO_PBDS", sr)


def new_vdi(sim, sr: str, size: int, *, name_label: str = "", name_description: str = "",
            vdi_type: str = "user", sharable: bool = False, read_only: bool = False,
            other_config: dict[str, str] | None = None, sm_config: dict[str, str] | None = None,
            xenstore_data: dict[str, str] | None = None, tags: list[str] | None = None,
            extra: dict[str, Any] | None = None) -> str:
    store = sim.store
    with store.lock:
        if size < 0:
            raise XenAPIError("INVALID_VALUE", "virtual_size", str(size))
        _assert_space(store, sr, size)
        fields = {
            "name_label": name_label, "name_description": name_description, "SR": sr,
            "virtual_size": size, "physical_utilisation": size, "type": vdi_type,
            "sharable": sharable, "read_only": read_only, "other_config": other_config or {},
            "sm_config": sm_config or {}, "xenstore_data": xenstore_data or {},
            "tags": tags or [], "managed": True, "missing": False,
            "storage_lock": False, "parent": NULL_REF, "snapshot_of": NULL_REF,
            "is_a_snapshot": False, "snapshot_time": EPOCH, "on_boot": "persist",
            **(extra or {}),
        }
        vdi = store.create("VDI", fields)
        if not fields.get("location"):
            store.update("VDI", vdi, location=store.raw("VDI", vdi)["uuid"])
        _sr_refresh_usage(store, sr)
        sim.refresh_allowed_operations("VDI", vdi)
        _copy_data_hook(sim, None, vdi)
        return vdi


def _copy_data_hook(sim, src: str | None, dst: str) -> None:
    """VDI contents (files kept by xapisim.vdi_data) follow clones and copies."""
    if src is not None:
        vdi_data.copy_by_ref(sim, src, dst)


def clone_vdi(sim, vdi: str, snapshot: bool = False, name_label: str | None = None) -> str:
    store = sim.store
    with store.lock:
        src = store.raw("VDI", vdi)
        extra = {"is_a_snapshot": snapshot, "snapshot_of": vdi if snapshot else NULL_REF,
                 "snapshot_time": now_datetime() if snapshot else EPOCH}
        new = new_vdi(sim, src["SR"], src["virtual_size"],
                      name_label=src["name_label"] if name_label is None else name_label,
                      name_description=src["name_description"], vdi_type=src["type"],
                      sharable=src["sharable"], read_only=src["read_only"],
                      other_config=dict(src["other_config"]),
                      sm_config=dict(src["sm_config"]), xenstore_data=dict(src["xenstore_data"]),
                      tags=list(src["tags"]), extra=extra)
        _copy_data_hook(sim, vdi, new)
        return new


def copy_vdi(sim, vdi: str, sr: str) -> str:
    store = sim.store
    with store.lock:
        src = store.raw("VDI", vdi)
        store.raw("SR", sr)
        new = new_vdi(sim, sr, src["virtual_size"], name_label=src["name_label"],
                      name_description=src["name_description"], vdi_type=src["type"],
                      sharable=src["sharable"], read_only=src["read_only"],
                      other_config=dict(src["other_config"]), sm_config={},
                      xenstore_data=dict(src["xenstore_data"]), tags=list(src["tags"]))
        _copy_data_hook(sim, vdi, new)
        return new


def destroy_vdi(sim, vdi: str, force: bool = False) -> None:
    """VDI.destroy's effect: the VDI and its VBDs go, SR totals shrink."""
    store = sim.store
    with store.lock:
        rec = store.raw("VDI", vdi)
        sr = rec["SR"]
        for vbd in list(rec["VBDs"]):
            if store.has("VBD", vbd):
                store.destroy("VBD", vbd)
        for vm in store.find("VM", suspend_VDI=vdi):
            store.update("VM", vm, suspend_VDI=NULL_REF)
        uuid = rec["uuid"]
        store.destroy("VDI", vdi)
        if store.has("SR", sr):
            _sr_refresh_usage(store, sr)
        vdi_data.delete(sim, uuid)


# -- VDI ----------------------------------------------------------------------------------------


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


@contextlib.contextmanager
def vdi_operation(ctx: CallContext, vdi: str, op: str) -> Iterator[None]:
    store = ctx.store
    with store.lock:
        _assert_vdi_op(store, vdi, op)
        cur = dict(store.raw("VDI", vdi)["current_operations"])
        cur[ctx.op_ref] = op
        store.update("VDI", vdi, current_operations=cur)
        ctx.sim.refresh_allowed_operations("VDI", vdi)
    try:
        yield
    finally:
        with store.lock:
            if store.has("VDI", vdi):
                cur = dict(store.raw("VDI", vdi)["current_operations"])
                cur.pop(ctx.op_ref, None)
                store.update("VDI", vdi, current_operations=cur)
                ctx.sim.refresh_allowed_operations("VDI", vdi)


@handler("VDI.create")
def vdi_create(ctx: CallContext, record: dict[str, Any]) -> str:
    store = ctx.store
    c = store.model.classes["VDI"]
    for name, f in c.fields.items():
        if f.in_constructor and not f.has_default and name not in record:
            raise XenAPIError("FIELD_TYPE_ERROR", name)
    with store.lock:
        sr = record["SR"]
        store.raw("SR", sr)
        _assert_sr_op(store, sr, "vdi_create")
        _assert_sr_plugged(store, sr)
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
        _assert_sr_plugged(store, rec["SR"])
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
        _sr_refresh_usage(store, sr)


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
            _assert_sr_op(store, sr, "vdi_create")
            _assert_sr_plugged(store, sr)
            _assert_space(store, sr, src["virtual_size"])
        if base_vdi != NULL_REF:
            store.raw("VDI", base_vdi)
    with vdi_operation(ctx, vdi, "copy"):
        ctx.work()
        with store.lock:
            if into_vdi != NULL_REF:
                _copy_data_hook(ctx.sim, vdi, into_vdi)
                return into_vdi
            return copy_vdi(ctx.sim, vdi, sr)


def _resize(ctx: CallContext, vdi: str, size: int, op: str) -> None:
    store = ctx.store
    with store.lock:
        rec = store.raw("VDI", vdi)
        _assert_vdi_op(store, vdi, op)
        if size < rec["virtual_size"]:
            raise XenAPIError("VDI_TOO_SMALL", vdi, str(rec["virtual_size"]))
        _assert_space(store, rec["SR"], size - rec["virtual_size"])
    with vdi_operation(ctx, vdi, op):
        ctx.work()
        with store.lock:
            rec = store.raw("VDI", vdi)
            # xapi/SM round the size up to whole MiB on block SRs
            _assert_space(store, rec["SR"], size - rec["virtual_size"])
            store.update("VDI", vdi, virtual_size=size, physical_utilisation=size)
            _sr_refresh_usage(store, rec["SR"])
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


@handler("VDI.set_name_label")
def vdi_set_name_label(ctx: CallContext, vdi: str, value: str) -> None:
    with ctx.store.lock:
        ctx.store.raw("VDI", vdi)
        ctx.store.update("VDI", vdi, name_label=value)


@handler("VDI.set_name_description")
def vdi_set_name_description(ctx: CallContext, vdi: str, value: str) -> None:
    with ctx.store.lock:
        ctx.store.raw("VDI", vdi)
        ctx.store.update("VDI", vdi, name_description=value)


@handler("VDI.set_read_only")
def vdi_set_read_only(ctx: CallContext, vdi: str, value: bool) -> None:
    with ctx.store.lock:
        ctx.store.raw("VDI", vdi)
        ctx.store.update("VDI", vdi, read_only=value)


@handler("VDI.set_sharable")
def vdi_set_sharable(ctx: CallContext, vdi: str, value: bool) -> None:
    with ctx.store.lock:
        ctx.store.raw("VDI", vdi)
        ctx.store.update("VDI", vdi, sharable=value)


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
        _assert_sr_op(store, sr, "vdi_introduce")
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
        _sr_refresh_usage(store, sr)
        ctx.sim.refresh_allowed_operations("VDI", vdi)
        return vdi


# -- SR and PBD -------------------------------------------------------------------------------


ISO_SR_OPS = ["scan", "destroy", "forget", "plug", "unplug", "update", "vdi_introduce",
              "vdi_destroy", "pbd_create", "pbd_destroy"]
# what needs no attached PBD (everything else needs the SR attached somewhere)
_DETACHED_SR_OPS = {"plug", "forget", "destroy", "pbd_create", "pbd_destroy"}


def sr_supported_ops(rec: dict[str, Any]) -> list[str]:
    """What the SR's driver can do at all (xapi asks the SM driver)."""
    return ISO_SR_OPS if rec["type"] in ("iso", "udev") or rec["content_type"] == "iso" \
        else SR_OPS


@allowed_operations("SR")
def sr_allowed(sim, ref: str) -> list[str]:
    store = sim.store
    rec = store.raw("SR", ref)
    if rec["current_operations"]:
        return []
    attached = sr_attached_anywhere(store, ref)
    out = []
    for op in sr_supported_ops(rec):
        if attached and op in ("plug", "forget", "destroy"):
            continue
        if not attached and op not in _DETACHED_SR_OPS:
            continue
        if op == "destroy" and not rec["PBDs"]:
            continue
        out.append(op)
    return out


@handler("SR.scan")
def sr_scan(ctx: CallContext, sr: str) -> None:
    store = ctx.store
    with store.lock:
        store.raw("SR", sr)
        _assert_sr_plugged(store, sr)
    ctx.work()
    with store.lock:
        _sr_refresh_usage(store, sr)


@handler("SR.update")
def sr_update(ctx: CallContext, sr: str) -> None:
    with ctx.store.lock:
        ctx.store.raw("SR", sr)
        _sr_refresh_usage(ctx.store, sr)


@handler("SR.get_supported_types")
def sr_get_supported_types(ctx: CallContext) -> list[str]:
    return sorted(SR_TYPES)


def _check_sr_type(sr_type: str) -> None:
    if sr_type not in SR_TYPES:
        raise XenAPIError("SR_UNKNOWN_DRIVER", sr_type)


def _make_sr(store: Store, name_label: str, name_description: str, sr_type: str,
             content_type: str, shared: bool, sm_config: dict[str, str],
             physical_size: int) -> str:
    return store.create("SR", {
        "name_label": name_label, "name_description": name_description, "type": sr_type,
        "content_type": content_type, "shared": shared, "sm_config": sm_config,
        "physical_size": physical_size, "physical_utilisation": 0, "virtual_allocation": 0,
        "other_config": {},
    })


@handler("SR.create")
def sr_create(ctx: CallContext, host: str, device_config: dict[str, str], physical_size: int,
              name_label: str, name_description: str, type: str, content_type: str,
              shared: bool, sm_config: dict[str, str]) -> str:
    store = ctx.store
    with store.lock:
        store.raw("host", host)
        _check_sr_type(type)
    ctx.work()
    with store.lock:
        size = physical_size if physical_size > 0 else ctx.sim.sr_size_gb * 1024 ** 3
        sr = _make_sr(store, name_label, name_description, type, content_type, shared,
                      sm_config, size)
        hosts = store.refs("host") if shared else [host]
        for h in hosts:
            store.create("PBD", {"host": h, "SR": sr, "device_config": device_config,
                                 "currently_attached": True, "other_config": {}})
        ctx.sim.refresh_allowed_operations("SR", sr)
        return sr


@handler("SR.make")
def sr_make(ctx: CallContext, host: str, device_config: dict[str, str], physical_size: int,
            name_label: str, name_description: str, type: str, content_type: str,
            sm_config: dict[str, str]) -> str:
    with ctx.store.lock:
        ctx.store.raw("host", host)
        _check_sr_type(type)
    return str(uuidlib.uuid4())


@handler("SR.introduce")
def sr_introduce(ctx: CallContext, uuid: str, name_label: str, name_description: str, type: str,
                 content_type: str, shared: bool, sm_config: dict[str, str]) -> str:
    store = ctx.store
    with store.lock:
        _check_sr_type(type)
        if uuid and uuid in store.by_uuid:
            raise XenAPIError("SR_UUID_EXISTS", uuid)
        sr = _make_sr(store, name_label, name_description, type, content_type, shared,
                      sm_config, 0)
        if uuid:
            store.update("SR", sr, uuid=uuid)
        ctx.sim.refresh_allowed_operations("SR", sr)
        return sr


@handler("SR.forget")
def sr_forget(ctx: CallContext, sr: str) -> None:
    store = ctx.store
    with store.lock:
        rec = store.raw("SR", sr)
        if sr_attached_anywhere(store, sr):
            raise XenAPIError("SR_HAS_PBD", sr)
        for vdi in list(rec["VDIs"]):
            for vbd in list(store.raw("VDI", vdi)["VBDs"]):
                store.destroy("VBD", vbd)
            store.destroy("VDI", vdi)
        for pbd in list(rec["PBDs"]):
            store.destroy("PBD", pbd)
        _forget_pool_refs(store, sr)
        store.destroy("SR", sr)


def _forget_pool_refs(store: Store, sr: str) -> None:
    for pool in store.refs("pool"):
        p = store.raw("pool", pool)
        upd = {k: NULL_REF for k in ("default_SR", "suspend_image_SR", "crash_dump_SR")
               if p[k] == sr}
        if upd:
            store.update("pool", pool, **upd)


@handler("SR.destroy")
def sr_destroy(ctx: CallContext, sr: str) -> None:
    store = ctx.store
    with store.lock:
        rec = store.raw("SR", sr)
        if sr_attached_anywhere(store, sr):
            raise XenAPIError("SR_HAS_PBD", sr)
        if not rec["PBDs"]:
            raise XenAPIError("SR_HAS_NO_PBDS", sr)
        if rec["other_config"].get("indestructible") == "true":
            raise XenAPIError("SR_INDESTRUCTIBLE", sr)
    ctx.work()
    with store.lock:
        rec = store.raw("SR", sr)
        for vdi in list(rec["VDIs"]):
            if store.has("VDI", vdi):
                destroy_vdi(ctx.sim, vdi)
        for pbd in list(rec["PBDs"]):
            store.destroy("PBD", pbd)
        _forget_pool_refs(store, sr)
        store.destroy("SR", sr)


@handler("SR.set_name_label")
def sr_set_name_label(ctx: CallContext, sr: str, value: str) -> None:
    with ctx.store.lock:
        ctx.store.raw("SR", sr)
        ctx.store.update("SR", sr, name_label=value)


@handler("SR.set_name_description")
def sr_set_name_description(ctx: CallContext, sr: str, value: str) -> None:
    with ctx.store.lock:
        ctx.store.raw("SR", sr)
        ctx.store.update("SR", sr, name_description=value)


@handler("SR.set_shared")
def sr_set_shared(ctx: CallContext, sr: str, value: bool) -> None:
    with ctx.store.lock:
        ctx.store.raw("SR", sr)
        ctx.store.update("SR", sr, shared=value)


@handler("SR.set_physical_size")
def sr_set_physical_size(ctx: CallContext, sr: str, value: int) -> None:
    with ctx.store.lock:
        ctx.store.raw("SR", sr)
        ctx.store.update("SR", sr, physical_size=value)


@handler("PBD.create")
def pbd_create(ctx: CallContext, record: dict[str, Any]) -> str:
    store = ctx.store
    with store.lock:
        for name in ("host", "SR"):
            if name not in record:
                raise XenAPIError("FIELD_TYPE_ERROR", name)
        store.raw("host", record["host"])
        store.raw("SR", record["SR"])
        for pbd in store.raw("SR", record["SR"])["PBDs"]:
            if store.raw("PBD", pbd)["host"] == record["host"]:
                raise XenAPIError("PBD_EXISTS", record["SR"], record["host"], pbd)
        pbd = generic.create(ctx, "PBD", {"device_config": {}, **record},
                             currently_attached=False)
        ctx.sim.refresh_allowed_operations("SR", record["SR"])
        return pbd


@handler("PBD.destroy")
def pbd_destroy(ctx: CallContext, pbd: str) -> None:
    store = ctx.store
    with store.lock:
        rec = store.raw("PBD", pbd)
        if rec["currently_attached"]:
            raise XenAPIError("OPERATION_NOT_ALLOWED", "PBD is currently attached")
        store.destroy("PBD", pbd)
        ctx.sim.refresh_allowed_operations("SR", rec["SR"])


@handler("PBD.plug")
def pbd_plug(ctx: CallContext, pbd: str) -> None:
    store = ctx.store
    with store.lock:
        rec = store.raw("PBD", pbd)
        if rec["currently_attached"]:
            return  # xapi: plugging a plugged PBD is a no-op
    ctx.work()
    with store.lock:
        store.update("PBD", pbd, currently_attached=True)
        ctx.sim.refresh_allowed_operations("SR", rec["SR"])
        for vdi in store.raw("SR", rec["SR"])["VDIs"]:
            ctx.sim.refresh_allowed_operations("VDI", vdi)


@handler("PBD.unplug")
def pbd_unplug(ctx: CallContext, pbd: str) -> None:
    store = ctx.store
    with store.lock:
        rec = store.raw("PBD", pbd)
        if not rec["currently_attached"]:
            return  # xapi: unplugging an unplugged PBD is a no-op
        sr = rec["SR"]
        # A VDI of this SR in use by a running VM on this host keeps the SR busy.
        for vdi in store.raw("SR", sr)["VDIs"]:
            for vbd in store.raw("VDI", vdi)["VBDs"]:
                b = store.raw("VBD", vbd)
                vm = b["VM"]
                if b["currently_attached"] and store.has("VM", vm) and \
                        store.raw("VM", vm)["resident_on"] in (rec["host"], NULL_REF):
                    raise XenAPIError("VDI_IN_USE", vdi, "unplug")
    ctx.work()
    with store.lock:
        store.update("PBD", pbd, currently_attached=False)
        ctx.sim.refresh_allowed_operations("SR", sr)
        for vdi in store.raw("SR", sr)["VDIs"]:
            ctx.sim.refresh_allowed_operations("VDI", vdi)


@handler("PBD.set_device_config")
def pbd_set_device_config(ctx: CallContext, pbd: str, value: dict[str, str]) -> None:
    with ctx.store.lock:
        ctx.store.raw("PBD", pbd)
        ctx.store.update("PBD", pbd, device_config=value)


# -- VBD ---------------------------------------------------------------------------------------

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


@contextlib.contextmanager
def vbd_operation(ctx: CallContext, vbd: str, op: str) -> Iterator[None]:
    store = ctx.store
    with store.lock:
        _assert_vbd_op(store, vbd, op)
        store.update("VBD", vbd, current_operations={ctx.op_ref: op})
        ctx.sim.refresh_allowed_operations("VBD", vbd)
    try:
        yield
    finally:
        with store.lock:
            if store.has("VBD", vbd):
                store.update("VBD", vbd, current_operations={})
                ctx.sim.refresh_allowed_operations("VBD", vbd)
                vdi = store.raw("VBD", vbd)["VDI"]
                if store.has("VDI", vdi):
                    ctx.sim.refresh_allowed_operations("VDI", vdi)


@handler("VBD.create")
def vbd_create(ctx: CallContext, record: dict[str, Any]) -> str:
    store = ctx.store
    c = store.model.classes["VBD"]
    for name, f in c.fields.items():
        if f.in_constructor and not f.has_default and name not in record:
            raise XenAPIError("FIELD_TYPE_ERROR", name)
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
            **{k: v for k, v in record.items() if c.fields.get(k) and c.fields[k].in_constructor},
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
