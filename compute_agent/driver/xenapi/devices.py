"""What the XenAPI driver does to a VM's devices and guest after it exists:
volumes, ports, the guest agent, and the attachments dom0 shows (for
recovery). Finds the instance's VM, then hands over to volumes.py,
vifs.py or guest_agent.py, which do one job each."""

from __future__ import annotations

from typing import Any

from compute_agent import exceptions
from compute_agent.driver.base import Operation
from compute_agent.driver.xenapi import ownership
from compute_agent.driver.xenapi.config_drive import ConfigDrive
from compute_agent.driver.xenapi.guest_agent import GuestAgent
from compute_agent.driver.xenapi.vifs import PORT_KEY, Ports, is_port, parse_port
from compute_agent.driver.xenapi.vm_ops import VMOps
from compute_agent.driver.xenapi.volumes import (
    VOLUME_KEY,
    Volumes,
    parse_connection_info,
    sr_uuid_from,
    userdevice_of,
)

NULL_REF = "OpaqueRef:NULL"
MAX_BUILD_VOLUMES = 14


def parse_block_device_mapping(bdm: Any) -> list[dict[str, Any]]:
    """``[{volume_id, connection_info, device?}]`` checked (INVALID_INPUT)."""
    if bdm is None:
        return []
    if not isinstance(bdm, list) or len(bdm) > MAX_BUILD_VOLUMES:
        raise exceptions.InvalidInput("block_device_mapping",
                                      f"must be a list of at most {MAX_BUILD_VOLUMES} volumes")
    out = []
    for i, entry in enumerate(bdm):
        field = f"block_device_mapping.{i}"
        if not isinstance(entry, dict):
            raise exceptions.InvalidInput(field, "must be an object")
        volume_id = entry.get("volume_id")
        if not isinstance(volume_id, str) or not volume_id.strip() or len(volume_id) > 255:
            raise exceptions.InvalidInput(f"{field}.volume_id", "must be a non-empty string")
        out.append({"volume_id": volume_id.strip(),
                    "target": parse_connection_info(entry.get("connection_info")),
                    "device": userdevice_of(entry.get("device"))})
    return out


class InstanceDevices:
    def __init__(self, vmops: VMOps, volumes: Volumes, ports: Ports, guest: GuestAgent,
                 config_drive: ConfigDrive, config_drive_default: bool = False):
        self.vmops = vmops
        self.volumes = volumes
        self.ports = ports
        self.guest = guest
        self.config_drive = config_drive
        self.config_drive_default = config_drive_default

    @classmethod
    def on(cls, pool: Any, runner: Any, vmops: VMOps, storage: Any, networking: Any,
           host: str, conf: Any) -> InstanceDevices:
        """The parts for one connection to dom0, hooked into ``vmops``'s
        build and destroy."""
        xs = conf.xenserver
        devices = cls(vmops, Volumes(pool, runner, host),
                      Ports(pool, runner, networking, host, xs.ovs_integration_bridge),
                      GuestAgent(pool, runner, float(xs.agent_timeout)),
                      ConfigDrive(pool, runner, storage, host),
                      config_drive_default=bool(conf.config_drive))
        vmops.attach_at_build = devices.attach_at_build
        vmops.before_destroy = devices.volumes.detach_all
        return devices

    def _vm(self, instance: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return self.vmops.require(instance)

    # -- at build (the VM exists, halted) ----------------------------------------------
    def attach_at_build(self, op: Operation, instance: dict[str, Any], vm: str) -> None:
        """The build's ports and block_device_mapping volumes (the VM is
        halted: they are plugged when it starts)."""
        rec = self.vmops.pool.call("VM.get_record", vm)
        ports = []
        for i, entry in enumerate(instance.get("networks") or []):
            if is_port(entry):
                ports.append(self.ports.attach(op, instance["uuid"], vm, rec,
                                               parse_port(entry, f"networks.{i}")))
                ports[-1]["id"] = entry["id"]
        for vol in parse_block_device_mapping(instance.get("block_device_mapping")):
            self.volumes.attach(op, instance, vm, rec, vol["volume_id"], vol["target"],
                                vol["device"])
        wanted = instance.get("config_drive")
        if wanted or (wanted is None and self.config_drive_default):
            self.config_drive.attach(op, instance, vm, ports)

    # -- volumes -----------------------------------------------------------------------
    def attach_volume(self, op: Operation, instance: dict[str, Any], volume_id: str,
                      connection_info: Any, device: Any) -> dict[str, Any]:
        target = parse_connection_info(connection_info)
        vm, rec = self._vm(instance)
        return self.volumes.attach(op, instance, vm, rec, volume_id, target,
                                   userdevice_of(device))

    def detach_volume(self, op: Operation, instance: dict[str, Any], volume_id: str,
                      location: dict[str, Any] | None = None) -> None:
        self.volumes.detach(op, instance["uuid"], volume_id, sr_uuid_from(location))

    # -- ports ---------------------------------------------------------------------------
    def attach_interface(self, op: Operation, instance: dict[str, Any],
                         port: Any) -> dict[str, Any]:
        parsed = parse_port(port)
        vm, rec = self._vm(instance)
        return self.ports.attach(op, instance["uuid"], vm, rec, parsed)

    def detach_interface(self, op: Operation, instance: dict[str, Any], port_id: str) -> None:
        self.ports.detach(op, instance["uuid"], port_id)

    # -- what dom0 shows -------------------------------------------------------------------
    def list_attachments(self, instance: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """``{"volumes": {volume_id: {...}}, "ports": {port_id: {...}}}`` as
        dom0 has them for the instance (its VM may be gone)."""
        pool = self.vmops.pool
        volumes: dict[str, Any] = {}
        for rec in self.volumes.volume_vbds(instance["uuid"]).values():
            vdi = rec.get("VDI", NULL_REF)
            sr_uuid = vdi_uuid = None
            if vdi and vdi != NULL_REF:
                vdi_uuid = pool.call("VDI.get_uuid", vdi)
                sr_uuid = pool.call("SR.get_uuid", pool.call("VDI.get_SR", vdi))
            volumes[rec["other_config"][VOLUME_KEY]] = {
                "vbd_uuid": rec.get("uuid"), "device": rec.get("userdevice"),
                "currently_attached": bool(rec.get("currently_attached")),
                "vdi_uuid": vdi_uuid, "sr_uuid": sr_uuid,
            }
        ports: dict[str, Any] = {}
        for rec in self.ports.find_vifs(instance["uuid"]).values():
            ports[rec["other_config"][PORT_KEY]] = {
                "vif_uuid": rec.get("uuid"), "device": rec.get("device"),
                "mac_address": rec.get("MAC"),
                "currently_attached": bool(rec.get("currently_attached")),
            }
        return {"volumes": volumes, "ports": ports}

    def attachment_ids(self) -> dict[str, set[tuple[str, str]]]:
        pool = self.vmops.pool
        out: dict[str, set[tuple[str, str]]] = {}
        for cls, key, kind in (("VBD", VOLUME_KEY, "volume"), ("VIF", PORT_KEY, "port")):
            for rec in pool.call(f"{cls}.get_all_records").values():
                other = rec.get("other_config") or {}
                uuid = ownership.instance_of(rec)
                if key in other and uuid and ownership.owned_by(rec, self.volumes.agent_host):
                    out.setdefault(uuid, set()).add((kind, other[key]))
        return out

    # -- the guest ---------------------------------------------------------------------------
    def set_admin_password(self, op: Operation, instance: dict[str, Any], password: str) -> None:
        self.guest.set_password(op, self._vm(instance)[1], password)

    def inject_file(self, op: Operation, instance: dict[str, Any], path: str,
                    contents: bytes) -> None:
        self.guest.inject_file(op, self._vm(instance)[1], path, contents)

    def reset_network(self, op: Operation, instance: dict[str, Any]) -> None:
        pool = self.vmops.pool
        vm, rec = self._vm(instance)
        interfaces = []
        for vif in rec.get("VIFs", []):
            vif_rec = pool.call("VIF.get_record", vif)
            interfaces.append({
                "mac": str(vif_rec.get("MAC", "")).lower(),
                "device": vif_rec.get("device"),
                "network": pool.call("network.get_uuid", vif_rec["network"]),
                "port_id": (vif_rec.get("other_config") or {}).get(PORT_KEY),
            })
        self.guest.reset_network(op, rec, interfaces)
