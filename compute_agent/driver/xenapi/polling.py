"""PollingWaiter: follow dom0 tasks by reading each task's record with
backoff. The fallback for a dom0 whose ``event.from`` misbehaves
(``[tasks] watcher_mode = polling``); the TaskWatcher (watcher.py) is the
default. Both hand the TaskRunner (tasks.py) the same TrackedTask handles.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.xenapi.session import SessionPool
from compute_agent.driver.xenapi.task_result import PENDING_STATES, TaskOutcome
from compute_agent.driver.xenapi.task_waiter import ProgressCallback

LOG = logging.getLogger(__name__)



class PolledTask:
    def __init__(self, waiter: PollingWaiter, ref: str):
        self.waiter = waiter
        self.ref = ref
        self._record: dict[str, Any] | None = None
        self._progress = -1.0
        self.last_progress = 0.0

    def _read(self) -> dict[str, Any] | None:
        """The task's record, or None when it is gone."""
        try:
            return self.waiter.pool.call("task.get_record", self.ref)
        except exceptions.HypervisorError as e:
            if e.code == "HANDLE_INVALID":
                return None
            raise

    def known_uuid(self, timeout: float) -> str | None:
        # The first poll doubles as the uuid lookup: one call, not two.
        try:
            self._record = self._read()
        except exceptions.HypervisorUnavailable:
            return None
        return self._record.get("uuid") if self._record else None

    def wait(self, timeout: float, on_progress: ProgressCallback) -> TaskOutcome | None:
        deadline = time.monotonic() + timeout
        interval = self.waiter.min_interval
        record = self._record
        self._record = None
        while True:
            if record is None:
                try:
                    record = self._read()
                    if record is None:
                        return TaskOutcome.lost(self.ref)
                except exceptions.HypervisorUnavailable as e:
                    # A blip in the connection is not the task's failure:
                    # keep trying until the deadline.
                    if time.monotonic() >= deadline:
                        raise
                    LOG.warning("Polling task: %s; retrying", e)
            if record is not None:
                if record.get("status") not in PENDING_STATES:
                    return TaskOutcome.from_record(self.ref, record)
                progress = float(record.get("progress") or 0.0)
                if progress != self._progress:
                    self._progress = self.last_progress = progress
                    on_progress(progress)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            time.sleep(min(interval, remaining))
            interval = min(interval * self.waiter.backoff, self.waiter.max_interval)
            record = None

    def forget(self) -> None:
        pass


class PollingWaiter:
    """Reads each task's record until it ends: from ``min_interval`` between
    reads, growing by ``backoff`` up to ``max_interval``. Simple, and costs
    one call per poll per task; the TaskWatcher is the better default."""

    def __init__(
        self,
        pool: SessionPool,
        min_interval: float = 0.05,
        max_interval: float = 0.5,
        backoff: float = 1.5,
    ):
        self.pool = pool
        self.min_interval = min_interval
        self.max_interval = max(max_interval, min_interval)
        self.backoff = backoff

    def track(self, ref: str) -> PolledTask:
        return PolledTask(self, ref)

    def close(self) -> None:
        pass


# -- removing finished tasks ---------------------------------------------------------
