"""Block-storage volumes on iSCSI targets: the SR of a target, the VDI of a
LUN and the VBD that attaches it to an instance's VM.

One SR (sm's LUN-per-VDI ``iscsi`` type) per target (portal + IQN), with a
uuid derived from the target so a restarted agent finds the SR it made
without having recorded it. Attach introduces the SR if needed
(``SR.introduce``, ``PBD.create``, ``PBD.plug``), scans it, finds the LUN's
VDI, creates a VBD on a free device and hot-plugs it into a running VM (a
halted VM gets it at its next start). Detach unplugs and destroys the VBD
and forgets the SR once no VDI of it is attached anywhere. Every VBD made
here carries ``other_config`` ``compute-agent-volume-id``, so an
interrupted attach or detach can be found and finished.

The CHAP secret goes to dom0 in the PBD's device_config and nowhere else:
not in logs, errors or anything returned.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.base import Operation
from compute_agent.driver.xenapi import ownership
from compute_agent.driver.xenapi.session import SessionPool
from compute_agent.driver.xenapi.storage import VOLUME_MARK
from compute_agent.driver.xenapi.tasks import TaskRunner

LOG = logging.getLogger(__name__)

NULL_REF = "OpaqueRef:NULL"
VOLUME_KEY = VOLUME_MARK
SR_TYPE = "iscsi"
# SR uuids of targets: uuid5 of "portal|iqn" in this namespace.
SR_NAMESPACE = uuidlib.UUID("3f1e6a52-8a59-4c39-9d62-2f0b7a4c1d10")
_DEVICE_NAME = re.compile(r"^(?:xvd|sd|hd|vd)([a-p])$")


@dataclass(frozen=True)
class IscsiTarget:
    """What a Cinder-style iSCSI connection_info names."""

    address: str
    port: str
    iqn: str
    lun: int
    chap_user: str = ""
    chap_secret: str = field(default="", repr=False)

    @property
    def portal(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def sr_uuid(self) -> str:
        return sr_uuid_of(self.portal, self.iqn)

    def device_config(self) -> dict[str, str]:
        config = {"target": self.address, "port": self.port, "targetIQN": self.iqn}
        if self.chap_user:
            config.update(chapuser=self.chap_user, chappassword=self.chap_secret)
        return config


def sr_uuid_of(portal: str, iqn: str) -> str:
    return str(uuidlib.uuid5(SR_NAMESPACE, f"{portal}|{iqn}"))


def sr_uuid_from(location: dict[str, Any] | None) -> str | None:
    """The SR uuid a recorded attachment names, or derives from its target."""
    if not location:
        return None
    if location.get("sr_uuid"):
        return str(location["sr_uuid"])
    portal, iqn = location.get("target_portal"), location.get("target_iqn")
    if not portal or not iqn:
        return None
    address, sep, port = str(portal).rpartition(":")
    if not sep:
        address, port = port, "3260"
    return sr_uuid_of(f"{address.strip('[]')}:{port}", str(iqn))


def parse_connection_info(info: Any) -> IscsiTarget:
    """An IscsiTarget from ``{driver_volume_type: "iscsi", data: {...}}``;
    INVALID_INPUT [field, reason] for anything else (never echoing values,
    which may hold the secret)."""
    if not isinstance(info, dict):
        raise exceptions.InvalidInput("connection_info", "must be an object")
    if info.get("driver_volume_type") != "iscsi":
        raise exceptions.InvalidInput("connection_info.driver_volume_type",
                                      "only 'iscsi' is supported")
    data = info.get("data")
    if not isinstance(data, dict):
        raise exceptions.InvalidInput("connection_info.data", "must be an object")
    for key in ("target_portal", "target_iqn"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise exceptions.InvalidInput(f"connection_info.data.{key}",
                                          "must be a non-empty string")
    lun = data.get("target_lun", 0)
    if isinstance(lun, bool) or not isinstance(lun, int) or not 0 <= lun < 16384:
        raise exceptions.InvalidInput("connection_info.data.target_lun",
                                      "must be an integer from 0 to 16383")
    address, sep, port = data["target_portal"].strip().rpartition(":")
    if not sep:
        address, port = port, "3260"
    if not address or not port.isdigit() or not 0 < int(port) < 65536:
        raise exceptions.InvalidInput("connection_info.data.target_portal",
                                      "must be ADDRESS[:PORT]")
    address = address.strip("[]")
    method = data.get("auth_method") or ""
    user, secret = "", ""
    if method:
        if str(method).upper() != "CHAP":
            raise exceptions.InvalidInput("connection_info.data.auth_method",
                                          "only CHAP is supported")
        user, secret = data.get("auth_username"), data.get("auth_password")
        if not isinstance(user, str) or not user or not isinstance(secret, str) or not secret:
            raise exceptions.InvalidInput("connection_info.data",
                                          "CHAP needs auth_username and auth_password")
    return IscsiTarget(address, port, data["target_iqn"].strip(), lun, user, secret)


def userdevice_of(device: Any) -> str | None:
    """'xvdc' / '/dev/xvdc' / '2' -> '2'; None when no device is asked for."""
    if device is None or device == "":
        return None
    if isinstance(device, int) and not isinstance(device, bool):
        text = str(device)
    elif isinstance(device, str):
        text = device.strip().removeprefix("/dev/")
    else:
        raise exceptions.InvalidInput("device", "must be a device name like xvdb")
    if text.isdigit():
        return text
    match = _DEVICE_NAME.match(text)
    if match:
        return str(ord(match.group(1)) - ord("a"))
    raise exceptions.InvalidInput("device", "must be a device name like xvdb")


def device_name(userdevice: str) -> str:
    n = int(userdevice)
    return "xvd" + chr(ord("a") + n) if n < 26 else userdevice


class Volumes:
    def __init__(self, pool: SessionPool, runner: TaskRunner, agent_host: str):
        self.pool = pool
        self.runner = runner
        self.agent_host = agent_host
        # One attach or release per target at a time in this process: a
        # release must not forget the SR an attach is about to use.
        self._targets: dict[str, threading.Lock] = {}
        self._targets_lock = threading.Lock()

    def _target_lock(self, sr_uuid: str) -> threading.Lock:
        with self._targets_lock:
            return self._targets.setdefault(sr_uuid, threading.Lock())

    # -- attach ------------------------------------------------------------------------
    def attach(self, op: Operation, instance: dict[str, Any], vm: str, vm_rec: dict[str, Any],
               volume_id: str, target: IscsiTarget, device: str | None) -> dict[str, Any]:
        """Attach the LUN; on any failure undo what this call made (the SR
        stays if another VDI of it is in use). Returns device, sr_uuid,
        vdi_uuid, vbd_uuid."""
        userdevice = self._pick_device(vm, device)
        with self._target_lock(target.sr_uuid):
            return self._attach(op, instance, vm, vm_rec, volume_id, target, userdevice)

    def _attach(self, op: Operation, instance: dict[str, Any], vm: str,
                vm_rec: dict[str, Any], volume_id: str, target: IscsiTarget,
                userdevice: str) -> dict[str, Any]:
        sr, introduced = self._ensure_sr(op, target, vm_rec)
        vbd: str | None = None
        try:
            vdi = self._find_lun(op, sr, target, volume_id)
            record = {
                "VM": vm, "VDI": vdi, "userdevice": userdevice, "bootable": False,
                "mode": "RW", "type": "Disk", "empty": False, "unpluggable": True,
                "other_config": ownership.marks(instance["uuid"], self.agent_host,
                                                **{VOLUME_KEY: volume_id}),
                "qos_algorithm_type": "", "qos_algorithm_params": {},
            }
            vbd = self.pool.call("VBD.create", record)
            if vm_rec.get("power_state") == "Running":
                self.runner.run(op, "VBD.plug", vbd)
            return {
                "device": device_name(userdevice),
                "sr_uuid": target.sr_uuid,
                "vdi_uuid": self.pool.call("VDI.get_uuid", vdi),
                "vbd_uuid": self.pool.call("VBD.get_uuid", vbd),
            }
        except BaseException:
            with self.runner.cleanup(op, 60.0):
                if vbd is not None:
                    self._remove_vbd(op, vbd)
                self._release_sr(op, target.sr_uuid, force_forget=introduced)
            raise

    def _pick_device(self, vm: str, device: str | None) -> str:
        allowed = [d for d in self.pool.call("VM.get_allowed_VBD_devices", vm) if d != "0"]
        if device is None:
            if not allowed:
                raise exceptions.HypervisorError(vm, code="NO_FREE_DEVICE")
            return sorted(allowed, key=int)[0]
        if device not in allowed:
            raise exceptions.InvalidInput("device", "is in use or not allowed")
        return device

    def _ensure_sr(self, op: Operation, target: IscsiTarget,
                   vm_rec: dict[str, Any]) -> tuple[str, bool]:
        """(SR ref, whether this call introduced it), plugged on the host."""
        host = vm_rec.get("resident_on") or NULL_REF
        if host == NULL_REF:
            pool_ref = self.pool.call("pool.get_all")[0]
            host = self.pool.call("pool.get_master", pool_ref)
        introduced = False
        try:
            sr = self.pool.call("SR.get_by_uuid", target.sr_uuid)
        except exceptions.HypervisorError as e:
            if e.code != "UUID_INVALID":
                raise
            try:
                sr = self.pool.call("SR.introduce", target.sr_uuid, f"volumes on {target.iqn}",
                                    f"iSCSI target {target.iqn} at {target.portal}", SR_TYPE,
                                    "", False, {})
                introduced = True
            except exceptions.HypervisorError as e2:
                if e2.code != "SR_UUID_EXISTS":  # another agent of the pool was quicker
                    raise
                sr = self.pool.call("SR.get_by_uuid", target.sr_uuid)
        try:
            pbd = self._pbd_on(sr, host)
            if pbd is None:
                pbd = self.pool.call("PBD.create", {"host": host, "SR": sr,
                                                    "device_config": target.device_config()})
            if not self.pool.call("PBD.get_currently_attached", pbd):
                self.runner.run(op, "PBD.plug", pbd)
        except BaseException:
            if introduced:
                with self.runner.cleanup(op, 60.0):
                    self._release_sr(op, target.sr_uuid, force_forget=True)
            raise
        return sr, introduced

    def _pbd_on(self, sr: str, host: str) -> str | None:
        for pbd in self.pool.call("SR.get_PBDs", sr):
            if self.pool.call("PBD.get_host", pbd) == host:
                return pbd
        return None

    def _find_lun(self, op: Operation, sr: str, target: IscsiTarget, volume_id: str) -> str:
        self.runner.run(op, "SR.scan", sr)
        for vdi in self.pool.call("SR.get_VDIs", sr):
            sm_config = self.pool.call("VDI.get_sm_config", vdi)
            if sm_config.get("LUNid") == str(target.lun):
                return vdi
        raise exceptions.ComputeAgentError(volume_id, str(target.lun), code="VOLUME_LUN_NOT_FOUND",
                                           message=f"LUN {target.lun} of volume {volume_id} "
                                                   "is not on its target")

    # -- detach ------------------------------------------------------------------------
    def volume_vbds(self, instance_uuid: str, volume_id: str | None = None) -> dict[str, dict]:
        """VBDs this agent made for the instance's volumes (one volume's
        when ``volume_id`` is given): ref -> record."""
        out = {}
        for ref, rec in self.pool.call("VBD.get_all_records").items():
            other = rec.get("other_config") or {}
            if VOLUME_KEY not in other or ownership.instance_of(rec) != instance_uuid:
                continue
            if volume_id is None or other[VOLUME_KEY] == volume_id:
                out[ref] = rec
        return out

    def detach(self, op: Operation, instance_uuid: str, volume_id: str,
               sr_uuid: str | None) -> None:
        """Unplug and destroy the volume's VBD(s), then release the SR.
        Idempotent: nothing attached is success."""
        srs = {sr_uuid} if sr_uuid else set()
        for vbd, rec in self.volume_vbds(instance_uuid, volume_id).items():
            srs.add(self._sr_uuid_of_vdi(rec.get("VDI")))
            self._remove_vbd(op, vbd, rec)
        for sr in sorted(s for s in srs if s):
            self.release_sr(op, sr)

    def detach_all(self, op: Operation, instance_uuid: str) -> list[str]:
        """Detach every volume of the instance (before its VM is destroyed,
        so the LUNs are not taken for its disks); returns the volume ids."""
        volumes = {rec["other_config"][VOLUME_KEY]
                   for rec in self.volume_vbds(instance_uuid).values()}
        for volume_id in sorted(volumes):
            self.detach(op, instance_uuid, volume_id, None)
        return sorted(volumes)

    def _sr_uuid_of_vdi(self, vdi: str | None) -> str | None:
        if not vdi or vdi == NULL_REF:
            return None
        try:
            return self.pool.call("SR.get_uuid", self.pool.call("VDI.get_SR", vdi))
        except exceptions.HypervisorError as e:
            if e.code == "HANDLE_INVALID":
                return None
            raise

    def _remove_vbd(self, op: Operation, vbd: str, rec: dict[str, Any] | None = None) -> None:
        try:
            rec = rec or self.pool.call("VBD.get_record", vbd)
            if rec.get("currently_attached"):
                try:
                    self.runner.run(op, "VBD.unplug", vbd)
                except exceptions.HypervisorError as e:
                    # the VM halted meanwhile: the VBD is detached anyway
                    if e.code not in ("DEVICE_ALREADY_DETACHED", "VM_BAD_POWER_STATE"):
                        raise
            self.pool.call("VBD.destroy", vbd)
        except exceptions.HypervisorError as e:
            if e.code != "HANDLE_INVALID":
                raise

    def release_sr(self, op: Operation, sr_uuid: str, force_forget: bool = False) -> bool:
        """Forget the SR when no VDI of it has a VBD (``force_forget``: also
        an SR of another type, as after a failed introduce). True if it went."""
        with self._target_lock(sr_uuid):
            return self._release_sr(op, sr_uuid, force_forget)

    def _release_sr(self, op: Operation, sr_uuid: str, force_forget: bool = False) -> bool:
        try:
            sr = self.pool.call("SR.get_by_uuid", sr_uuid)
        except exceptions.HypervisorError as e:
            if e.code == "UUID_INVALID":
                return True
            raise
        for vdi in self.pool.call("SR.get_VDIs", sr):
            if self.pool.call("VDI.get_VBDs", vdi):
                return False
        if not force_forget and self.pool.call("SR.get_type", sr) != SR_TYPE:
            return False
        for pbd in self.pool.call("SR.get_PBDs", sr):
            if self.pool.call("PBD.get_currently_attached", pbd):
                self.runner.run(op, "PBD.unplug", pbd)
        self.pool.call("SR.forget", sr)
        LOG.info("Forgot SR %s: no volume of it is attached any more", sr_uuid)
        return True
