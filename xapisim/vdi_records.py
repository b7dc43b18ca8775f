"""VDI records as VM and VDI messages make them: new, cloned or
snapshotted, copied to another SR, destroyed. Each keeps its SR's space
totals right, and the VDI's contents (xapisim.vdi_data) follow clones and
copies."""

from __future__ import annotations

from typing import Any

from xapisim import vdi_data
from xapisim.errors import XenAPIError
from xapisim.schema import NULL_REF
from xapisim.sr_state import assert_space, refresh_sr_usage
from xapisim.store import XDateTime, now_datetime

EPOCH = XDateTime("19700101T00:00:00Z")


def new_vdi(sim, sr: str, size: int, *, name_label: str = "", name_description: str = "",
            vdi_type: str = "user", sharable: bool = False, read_only: bool = False,
            other_config: dict[str, str] | None = None, sm_config: dict[str, str] | None = None,
            xenstore_data: dict[str, str] | None = None, tags: list[str] | None = None,
            extra: dict[str, Any] | None = None) -> str:
    store = sim.store
    with store.lock:
        if size < 0:
            raise XenAPIError("INVALID_VALUE", "virtual_size", str(size))
        assert_space(store, sr, size)
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
        refresh_sr_usage(store, sr)
        sim.refresh_allowed_operations("VDI", vdi)
        return vdi


def _duplicate(sim, vdi: str, sr: str, *, name_label: str | None = None,
               sm_config: dict[str, str], extra: dict[str, Any] | None = None) -> str:
    """A new VDI on ``sr`` with ``vdi``'s settings and contents."""
    store = sim.store
    with store.lock:
        src = store.raw("VDI", vdi)
        new = new_vdi(sim, sr, src["virtual_size"],
                      name_label=src["name_label"] if name_label is None else name_label,
                      name_description=src["name_description"], vdi_type=src["type"],
                      sharable=src["sharable"], read_only=src["read_only"],
                      other_config=dict(src["other_config"]), sm_config=sm_config,
                      xenstore_data=dict(src["xenstore_data"]), tags=list(src["tags"]),
                      extra=extra)
        vdi_data.copy_by_ref(sim, vdi, new)
        return new


def clone_vdi(sim, vdi: str, snapshot: bool = False, name_label: str | None = None) -> str:
    """A clone or snapshot of ``vdi`` on its own SR."""
    with sim.store.lock:
        src = sim.store.raw("VDI", vdi)
        extra = {"is_a_snapshot": snapshot, "snapshot_of": vdi if snapshot else NULL_REF,
                 "snapshot_time": now_datetime() if snapshot else EPOCH}
        return _duplicate(sim, vdi, src["SR"], name_label=name_label,
                          sm_config=dict(src["sm_config"]), extra=extra)


def copy_vdi(sim, vdi: str, sr: str) -> str:
    """A full copy of ``vdi`` on ``sr``; the source SR's sm_config stays behind."""
    with sim.store.lock:
        sim.store.raw("VDI", vdi)
        sim.store.raw("SR", sr)
        return _duplicate(sim, vdi, sr, sm_config={})


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
            refresh_sr_usage(store, sr)
        vdi_data.delete(sim, uuid)
