"""Joining and leaving a pool, and following the host's new role.

``join``: ``pool.join`` on the agent's (standalone) host, with the
coordinator's address and credentials; xapi's refusals come back as they
are (JOINING_HOST_CANNOT_HAVE_RUNNING_OR_SUSPENDED_VMS, ...), the
coordinator's password scrubbed from them. The host's xapi then restarts as
a member and answers HOST_IS_SLAVE: the agent's sessions follow it to the
coordinator (they log in there with the agent's own credentials, which the
pool must accept: a pool-wide RBAC account), and everything learned about
the host (its ref, its pool) is read again.

``leave``: ``pool.eject`` of the agent's host at the coordinator; the host
comes back as a fresh standalone pool, and the agent's sessions go back to
its configured address.

Nothing is written down: an agent that dies half way finds, when it
starts, whatever role its host has (its configured address answers, or
says HOST_IS_SLAVE), which is all it needs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from compute_agent import exceptions
from compute_agent.driver.xenapi.host import HostInfo
from compute_agent.driver.xenapi.pool import PoolView
from compute_agent.driver.xenapi.session import SessionPool
from compute_agent.driver.xenapi.transport import host_of

LOG = logging.getLogger(__name__)

# How long the host may take to come back in its new role.
SETTLE_S = 30.0
POLL_S = 0.2


class PoolMembership:
    def __init__(self, pool: SessionPool, host_info: HostInfo, view: PoolView,
                 on_changed: Callable[[], None]):
        self.pool = pool
        self.host_info = host_info
        self.view = view
        self.on_changed = on_changed

    def join(self, address: str, username: str, password: str) -> None:
        try:
            self.pool.call("pool.join", address, username, password)
        except exceptions.HypervisorError as e:
            raise _scrubbed(e, password) from None
        LOG.info("Host joined the pool of %s; following it", address)
        self._follow(lambda: host_of(self.pool.coordinator.url) != host_of(
            self.pool.coordinator.configured_url))

    def leave(self) -> None:
        host = self.host_info.host_ref()
        self.pool.call("pool.eject", host)
        LOG.info("Host ejected from its pool; back to its own address")
        # Until the host has reset it may still say HOST_IS_SLAVE: keep
        # going back to its own address.
        self._follow(self._standalone, go_to=self.pool.coordinator.configured_url)

    def _standalone(self) -> bool:
        hosts = self.pool.call("host.get_all_records")
        mine = host_of(self.pool.coordinator.configured_url)
        return len(hosts) == 1 and next(iter(hosts.values())).get("address") == mine

    def _follow(self, arrived: Callable[[], bool], go_to: str | None = None) -> None:
        """Drop what was learned, then wait until the host shows its new
        role (its xapi restarts meanwhile)."""
        deadline = time.monotonic() + SETTLE_S
        while True:
            if go_to is not None:
                self.pool.coordinator.moved_to(go_to)
            self.pool.reset_idle()
            self.host_info.forget()
            self.view.forget()
            try:
                self.pool.call("pool.get_all")
                if arrived():
                    break
            except (exceptions.HypervisorError, exceptions.HypervisorUnavailable) as e:
                LOG.debug("Waiting for the host's new role: %s", e.code)
            if time.monotonic() > deadline:
                raise exceptions.HypervisorUnavailable(
                    self.pool.coordinator.configured_url, "the host did not come back in "
                    "its new pool role")
            time.sleep(POLL_S)
        self.host_info.forget()
        self.view.forget()
        self.on_changed()


def _scrubbed(e: exceptions.HypervisorError, secret: str) -> exceptions.HypervisorError:
    if not secret or not any(secret in str(p) for p in e.params):
        return e
    params = [str(p).replace(secret, "***") for p in e.params]
    return exceptions.HypervisorError(*params, code=e.code)
