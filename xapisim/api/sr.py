"""SR and PBD messages: creating, introducing, forgetting and destroying
SRs, plugging their PBDs, and the SR's allowed_operations. Plain field
setters (SR.set_name_label, PBD.set_device_config, ...) are api/setters.py's."""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from xapisim import sr_files
from xapisim.api import allowed_operations, generic, handler
from xapisim.context import CallContext
from xapisim.errors import XenAPIError
from xapisim.schema import NULL_REF
from xapisim.sr_state import (
    assert_sr_plugged,
    refresh_sr_usage,
    sr_attached_anywhere,
    sr_supported_ops,
)
from xapisim.store import Store
from xapisim.vdi_records import destroy_vdi

SR_TYPES = {"ext", "lvm", "nfs", "lvmoiscsi", "lvmohba", "iso", "udev", "file", "smb",
            "dummy", "xfs", "zfs", "largeblock", "cifs", "gfs2", "lvmofcoe", "glusterfs",
            "cephfs", "moosefs", "linstor"}


# what needs no attached PBD (everything else needs the SR attached somewhere)
_DETACHED_SR_OPS = {"plug", "forget", "destroy", "pbd_create", "pbd_destroy"}


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
        assert_sr_plugged(store, sr)
    ctx.work()
    sr_files.scan(ctx.sim, sr)
    with store.lock:
        refresh_sr_usage(store, sr)


@handler("SR.update")
def sr_update(ctx: CallContext, sr: str) -> None:
    with ctx.store.lock:
        ctx.store.raw("SR", sr)
        refresh_sr_usage(ctx.store, sr)


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
        _remove_sr(store, sr)


def _remove_sr(store: Store, sr: str) -> None:
    """The SR record goes, with its PBDs and the pool's references to it."""
    for pbd in list(store.raw("SR", sr)["PBDs"]):
        store.destroy("PBD", pbd)
    for pool in store.refs("pool"):
        p = store.raw("pool", pool)
        upd = {k: NULL_REF for k in ("default_SR", "suspend_image_SR", "crash_dump_SR")
               if p[k] == sr}
        if upd:
            store.update("pool", pool, **upd)
    store.destroy("SR", sr)


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
        _remove_sr(store, sr)


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
    _set_attached(ctx, pbd, rec["SR"], True)


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
    _set_attached(ctx, pbd, sr, False)


def _set_attached(ctx: CallContext, pbd: str, sr: str, attached: bool) -> None:
    """What the SR and its VDIs allow depends on where the SR is attached."""
    with ctx.store.lock:
        ctx.store.update("PBD", pbd, currently_attached=attached)
        ctx.sim.refresh_allowed_operations("SR", sr)
        for vdi in ctx.store.raw("SR", sr)["VDIs"]:
            ctx.sim.refresh_allowed_operations("VDI", vdi)
