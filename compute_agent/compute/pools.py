"""Pools from aggregates: this agent's host joins a pool or leaves it.

``join(coordinator_address, username, password)``: the host must hold no
instance of this agent (a joining host's VMs do not survive in the pool:
xapi keeps only its disks), then the driver joins (xapi's pool.join, with
its own refusals) and follows the host's new role; the host's report
(compute_nodes) names the new pool at once, so maintenance finds its new
peers. The coordinator's password is a secret: it is passed to the driver
and nowhere else (no log line, fault or notification carries it).

``leave()``: the host must hold no instance either (ejecting it loses its
local disks); the driver ejects it and follows it back to standalone.

Both are synchronous calls; nothing is recorded in the database, so an
agent that dies half way has nothing to settle: when it starts, its driver
finds whatever role its host has.
"""

from __future__ import annotations

import logging
from typing import Any

from compute_agent import exceptions
from compute_agent.compute.host_status import HostStatus
from compute_agent.compute.runner import NotSupported
from compute_agent.context import RequestContext

LOG = logging.getLogger(__name__)


class HostHasInstances(exceptions.ComputeAgentError):
    """params: host, how many instances it holds."""

    code = "HOST_HAS_INSTANCES"
    msg_fmt = "Host {0} holds {1} instance(s): move or delete them first"


class PoolMembership:
    def __init__(self, db: Any, driver: Any, host: str, host_status: HostStatus):
        self.db = db
        self.driver = driver
        self.host = host
        self.host_status = host_status

    def join(self, ctxt: RequestContext, coordinator_address: Any, username: Any,
             password: Any) -> dict[str, Any]:
        for field, value in (("coordinator_address", coordinator_address),
                             ("username", username), ("password", password)):
            if not isinstance(value, str) or not value.strip():
                raise exceptions.InvalidInput(field, "must be a non-empty string")
        self._assert_empty()
        try:
            self.driver.join_pool(coordinator_address, username, password)
        except NotImplementedError:
            raise NotSupported("join_pool", type(self.driver).__name__) from None
        LOG.info("Host %s joined the pool of %s", self.host, coordinator_address)
        return self._after()

    def leave(self, ctxt: RequestContext) -> dict[str, Any]:
        self._assert_empty()
        try:
            self.driver.leave_pool()
        except NotImplementedError:
            raise NotSupported("leave_pool", type(self.driver).__name__) from None
        LOG.info("Host %s left its pool", self.host)
        return self._after()

    def _assert_empty(self) -> None:
        held = self.db.list_instances(host=self.host)
        if held:
            raise HostHasInstances(self.host, len(held))

    def _after(self) -> dict[str, Any]:
        self.host_status.report()
        try:
            pool = self.driver.get_pool_status()
        except (NotImplementedError, exceptions.ComputeAgentError):
            pool = None
        return {"host": self.host, "pool": pool}
