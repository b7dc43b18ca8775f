"""SR.scan of sm's LUN-per-VDI ``iscsi`` SRs: a VDI per LUN of the target
(xapisim.iscsi has the targets)."""

from __future__ import annotations

from typing import Any

from xapisim.iscsi import lun_vdi_uuid
from xapisim.vdi_records import new_vdi


def pbd_device_config(store: Any, sr: str, host: str) -> dict[str, str]:
    for pbd in store.raw("SR", sr)["PBDs"]:
        rec = store.raw("PBD", pbd)
        if rec["host"] == host or host == "":
            return dict(rec["device_config"])
    return {}


def scan_luns(sim: Any, sr: str) -> None:
    """SR.scan of an ``iscsi`` SR: a VDI per LUN the target offers (new
    ones introduced, existing ones kept), each ``managed`` with the LUN's
    size. Logging in again may fail as PBD.plug does."""
    store = sim.store
    with store.lock:
        rec = store.raw("SR", sr)
        if rec["type"] != "iscsi":
            return
        config = pbd_device_config(store, sr, "")
    target, luns = sim.storage_targets.luns_of(config)
    with store.lock:
        known = {store.raw("VDI", v)["sm_config"].get("SCSIid") for v in rec["VDIs"]
                 if store.has("VDI", v)}
        for lun, size in sorted(luns.items()):
            scsi_id = target.scsi_id(lun)
            if scsi_id in known:
                continue
            vdi_uuid = lun_vdi_uuid(scsi_id)
            if vdi_uuid in store.by_uuid:
                continue  # the LUN is a VDI of another SR on the same target
            vdi = new_vdi(sim, sr, size, name_label=f"LUN{lun}: {scsi_id}",
                          name_description=f"{target.iqn} LUN {lun}",
                          sm_config={"LUNid": str(lun), "SCSIid": scsi_id},
                          extra={"location": scsi_id})
            store.update("VDI", vdi, uuid=vdi_uuid)
