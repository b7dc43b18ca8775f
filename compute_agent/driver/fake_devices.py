"""The fake driver's volumes, ports and guest agent: in memory, with the
contracts of driver/base.py (duplicate MACs, unknown networks, a guest
without an agent), for unit tests of the manager's device requests."""

from __future__ import annotations

import threading
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.base import Operation

KNOWN_NETWORKS = ("br-int", "net0")


class FakeDevices:
    """Mixed into FakeDriver; needs ``self.vms`` (uuid -> FakeVM)."""

    vms: dict[str, Any]

    def _devices_state(self) -> dict[str, Any]:
        if not hasattr(self, "_dev"):
            self._dev = {"lock": threading.Lock(), "volumes": {}, "ports": {},
                         "guest": {}, "agent": True}
        return self._dev

    def _require_vm(self, instance: dict[str, Any]) -> Any:
        vm = self.vms.get(instance["uuid"])
        if vm is None:
            raise exceptions.InstanceNotFound(instance["uuid"])
        return vm

    def attach_volume(self, op: Operation, instance: dict[str, Any], volume_id: str,
                      connection_info: dict[str, Any], device: Any = None) -> dict[str, Any]:
        self._require_vm(instance)
        st = self._devices_state()
        with st["lock"]:
            mine = {k: v for k, v in st["volumes"].items() if k[0] == instance["uuid"]}
            result = {"device": device or f"xvd{chr(ord('b') + len(mine))}",
                      "sr_uuid": None, "vdi_uuid": None, "vbd_uuid": None}
            st["volumes"][(instance["uuid"], volume_id)] = result
            return dict(result)

    def detach_volume(self, op: Operation, instance: dict[str, Any], volume_id: str,
                      location: dict[str, Any] | None = None) -> None:
        st = self._devices_state()
        with st["lock"]:
            st["volumes"].pop((instance["uuid"], volume_id), None)

    def attach_interface(self, op: Operation, instance: dict[str, Any],
                         port: dict[str, Any]) -> dict[str, Any]:
        self._require_vm(instance)
        network = port.get("network") or "br-int"
        if network not in KNOWN_NETWORKS:
            raise exceptions.ComputeAgentError(network, code="NETWORK_NOT_FOUND")
        st = self._devices_state()
        with st["lock"]:
            mac = port.get("mac_address", "")
            if mac and any(p["mac_address"] == mac for p in st["ports"].values()):
                raise exceptions.ComputeAgentError(mac, port["id"], code="MAC_ADDRESS_IN_USE")
            result = {"mac_address": mac, "network": network, "device": str(len(st["ports"])),
                      "vif_uuid": None}
            st["ports"][(instance["uuid"], port["id"])] = result
            return dict(result)

    def detach_interface(self, op: Operation, instance: dict[str, Any], port_id: str) -> None:
        st = self._devices_state()
        with st["lock"]:
            st["ports"].pop((instance["uuid"], port_id), None)

    def list_attachments(self, instance: dict[str, Any]) -> dict[str, dict[str, Any]]:
        st = self._devices_state()
        vm = self.vms.get(instance["uuid"])
        plugged = vm is not None and vm.power_state == 1  # running: hot-plugged
        with st["lock"]:
            return {
                kind: {k[1]: {**v, "currently_attached": plugged}
                       for k, v in st[kind].items() if k[0] == instance["uuid"]}
                for kind in ("volumes", "ports")
            }

    def attachment_ids(self) -> dict[str, set[tuple[str, str]]]:
        st = self._devices_state()
        out: dict[str, set[tuple[str, str]]] = {}
        with st["lock"]:
            for kind, table in (("volume", st["volumes"]), ("port", st["ports"])):
                for uuid, item in table:
                    out.setdefault(uuid, set()).add((kind, item))
        return out

    def _guest(self, op: Operation, instance: dict[str, Any], command: str) -> dict[str, Any]:
        self._require_vm(instance)
        st = self._devices_state()
        if not st["agent"]:
            raise exceptions.ComputeAgentError(instance["uuid"], command, 30.0,
                                               code="GUEST_AGENT_TIMEOUT")
        return st["guest"].setdefault(instance["uuid"], {"files": {}})

    def set_admin_password(self, op: Operation, instance: dict[str, Any], password: str) -> None:
        self._guest(op, instance, "password")["password"] = password

    def inject_file(self, op: Operation, instance: dict[str, Any], path: str,
                    contents: bytes) -> None:
        self._guest(op, instance, "inject_file")["files"][path] = contents

    def reset_network(self, op: Operation, instance: dict[str, Any]) -> None:
        self._guest(op, instance, "resetnetwork")["network_reset"] = True
