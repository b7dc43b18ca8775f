"""What an SR can do and where it is: the operations its driver supports,
whether it is attached (on a host, anywhere), the pool's default SR, and
its space accounting (physical_utilisation, virtual_allocation, SR_FULL).

The simulator's SRs are thick: a VDI uses its whole virtual_size of the
SR's physical space, so an SR fills up as VDIs are created."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xapisim.errors import XenAPIError
from xapisim.schema import NULL_REF

if TYPE_CHECKING:
    from xapisim.store import Store

# What an SR's driver can do (xapi asks the SM driver); ISO SRs less.
SR_OPS = ["scan", "destroy", "forget", "plug", "unplug", "update", "vdi_create",
          "vdi_introduce", "vdi_destroy", "vdi_resize", "vdi_clone", "vdi_snapshot",
          "vdi_mirror", "vdi_enable_cbt", "vdi_disable_cbt", "vdi_data_destroy",
          "vdi_list_changed_blocks", "vdi_set_on_boot", "pbd_create", "pbd_destroy"]
ISO_SR_OPS = ["scan", "destroy", "forget", "plug", "unplug", "update", "vdi_introduce",
              "vdi_destroy", "pbd_create", "pbd_destroy"]

# sm's LUN-per-VDI iSCSI driver: VDIs are the target's LUNs, found by scanning.
LUN_SR_OPS = ["scan", "destroy", "forget", "plug", "unplug", "update", "vdi_introduce",
              "pbd_create", "pbd_destroy"]


def sr_supported_ops(rec: dict[str, Any]) -> list[str]:
    """What the SR's driver can do at all (xapi asks the SM driver)."""
    if rec["type"] == "iscsi":
        return LUN_SR_OPS
    return ISO_SR_OPS if rec["type"] in ("iso", "udev") or rec["content_type"] == "iso" \
        else SR_OPS


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


def refresh_sr_usage(store: Store, sr: str) -> None:
    """Recompute the SR's totals from its VDIs (ISO SRs report nothing used)."""
    rec = store.raw("SR", sr)
    vdis = [store.raw("VDI", v) for v in rec["VDIs"] if store.has("VDI", v)]
    phys = sum(v["physical_utilisation"] for v in vdis)
    virt = sum(v["virtual_size"] for v in vdis)
    if rec["physical_utilisation"] != phys or rec["virtual_allocation"] != virt:
        store.update("SR", sr, physical_utilisation=phys, virtual_allocation=virt)


def assert_space(store: Store, sr: str, extra: int) -> None:
    rec = store.raw("SR", sr)
    if rec["content_type"] == "iso" or rec["physical_size"] <= 0:
        return
    if rec["physical_utilisation"] + extra > rec["physical_size"]:
        raise XenAPIError("SR_FULL", str(rec["physical_utilisation"] + extra),
                          str(rec["physical_size"]))


def assert_sr_op(store: Store, sr: str, op: str) -> None:
    if op not in sr_supported_ops(store.raw("SR", sr)):
        raise XenAPIError("SR_OPERATION_NOT_SUPPORTED", sr)


def assert_sr_plugged(store: Store, sr: str) -> None:
    if not sr_attached_anywhere(store, sr):
        raise XenAPIError("SR_HAS_NO_PBDS", sr)


def sr_plugged_on(store: Store, sr: str, host: str) -> bool:
    if not store.has("SR", sr):
        return False
    for pbd in store.raw("SR", sr)["PBDs"]:
        p = store.raw("PBD", pbd)
        if p["host"] == host and p["currently_attached"]:
            return True
    return False
