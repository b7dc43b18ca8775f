"""What the sessions of one dom0 pool share: where the pool coordinator is
(one HOST_IS_SLAVE redirect serves every session), who wants to hear that a
session had to log in again, and how many calls went out (CallStats)."""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

from compute_agent.driver.xenapi import errors

LOG = logging.getLogger(__name__)

class CallStats:
    """How many XenAPI calls went out, by method (for benchmarks and logs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_method: collections.Counter[str] = collections.Counter()
        self.logins = 0

    def count(self, method: str) -> None:
        with self._lock:
            self.by_method[method] += 1

    def count_login(self) -> None:
        with self._lock:
            self.logins += 1

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.by_method.values())

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.by_method)


ReconnectHook = Callable[[str], None]


class Coordinator:
    """Where the pool coordinator is, as last learned; shared by all the
    sessions of one pool so that one redirect serves them all. Also where
    sessions report that they had to log in again (``reconnected``)."""

    def __init__(self, configured_url: str):
        self.configured_url = configured_url
        self._url = configured_url
        self._lock = threading.Lock()
        self._confirmed: str | None = None
        self.hooks: list[ReconnectHook] = []

    def reconnected(self, why: str) -> None:
        """A session logged in again (SESSION_INVALID) or the coordinator
        moved: state learned before may be stale."""
        for hook in list(self.hooks):
            try:
                hook(why)
            except Exception:  # a hook must not break the call that noticed
                LOG.exception("reconnect hook failed")

    @property
    def url(self) -> str:
        with self._lock:
            return self._url

    def moved_to(self, url: str) -> None:
        """HOST_IS_SLAVE named another coordinator: go there next."""
        with self._lock:
            self._url = url

    def logged_in_at(self, url: str) -> None:
        """A login at ``url`` worked: that is the coordinator."""
        with self._lock:
            previous, self._confirmed = self._confirmed, url
            self._url = url
        if previous is not None and previous != url:
            LOG.info("XenAPI pool coordinator is now %s", errors.redact_url(url))
            self.reconnected("coordinator")
