"""The operations this process runs: one worker thread each, the instances
they own, and waiting for them to end (graceful drain on shutdown).

An instance is *busy* from the moment its request moves it into a
transitional task_state until the outcome is recorded; recovery.py leaves
busy instances alone, so it never settles one an operation still owns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from compute_agent.context import RequestContext

LOG = logging.getLogger(__name__)


class Workers:
    """Thread-safe; one per manager."""

    def __init__(self) -> None:
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._all_done = threading.Condition(self._lock)
        self._busy: set[str] = set()  # task_state set by this process, not settled yet
        self._busy_lock = threading.Lock()

    # -- busy instances ---------------------------------------------------------------

    def claim(self, uuid: str) -> None:
        """The instance's task_state is about to be set by this process."""
        with self._busy_lock:
            self._busy.add(uuid)

    def release(self, uuid: str) -> None:
        """The instance's operation is settled (or was never started)."""
        with self._busy_lock:
            self._busy.discard(uuid)

    def busy(self) -> set[str]:
        with self._busy_lock:
            return set(self._busy)

    # -- threads ----------------------------------------------------------------------

    def spawn(self, ctxt: RequestContext, uuid: str, request: str,
              target: Callable[..., None], *args: Any) -> None:
        """Run ``target(instance context, uuid, *args)`` in a thread named
        '<request>-<uuid>'. A crash that escapes ``target`` is logged and
        releases the instance, so it is not kept busy forever."""
        worker_ctxt = ctxt.for_instance(uuid)

        def run() -> None:
            worker_ctxt.update_store()
            try:
                target(worker_ctxt, uuid, *args)
            except Exception:
                LOG.exception("Operation %s of %s crashed", request, uuid)
                self.release(uuid)
            finally:
                with self._all_done:
                    self._threads.discard(threading.current_thread())
                    self._all_done.notify_all()

        thread = threading.Thread(target=run, name=f"{request}-{uuid}", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def names(self) -> list[str]:
        """Names ('<request>-<uuid>') of the operations running now."""
        with self._lock:
            return sorted(t.name for t in self._threads)

    def drain(self, timeout: float | None) -> list[str]:
        """Wait up to ``timeout`` seconds (None: forever) for every operation
        to end; returns the names of those still running at the deadline."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._all_done:
            while self._threads:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._all_done.wait(remaining if remaining is not None else 1.0)
            return sorted(t.name for t in self._threads)
