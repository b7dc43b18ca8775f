"""iSCSI storage targets outside the pool, and what xapi's iSCSI SR drivers
make of them.

A test defines targets through the control API (``POST /_sim/storage/
target``): an IQN reachable at a portal, its LUNs and, optionally, the CHAP
credentials it demands. SRs of type ``iscsi`` (sm's LUN-per-VDI driver,
the one nova's volume code used) and ``lvmoiscsi`` name a target in their
PBD's ``device_config`` (``target``, ``port``, ``targetIQN``, ``chapuser``,
``chappassword``); plugging the PBD logs in to the target, and a refusal is
the ``SR_BACKEND_FAILURE_<n> ["", reason, stderr]`` xapi raises when the
SM backend faults (codes and texts from sm's XE_SR_ERRORCODES.xml).
``SR.scan`` of an ``iscsi`` SR makes one VDI per LUN, with
``sm_config`` ``LUNid`` and ``SCSIid`` and a uuid derived from the SCSI
id, so a LUN keeps its VDI uuid across SR.forget and a new introduce.
"""

from __future__ import annotations

import hmac
import threading
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

from xapisim.errors import XenAPIError

ISCSI_SR_TYPES = ("iscsi", "lvmoiscsi")
DEFAULT_PORT = 3260
# SM error codes and their texts (sm drivers/XE_SR_ERRORCODES.xml).
SM_ERRORS = {
    "ISCSILogin": (68, "ISCSI login failed - check access settings for the initiator on the "
                       "storage, if CHAP is used verify CHAP credentials"),
    "ISCSIDiscovery": (83, "ISCSI discovery failed"),
    "ConfigTargetMissing": (95, "The request is missing the target parameter"),
    "ConfigTargetIQNMissing": (96, "The request is missing or has an incorrect target IQN "
                                   "parameter"),
    "ISCSITarget": (141, "Unable to connect to ISCSI service on target"),
    "ISCSIPort": (142, "Incorrect value for iSCSI port, must be a number between 1 and 65535"),
}
_SCSI_NAMESPACE = uuidlib.UUID("6ba7b812-9dad-11d1-80b4-00c04fd430c8")


def sm_error(name: str) -> XenAPIError:
    code, reason = SM_ERRORS[name]
    return XenAPIError(f"SR_BACKEND_FAILURE_{code}", "", reason, "")


@dataclass
class Target:
    iqn: str
    address: str
    port: int
    luns: dict[int, int]  # LUN id -> size in bytes
    chap_user: str = ""
    chap_secret: str = field(default="", repr=False)
    logins: int = 0  # successful logins, for tests

    def scsi_id(self, lun: int) -> str:
        # A stable SCSI id per (target, LUN), shaped like a WWN-based one.
        digest = uuidlib.uuid5(_SCSI_NAMESPACE, f"{self.iqn}/{lun}").hex
        return "36" + digest[:31]

    def public(self) -> dict[str, Any]:
        """What the control API shows: never the CHAP secret."""
        return {"iqn": self.iqn, "portal": f"{self.address}:{self.port}",
                "luns": {str(k): v for k, v in sorted(self.luns.items())},
                "chap": bool(self.chap_user), "logins": self.logins}


class StorageTargets:
    """The targets the simulated hosts can reach; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._targets: dict[str, Target] = {}

    def define(self, iqn: str, portal: str, luns: dict[int, int], chap_user: str = "",
               chap_secret: str = "") -> Target:
        address, _, port = portal.rpartition(":") if ":" in portal else (portal, "", "")
        target = Target(iqn, address or portal, int(port or DEFAULT_PORT), dict(luns),
                        chap_user, chap_secret)
        with self._lock:
            self._targets[iqn] = target
        return target

    def remove(self, iqn: str) -> bool:
        with self._lock:
            return self._targets.pop(iqn, None) is not None

    def all(self) -> list[Target]:
        with self._lock:
            return list(self._targets.values())

    def login(self, device_config: dict[str, str]) -> Target:
        """The target a PBD's device_config names, as the SM driver's attach
        finds it: discovery at the portal, then a login with CHAP if the
        target demands it. Raises the SR_BACKEND_FAILURE xapi gives."""
        address = device_config.get("target", "")
        if not address:
            raise sm_error("ConfigTargetMissing")
        iqn = device_config.get("targetIQN", "")
        if not iqn:
            raise sm_error("ConfigTargetIQNMissing")
        port_text = device_config.get("port", str(DEFAULT_PORT)) or str(DEFAULT_PORT)
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise sm_error("ISCSIPort")
        port = int(port_text)
        with self._lock:
            at_portal = [t for t in self._targets.values()
                         if t.address == address and t.port == port]
            if not at_portal:
                raise sm_error("ISCSITarget")
            target = next((t for t in at_portal if t.iqn == iqn or iqn == "*"), None)
            if target is None:
                raise sm_error("ISCSIDiscovery")
            if target.chap_user:
                user_ok = hmac.compare_digest(device_config.get("chapuser", ""),
                                              target.chap_user)
                secret_ok = hmac.compare_digest(device_config.get("chappassword", ""),
                                                target.chap_secret)
                if not (user_ok and secret_ok):
                    raise sm_error("ISCSILogin")
            target.logins += 1
            return target

    def luns_of(self, device_config: dict[str, str]) -> tuple[Target, dict[int, int]]:
        target = self.login(device_config)
        with self._lock:
            return target, dict(target.luns)


def lun_vdi_uuid(scsi_id: str) -> str:
    """The VDI uuid of a LUN: derived from its SCSI id (as sm's
    LUN-per-VDI driver derives it), so it is the same after a re-scan."""
    return str(uuidlib.uuid5(_SCSI_NAMESPACE, scsi_id))

