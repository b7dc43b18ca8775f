"""This host as the agent reports it: the service heartbeat and host
resources written to the database (periodic), and the status an operator
reads over RPC (``get_host_status``), which falls back on the last recorded
resources when the hypervisor cannot be reached.
"""

from __future__ import annotations

import logging
from typing import Any

from compute_agent import exceptions
from compute_agent.driver import power_state
from compute_agent.driver.base import ComputeDriver

LOG = logging.getLogger(__name__)

# The binary name of the agent's row in the services table.
SERVICE_BINARY = "compute-agent"


class HostStatus:
    def __init__(self, conf: Any, db: Any, driver: ComputeDriver, host: str):
        self.conf = conf
        self.db = db
        self.driver = driver
        self.host = host

    def report(self) -> None:
        """Heartbeat the service and report host resources (compute_nodes)."""
        try:
            self.db.service_heartbeat(self.host, SERVICE_BINARY, self.conf.compute_topic)
        except Exception:
            LOG.exception("Heartbeat failed")
        try:
            resources = self.driver.get_host_resources()
        except exceptions.ComputeAgentError as exc:
            LOG.warning("Cannot read host resources: %s", exc.message)
            return
        pool = self._pool()
        if pool is not None:
            # which agents share a pool (host maintenance picks destinations by it)
            resources = {**resources, "pool_uuid": pool.get("uuid")}
        try:
            self.db.upsert_compute_node(self.host, resources)
        except Exception:
            LOG.exception("Could not record host resources")

    def status(self) -> dict[str, Any]:
        """Hypervisor reachability, resources, the driver's capabilities, the
        instances the hypervisor holds for this agent (uuid -> power state:
        an operator compares them with the database's), the service record
        and the instances of this host counted by vm_state."""
        status: dict[str, Any] = {"hypervisor_available": True, "error": None,
                                  "capabilities": None, "hypervisor_instances": None}
        try:
            status["resources"] = self.driver.get_host_resources()
            status["capabilities"] = self.driver.capabilities()
            status["hypervisor_instances"] = self._hypervisor_instances()
        except exceptions.ComputeAgentError as exc:
            status["hypervisor_available"] = False
            status["error"] = exc.to_dict()
            nodes = [n for n in self.db.list_compute_nodes() if n["host"] == self.host]
            status["resources"] = nodes[0] if nodes else None
        status["pool"] = self._pool()
        services = [s for s in self.db.list_services(self.conf.service_down_time)
                    if s["host"] == self.host and s["binary"] == SERVICE_BINARY]
        status["service"] = services[0] if services else None
        status["instances"] = self.db.count_instances(host=self.host)
        return status

    def _pool(self) -> dict[str, Any] | None:
        """The pool the host is in and the hosts it shares it with; None
        when the driver has no pools or dom0 cannot be reached."""
        try:
            return self.driver.get_pool_status()
        except NotImplementedError:
            return None
        except exceptions.ComputeAgentError as exc:
            LOG.warning("Cannot read the pool: %s", exc.message)
            return None

    def _hypervisor_instances(self) -> dict[str, int]:
        """uuid -> power state of every instance the hypervisor has a VM
        (or disks) of for this agent; NOSTATE for disks without a VM. Read
        at once (list_instance_infos), not one call per instance."""
        found = {u: i.power_state for u, i in self.driver.list_instance_infos().items()}
        for uuid in self.driver.list_instance_uuids():
            found.setdefault(uuid, power_state.NOSTATE)
        return found
