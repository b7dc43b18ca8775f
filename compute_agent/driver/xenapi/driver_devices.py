"""The XenAPI driver's volume, port and guest agent methods (RPC 1.4):
each runs under the operation's scope and hands over to devices.py.
XenAPIDriver inherits them (it provides ``_ops``, ``_timeout`` and
``devices``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from compute_agent.driver.base import Operation

if TYPE_CHECKING:
    from compute_agent.driver.xenapi.devices import InstanceDevices
    from compute_agent.driver.xenapi.tasks import TaskRunner


class DeviceMethods:
    devices: InstanceDevices | None

    def _ops(self) -> tuple[TaskRunner, Any]:  # XenAPIDriver's
        raise NotImplementedError

    def _timeout(self, op: Operation) -> float:  # XenAPIDriver's
        raise NotImplementedError

    def _devices(self) -> InstanceDevices:
        self._ops()
        assert self.devices is not None
        return self.devices

    def attach_volume(self, op: Operation, instance: dict[str, Any], volume_id: str,
                      connection_info: Any, device: Any = None) -> dict[str, Any]:
        runner, _ = self._ops()
        with runner.operation(op, self._timeout(op)):
            return self._devices().attach_volume(op, instance, volume_id, connection_info,
                                                 device)

    def detach_volume(self, op: Operation, instance: dict[str, Any], volume_id: str,
                      location: dict[str, Any] | None = None) -> None:
        runner, _ = self._ops()
        with runner.operation(op, self._timeout(op)):
            self._devices().detach_volume(op, instance, volume_id, location)

    def attach_interface(self, op: Operation, instance: dict[str, Any],
                         port: Any) -> dict[str, Any]:
        runner, _ = self._ops()
        with runner.operation(op, self._timeout(op)):
            return self._devices().attach_interface(op, instance, port)

    def detach_interface(self, op: Operation, instance: dict[str, Any], port_id: str) -> None:
        runner, _ = self._ops()
        with runner.operation(op, self._timeout(op)):
            self._devices().detach_interface(op, instance, port_id)

    def list_attachments(self, instance: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return self._devices().list_attachments(instance)

    def attachment_ids(self) -> dict[str, set[tuple[str, str]]]:
        return self._devices().attachment_ids()

    def set_admin_password(self, op: Operation, instance: dict[str, Any], password: str) -> None:
        runner, _ = self._ops()
        with runner.operation(op, self._timeout(op)):
            self._devices().set_admin_password(op, instance, password)

    def inject_file(self, op: Operation, instance: dict[str, Any], path: str,
                    contents: bytes) -> None:
        runner, _ = self._ops()
        with runner.operation(op, self._timeout(op)):
            self._devices().inject_file(op, instance, path, contents)

    def reset_network(self, op: Operation, instance: dict[str, Any]) -> None:
        runner, _ = self._ops()
        with runner.operation(op, self._timeout(op)):
            self._devices().reset_network(op, instance)
