"""Connecting to a dom0 that did not answer when the agent started.

The agent serves without dom0 (issue 15): the driver hands its connect
step to a FirstConnect, which tries it in a thread of its own with a
growing pause (CONNECT_RETRY_FIRST doubling to CONNECT_RETRY_MAX seconds)
until it succeeds or the driver closes, remembers why the last try failed
(what every dom0 call answers meanwhile), and calls ``on_up`` once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from compute_agent import exceptions

LOG = logging.getLogger(__name__)

CONNECT_RETRY_FIRST = 1.0
CONNECT_RETRY_MAX = 15.0


class FirstConnect:
    def __init__(self, connect: Callable[[], None], on_up: Callable[[], None],
                 closed: threading.Event):
        self._connect = connect
        self._on_up = on_up
        self._closed = closed
        self.last_error: exceptions.HypervisorUnavailable | None = None

    def start(self, first_error: exceptions.HypervisorUnavailable) -> None:
        self.last_error = first_error
        LOG.warning("dom0 is unreachable (%s); serving without it and retrying",
                    first_error.message)
        threading.Thread(target=self._run, name="xenapi-connect", daemon=True).start()

    def _run(self) -> None:
        delay = CONNECT_RETRY_FIRST
        while not self._closed.wait(delay):
            next_delay = min(delay * 2, CONNECT_RETRY_MAX)
            try:
                self._connect()
            except exceptions.HypervisorUnavailable as exc:
                self.last_error = exc
                LOG.info("dom0 still unreachable (%s); next try in %.0f s", exc.message,
                         next_delay)
                delay = next_delay
                continue
            except Exception:
                LOG.exception("Connecting to dom0 failed; retrying")
                delay = next_delay
                continue
            self.last_error = None
            self._on_up()
            return
