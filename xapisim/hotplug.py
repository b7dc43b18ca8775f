"""xapi's hot-plug rules for a running VM's devices: a VM booted as HVM
can plug and unplug disks and network interfaces only once its PV drivers
say they can (guest metrics ``can_use_hotplug_vbd`` / ``can_use_hotplug_vif``
"yes"), else VM_MISSING_PV_DRIVERS [vm]; its CD drives are never
hot-plugged, only inserted into or ejected (OPERATION_NOT_ALLOWED)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xapisim.errors import XenAPIError
from xapisim.schema import NULL_REF

if TYPE_CHECKING:
    from xapisim.store import Store


def booted_hvm(store: Store, vm: str) -> bool:
    rec = store.raw("VM", vm)
    metrics = rec["metrics"]
    if store.has("VM_metrics", metrics):
        kind = store.raw("VM_metrics", metrics)["current_domain_type"]
        if kind != "unspecified":
            return kind != "pv"
    return rec["domain_type"] == "hvm"


def hotplug_error(store: Store, vm: str, feature: str, is_cd: bool = False) -> XenAPIError | None:
    """Why ``vm`` (running) cannot hot-plug a device now, or None;
    ``feature`` is ``can_use_hotplug_vbd`` or ``can_use_hotplug_vif``."""
    if not store.has("VM", vm) or not booted_hvm(store, vm):
        return None
    if is_cd:
        return XenAPIError("OPERATION_NOT_ALLOWED",
                           "HVM CDROMs cannot be hotplugged/unplugged, only inserted or ejected")
    gm = store.raw("VM", vm)["guest_metrics"]
    if gm == NULL_REF or not store.has("VM_guest_metrics", gm) or \
            store.raw("VM_guest_metrics", gm).get(feature) != "yes":
        return XenAPIError("VM_MISSING_PV_DRIVERS", vm)
    return None
