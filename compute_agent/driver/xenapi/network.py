"""Instance network interfaces: which network each VIF goes on.

The instance's ``networks`` list names networks (a string, or an object with
``name``/``name_label``/``uuid``/``network``, optionally ``mac``); each one
that exists in dom0 gets a VIF, devices 0, 1, ... When none is named, or
none of the named ones exists, device 0 goes on the management network (the
network of the host's management PIF).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.xenapi.session import SessionPool

LOG = logging.getLogger(__name__)
NULL_REF = "OpaqueRef:NULL"


@dataclass(frozen=True)
class NetworkRequest:
    name: str  # name_label or uuid of the dom0 network
    mac: str = ""


def parse_networks(networks: list[Any] | None) -> list[NetworkRequest]:
    """The instance's network list as requests; entries naming nothing are
    skipped."""
    out = []
    for item in networks or []:
        if isinstance(item, str):
            name, mac = item, ""
        elif isinstance(item, dict):
            name = next(
                (str(item[k]) for k in ("name", "name_label", "network", "uuid", "id")
                 if item.get(k)),
                "",
            )
            mac = str(item.get("mac") or item.get("MAC") or "")
        else:
            continue
        if name.strip():
            out.append(NetworkRequest(name.strip(), mac))
    return out


def vif_record(vm_ref: str, network_ref: str, device: int, mac: str, mtu: int) -> dict[str, Any]:
    return {
        "device": str(device),
        "network": network_ref,
        "VM": vm_ref,
        "MAC": mac,  # "" lets xapi pick one
        "MTU": str(mtu),
        "other_config": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
        "locking_mode": "network_default",
        "ipv4_allowed": [],
        "ipv6_allowed": [],
    }


class Networking:
    def __init__(self, pool: SessionPool):
        self.pool = pool

    def management_network(self, host_ref: str | None = None) -> str:
        """The network of the management PIF of ``host_ref`` (default: the
        pool coordinator)."""
        if not host_ref:
            pool_ref = self.pool.call("pool.get_all")[0]
            host_ref = self.pool.call("pool.get_master", pool_ref)
        where = f'field "host" = "{host_ref}" and field "management" = "true"'
        pifs = self.pool.call("PIF.get_all_records_where", where)
        for rec in pifs.values():
            if rec.get("network") and rec["network"] != NULL_REF:
                return rec["network"]
        raise exceptions.HypervisorError(host_ref, code="NO_MANAGEMENT_NETWORK")

    def find_network(self, name: str) -> str | None:
        """A network by uuid or name_label, or None."""
        nets = self.pool.call("network.get_all_records")
        for ref, rec in sorted(nets.items()):
            if rec.get("uuid") == name:
                return ref
        for ref, rec in sorted(nets.items()):
            if rec.get("name_label") == name or rec.get("bridge") == name:
                return ref
        return None

    def plan(self, networks: list[Any] | None) -> list[tuple[str, str]]:
        """(network ref, mac) per VIF device, in device order."""
        planned = []
        for req in parse_networks(networks):
            ref = self.find_network(req.name)
            if ref is None:
                LOG.warning("Network %r does not exist in dom0; not attached", req.name)
                continue
            planned.append((ref, req.mac))
        if not planned:
            planned.append((self.management_network(), ""))
        return planned

    def create_vifs(self, vm_ref: str, networks: list[Any] | None) -> list[str]:
        vifs = []
        for device, (net, mac) in enumerate(self.plan(networks)):
            mtu = int(self.pool.call("network.get_MTU", net) or 1500)
            vifs.append(self.pool.call("VIF.create", vif_record(vm_ref, net, device, mac, mtu)))
        return vifs
