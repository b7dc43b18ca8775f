"""The storage a simulated pool can see on its network: iSCSI targets and
NFS servers, for SR.probe (and any driver that wants to list them).

Every address answers, except the documentation range 192.0.2.0/24 (RFC
5737) and names under ``.invalid``, which stand for storage that does not
answer. An iSCSI target serves one IQN, ``iqn.2026-11.org.xapisim:<target>``,
with two LUNs (0: 100 GiB, 1: 200 GiB) whose SCSI ids are derived from the
IQN, so they are the same every run. An NFS server exports
``/export/xapisim`` and ``/export/iso``."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass

GiB = 1024**3
ISCSI_PORT = 3260
NFS_EXPORTS = ("/export/xapisim", "/export/iso")
_UNREACHABLE = ipaddress.ip_network("192.0.2.0/24")


def reachable(address: str) -> bool:
    if not address or address.endswith(".invalid"):
        return False
    try:
        return ipaddress.ip_address(address) not in _UNREACHABLE
    except ValueError:
        return True  # a host name: assumed resolvable


@dataclass(frozen=True)
class Lun:
    lun_id: int
    size: int
    scsi_id: str
    serial: str
    vendor: str = "XAPISIM"


def target_iqn(target: str) -> str:
    return "iqn.2026-11.org.xapisim:" + (re.sub(r"[^a-z0-9.-]", "-", target.lower()) or "target")


def luns(iqn: str) -> list[Lun]:
    out = []
    for lun_id, size in ((0, 100 * GiB), (1, 200 * GiB)):
        digest = hashlib.sha1(f"{iqn}/{lun_id}".encode()).hexdigest()
        out.append(Lun(lun_id, size, "36" + digest[:30], digest[30:40]))
    return out


def find_lun(iqn: str, scsi_id: str) -> Lun | None:
    return next((lun for lun in luns(iqn) if lun.scsi_id == scsi_id), None)
