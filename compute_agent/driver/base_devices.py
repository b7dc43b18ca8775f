"""The part of the driver interface (driver/base.py) for an instance's
devices and guest (RPC 1.4): volumes, ports, the guest agent, and what the
hypervisor has attached (for recovery). ComputeDriver inherits it; every
method's contract is in its docstring.

Drivers that cannot do these raise NotImplementedError; the manager answers
OPERATION_NOT_SUPPORTED [operation, driver].
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compute_agent.driver.base import Operation


class DeviceOperations:
    def attach_volume(self, op: Operation, instance: dict[str, Any], volume_id: str,
                      connection_info: dict[str, Any], device: Any = None) -> dict[str, Any]:
        """Attach a block-storage volume. ``connection_info`` is Cinder's
        ``{driver_volume_type: "iscsi", data: {target_portal, target_iqn,
        target_lun, auth_method, auth_username, auth_password}}``; ``device``
        a device name ('xvdc') or None for the first free one. A running VM
        gets it hot-plugged, a halted one at its next start. Returns
        ``{device, sr_uuid, vdi_uuid, vbd_uuid}``. On failure nothing stays
        half attached. Errors: INVALID_INPUT for a bad connection_info or
        device, the hypervisor's (e.g. ``SR_BACKEND_FAILURE_68`` for a CHAP
        refusal). The CHAP secret appears in no log, error or result."""
        raise NotImplementedError

    def detach_volume(self, op: Operation, instance: dict[str, Any], volume_id: str,
                      location: dict[str, Any] | None = None) -> None:
        """Detach the volume (unplug, remove the device) and release the
        target's storage when nothing else uses it. ``location`` is what the
        caller knows of where it was (``sr_uuid``, ``target_portal``,
        ``target_iqn``; any may be None). Idempotent: a volume not attached
        is success, also when the VM is gone."""
        raise NotImplementedError

    def attach_interface(self, op: Operation, instance: dict[str, Any],
                         port: dict[str, Any]) -> dict[str, Any]:
        """Attach a network port ``{id, mac_address, network}`` (network
        omitted: the integration bridge), hot-plugged into a running VM.
        Returns ``{mac_address, network, device, vif_uuid}``. Errors:
        MAC_ADDRESS_IN_USE [mac, port id], NETWORK_NOT_FOUND [network],
        ATTACHMENT_EXISTS, INVALID_INPUT."""
        raise NotImplementedError

    def detach_interface(self, op: Operation, instance: dict[str, Any], port_id: str) -> None:
        """Unplug and remove the port's interface; none is success."""
        raise NotImplementedError

    def list_attachments(self, instance: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """What the hypervisor has attached to the instance, for recovery:
        ``{"volumes": {volume_id: {device, sr_uuid, vdi_uuid, vbd_uuid,
        currently_attached}}, "ports": {port_id: {device, mac_address,
        vif_uuid, currently_attached}}}`` (empty when there is no VM)."""
        raise NotImplementedError

    def attachment_ids(self) -> dict[str, set[tuple[str, str]]]:
        """Every instance's attachments the hypervisor has, in one look:
        instance uuid -> {("volume", volume_id), ("port", port_id), ...}.
        Recovery compares it with the database to pick the instances it
        then examines one by one (list_attachments)."""
        raise NotImplementedError

    def set_admin_password(self, op: Operation, instance: dict[str, Any], password: str) -> None:
        """Set the guest's administrator password through its agent; the
        password never crosses to the guest in clear. Errors:
        GUEST_AGENT_TIMEOUT [uuid, command, seconds] (no agent answered),
        GUEST_AGENT_ERROR [code, message] (it refused),
        INSTANCE_INVALID_STATE when the VM is not running."""
        raise NotImplementedError

    def inject_file(self, op: Operation, instance: dict[str, Any], path: str,
                    contents: bytes) -> None:
        """Write ``contents`` to ``path`` in the guest through its agent;
        errors as set_admin_password."""
        raise NotImplementedError

    def reset_network(self, op: Operation, instance: dict[str, Any]) -> None:
        """Hand the guest its interfaces' settings and have its agent
        reconfigure the network; errors as set_admin_password."""
        raise NotImplementedError
