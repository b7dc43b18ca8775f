"""SR.probe for NFS and iSCSI (lvmoiscsi) SRs, answered as xapi relays
the SM drivers' answers.

A complete device_config gives the SM driver's ``<SRlist>`` (the SRs
already on that export or LUN). A partial one fails the way clients rely
on to walk the user through the choices: xapi turns the driver's error
into ``SR_BACKEND_FAILURE_<n> ["", message, stderr]``, and the driver
printed what there is to choose from on stderr:

- NFS without ``serverpath``: code 101 with ``<nfs-exports>``;
- iSCSI without ``targetIQN``: code 96 with ``<iscsi-target-iqns>``;
- iSCSI without ``SCSIid``: code 107 with ``<iscsi-target>`` (the LUNs).

What storage exists is xapisim.storage_network's. Other SR types answer
an empty ``<SRlist>``; an unknown type SR_UNKNOWN_DRIVER. Device-config
values (CHAP secrets among them) never reach a log or an error."""

from __future__ import annotations

import xml.dom.minidom

from xapisim import storage_network as net
from xapisim.api import handler
from xapisim.api.sr import SR_TYPES
from xapisim.context import CallContext
from xapisim.errors import XenAPIError
from xapisim.store import Store

# SM's error codes (XE_SR_ERRORCODES.xml) for what SR.probe can meet
SM_ERRORS = {
    "NFSMount": (73, "NFS mount error"),
    "ConfigTargetMissing": (95, "The request is missing the target parameter"),
    "ConfigTargetIQNMissing": (96, "The request is missing or has an incorrect target IQN "
                                   "parameter"),
    "ConfigServerPathMissing": (101, "The request is missing the serverpath parameter"),
    "ConfigServerMissing": (102, "The request is missing the server parameter"),
    "ConfigSCSIid": (107, "The SCSIid parameter is missing or incorrect"),
    "NFSTarget": (108, "Unable to detect an NFS service on this target."),
    "ISCSILogin": (68, "ISCSI login failed - check access settings for the initiator on the "
                       "storage, if CHAP is used verify CHAP credentials"),
    "ISCSITarget": (141, "Unable to connect to ISCSI service on target"),
    "ISCSIPort": (142, "Incorrect value for iSCSI port, must be a number between 1 and 65535"),
}


def sm_error(name: str, stderr: str = "", opterr: str | None = None) -> XenAPIError:
    code, message = SM_ERRORS[name]
    if opterr is not None:
        message += f" [opterr={opterr}]"
    return XenAPIError(f"SR_BACKEND_FAILURE_{code}", "", message, stderr)


def _document(root: str, entries: list[list[tuple[str, str]]], entry: str) -> str:
    """``<root><entry><k>v</k>...</entry>...</root>``, pretty-printed as the
    SM drivers print with minidom."""
    dom = xml.dom.minidom.Document()
    top = dom.createElement(root)
    dom.appendChild(top)
    for fields in entries:
        e = dom.createElement(entry)
        top.appendChild(e)
        for key, value in fields:
            sub = dom.createElement(key)
            sub.appendChild(dom.createTextNode(value))
            e.appendChild(sub)
    return dom.toprettyxml()


def _pbd_configs(store: Store, sr_type: str) -> list[tuple[str, dict[str, str]]]:
    """(SR uuid, device_config) of the PBDs of SRs of ``sr_type``."""
    out = []
    for sr in store.find("SR", type=sr_type):
        rec = store.raw("SR", sr)
        for pbd in rec["PBDs"]:
            if store.has("PBD", pbd):
                out.append((rec["uuid"], store.raw("PBD", pbd)["device_config"]))
    return out


def probe_nfs(store: Store, dconf: dict[str, str]) -> str:
    server = dconf.get("server", "")
    if not server:
        raise sm_error("ConfigServerMissing")
    if not net.reachable(server):
        raise sm_error("NFSTarget")
    path = dconf.get("serverpath")
    if path is None:
        exports = [[("Target", server), ("Path", p), ("Accesslist", "*")]
                   for p in net.NFS_EXPORTS]
        raise sm_error("ConfigServerPathMissing", _document("nfs-exports", exports, "Export"))
    if path.rstrip("/") not in net.NFS_EXPORTS:
        raise sm_error("NFSMount", opterr="mount failed with return code 32")
    found = sorted({uuid for uuid, dc in _pbd_configs(store, "nfs")
                    if dc.get("server") == server
                    and dc.get("serverpath", "").rstrip("/") == path.rstrip("/")})
    return _document("SRlist", [[("UUID", u)] for u in found], "SR")


def probe_iscsi(store: Store, dconf: dict[str, str]) -> str:
    target = dconf.get("target", "")
    if not target:
        raise sm_error("ConfigTargetMissing")
    port = dconf.get("port", str(net.ISCSI_PORT))
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise sm_error("ISCSIPort")
    if not net.reachable(target):
        raise sm_error("ISCSITarget")
    iqn = net.target_iqn(target)
    wanted = dconf.get("targetIQN", "")
    if not wanted:
        tgt = [("Index", "0"), ("IPAddress", target)]
        if int(port) != net.ISCSI_PORT:
            tgt.append(("Port", port))
        tgt.append(("TargetIQN", iqn))
        raise sm_error("ConfigTargetIQNMissing", _document("iscsi-target-iqns", [tgt], "TGT"))
    if wanted not in (iqn, "*"):
        raise sm_error("ISCSILogin")
    scsi_id = dconf.get("SCSIid", "")
    if not scsi_id:
        entries = [[("vendor", lun.vendor), ("serial", lun.serial), ("LUNid", str(lun.lun_id)),
                    ("size", str(lun.size)), ("SCSIid", lun.scsi_id)] for lun in net.luns(iqn)]
        raise sm_error("ConfigSCSIid", _document("iscsi-target", entries, "LUN"))
    lun = net.find_lun(iqn, scsi_id)
    if lun is None:
        raise sm_error("ConfigSCSIid")
    found = sorted({uuid for uuid, dc in _pbd_configs(store, "lvmoiscsi")
                    if dc.get("SCSIid") == scsi_id})
    return _document("SRlist", [[("UUID", u), ("Devlist", f"/dev/disk/by-id/scsi-{scsi_id}"),
                                 ("size", str(lun.size))] for u in found], "SR")


PROBES = {"nfs": probe_nfs, "lvmoiscsi": probe_iscsi}


@handler("SR.probe")
def sr_probe(ctx: CallContext, host: str, device_config: dict[str, str], type: str,
             sm_config: dict[str, str]) -> str:
    store = ctx.store
    with store.lock:
        store.raw("host", host)
        if type not in SR_TYPES:
            raise XenAPIError("SR_UNKNOWN_DRIVER", type)
    ctx.work()
    probe = PROBES.get(type)
    with store.lock:
        if probe is None:
            return _document("SRlist", [], "SR")
        return probe(store, device_config)
