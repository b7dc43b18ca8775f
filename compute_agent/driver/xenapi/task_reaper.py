"""Destroying finished dom0 tasks off the caller's path: xapi keeps a task
until someone destroys it, and an operation must not wait for that."""

from __future__ import annotations

import logging
import queue
import threading

from compute_agent import exceptions
from compute_agent.driver.xenapi.session import SessionPool

LOG = logging.getLogger(__name__)

class TaskReaper:
    """Destroys finished tasks in the background: once a task's outcome is
    recorded nobody needs it, and its caller need not wait for the call.
    ``close()`` destroys what is still queued (bounded in time)."""

    def __init__(self, pool: SessionPool):
        self.pool = pool
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def reap(self, ref: str) -> None:
        with self._lock:
            if self._closed:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="xenapi-task-reaper",
                                                daemon=True)
                self._thread.start()
        self._queue.put(ref)

    def _run(self) -> None:
        while True:
            ref = self._queue.get()
            if ref is None:
                return
            destroy_task(self.pool, ref)

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)


def destroy_task(pool: SessionPool, ref: str) -> None:
    """Remove a finished task from dom0; one already gone is fine."""
    try:
        pool.call("task.destroy", ref)
    except (exceptions.HypervisorError, exceptions.HypervisorUnavailable) as e:
        LOG.debug("task.destroy failed: %s", e)


# -- the runner ------------------------------------------------------------------
