"""Network ports as VIFs: one VIF per port, on the network the port names
or on the Open vSwitch integration bridge, carrying the port's MAC and its
id in ``other_config`` ``nicira-iface-id`` (where Neutron's Open vSwitch
agent looks for it, through the interface's external-ids that dom0's vif
scripts copy from there). Hot-plugged into a running VM; a halted VM gets
it at its next start.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.base import Operation
from compute_agent.driver.xenapi import ownership
from compute_agent.driver.xenapi.network import Networking
from compute_agent.driver.xenapi.session import SessionPool
from compute_agent.driver.xenapi.tasks import TaskRunner

LOG = logging.getLogger(__name__)

PORT_KEY = "nicira-iface-id"
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
MAX_PORT_ID = 255


class MacInUse(exceptions.ComputeAgentError):
    """params: MAC, the port id that asked for it."""

    code = "MAC_ADDRESS_IN_USE"
    msg_fmt = "MAC address {0} (port {1}) is already used by another VIF"


class NetworkNotFound(exceptions.ComputeAgentError):
    """params: the network name, uuid or bridge asked for."""

    code = "NETWORK_NOT_FOUND"
    msg_fmt = "Network {0} does not exist in dom0"


@dataclass(frozen=True)
class Port:
    id: str
    mac: str
    network: str  # "" = the integration bridge


def parse_port(port: Any, field: str = "port") -> Port:
    """A Port from ``{id, mac_address, network}``; INVALID_INPUT else."""
    if not isinstance(port, dict):
        raise exceptions.InvalidInput(field, "must be an object")
    unknown = sorted(set(port) - {"id", "mac_address", "network"})
    if unknown:
        raise exceptions.InvalidInput(f"{field}.{unknown[0]}", "is not a known field")
    port_id = port.get("id")
    if not isinstance(port_id, str) or not port_id.strip() or len(port_id) > MAX_PORT_ID:
        raise exceptions.InvalidInput(f"{field}.id", "must be a non-empty string")
    mac = port.get("mac_address", "")
    if not isinstance(mac, str) or (mac and not MAC_RE.match(mac.lower())):
        raise exceptions.InvalidInput(f"{field}.mac_address",
                                      "must be a MAC like 02:00:00:00:00:01")
    network = port.get("network") or ""
    if not isinstance(network, str):
        raise exceptions.InvalidInput(f"{field}.network", "must be a string")
    return Port(port_id.strip(), mac.lower(), network.strip())


def is_port(entry: Any) -> bool:
    """Whether a ``networks`` entry of a build is a port dict."""
    return isinstance(entry, dict) and "id" in entry and (
        "mac_address" in entry or set(entry) <= {"id", "network"})


class Ports:
    def __init__(self, pool: SessionPool, runner: TaskRunner, networking: Networking,
                 agent_host: str, integration_bridge: str):
        self.pool = pool
        self.runner = runner
        self.networking = networking
        self.agent_host = agent_host
        self.integration_bridge = integration_bridge

    def network_of(self, port: Port) -> str:
        name = port.network or self.integration_bridge
        ref = self.networking.find_network(name)
        if ref is None:
            raise NetworkNotFound(name)
        return ref

    def check_mac_free(self, port: Port) -> None:
        if not port.mac:
            return
        for rec in self.pool.call("VIF.get_all_records").values():
            if str(rec.get("MAC", "")).lower() == port.mac:
                raise MacInUse(port.mac, port.id)

    def vif_record(self, instance_uuid: str, vm: str, network: str, device: str,
                   port: Port) -> dict[str, Any]:
        mtu = int(self.pool.call("network.get_MTU", network) or 1500)
        return {
            "device": device, "network": network, "VM": vm, "MAC": port.mac,
            "MTU": str(mtu),
            "other_config": ownership.marks(instance_uuid, self.agent_host,
                                            **{PORT_KEY: port.id}),
            "qos_algorithm_type": "", "qos_algorithm_params": {},
            "locking_mode": "network_default", "ipv4_allowed": [], "ipv6_allowed": [],
        }

    def attach(self, op: Operation, instance_uuid: str, vm: str, vm_rec: dict[str, Any],
               port: Port) -> dict[str, Any]:
        """Create (and hot-plug) the port's VIF; on failure nothing stays.
        Returns mac_address, network (uuid), device, vif_uuid."""
        if self.find_vifs(instance_uuid, port.id):
            raise exceptions.ComputeAgentError("port", port.id, instance_uuid,
                                               code="ATTACHMENT_EXISTS")
        network = self.network_of(port)
        self.check_mac_free(port)
        allowed = self.pool.call("VM.get_allowed_VIF_devices", vm)
        if not allowed:
            raise exceptions.HypervisorError(vm, code="NO_FREE_DEVICE")
        device = sorted(allowed, key=int)[0]
        vif = self.pool.call("VIF.create",
                             self.vif_record(instance_uuid, vm, network, device, port))
        try:
            if vm_rec.get("power_state") == "Running":
                self.runner.run(op, "VIF.plug", vif)
        except BaseException:
            with self.runner.cleanup(op, 60.0):
                self._remove(op, vif)
            raise
        return {"mac_address": self.pool.call("VIF.get_MAC", vif),
                "network": self.pool.call("network.get_uuid", network),
                "device": device, "vif_uuid": self.pool.call("VIF.get_uuid", vif)}

    def find_vifs(self, instance_uuid: str, port_id: str | None = None) -> dict[str, dict]:
        out = {}
        for ref, rec in self.pool.call("VIF.get_all_records").items():
            other = rec.get("other_config") or {}
            if PORT_KEY not in other or ownership.instance_of(rec) != instance_uuid:
                continue
            if port_id is None or other[PORT_KEY] == port_id:
                out[ref] = rec
        return out

    def detach(self, op: Operation, instance_uuid: str, port_id: str) -> None:
        """Unplug and destroy the port's VIF; none is success."""
        for vif, rec in self.find_vifs(instance_uuid, port_id).items():
            self._remove(op, vif, rec)

    def _remove(self, op: Operation, vif: str, rec: dict[str, Any] | None = None) -> None:
        try:
            rec = rec or self.pool.call("VIF.get_record", vif)
            if rec.get("currently_attached"):
                try:
                    self.runner.run(op, "VIF.unplug", vif)
                except exceptions.HypervisorError as e:
                    if e.code not in ("DEVICE_ALREADY_DETACHED", "VM_BAD_POWER_STATE"):
                        raise
            self.pool.call("VIF.destroy", vif)
        except exceptions.HypervisorError as e:
            if e.code != "HANDLE_INVALID":
                raise
