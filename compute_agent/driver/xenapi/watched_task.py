"""The TaskWatcher's handle on one task (WatchedTask), its statistics, and
the timings the watcher runs by. A WatchedTask's future is resolved by the
watcher's event stream (watcher.py); while the stream is unhealthy, or has
not shown the task yet, the waiter reads the task directly on the schedule
set here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from compute_agent import exceptions
from compute_agent.driver.xenapi.task_result import FINAL_STATES, TaskOutcome

if TYPE_CHECKING:
    from compute_agent.driver.xenapi.watcher import TaskWatcher

CLASSES = ("task", "vm")
# A registered task the stream has not shown after this long is read directly.
UNSEEN_GRACE = 1.0
# While the stream is healthy, a pending task is still read directly this
# often: a backstop against a dom0 whose event stream silently stalls.
RECHECK_INTERVAL = 60.0
# While the stream is down, waiters read their task this often.
DEGRADED_POLL = 2.0
# Reconnect back-off.
BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0
# A cache/count mismatch re-syncs at most this often (a dom0 that counts
# differently must not make us re-sync in a loop).
RESYNC_MIN_INTERVAL = 5.0
# How many deleted task refs are remembered (for tasks registered late).
DELETED_MEMORY = 4096
# Socket timeout of event.from beyond its own timeout.
CALL_MARGIN = 10.0
# Errors after which the token (or the cache) cannot be trusted.
RESYNC_CODES = frozenset(
    {"EVENTS_LOST", "EVENT_FROM_TOKEN_PARSE_FAILURE", "SESSION_INVALID"}
)


@dataclass
class WatcherStats:
    event_from_calls: int = 0
    events: int = 0
    resyncs: int = 0
    connections: int = 0  # long-poll connections (re)established
    failures: int = 0
    direct_reads: int = 0


class WatchedTask:
    """One registered task: a future for its outcome plus its latest record
    (for progress). Methods are called by the waiting thread."""

    def __init__(self, watcher: TaskWatcher, ref: str):
        self.watcher = watcher
        self.ref = ref
        self.future: Future[TaskOutcome] = Future()
        self.record: dict[str, Any] | None = None
        self.registered = time.monotonic()
        self.last_progress = 0.0
        self._changed = threading.Event()

    # -- called by the watcher, under its lock ---------------------------------
    def _update(self, record: dict[str, Any]) -> None:
        self.record = record
        if record.get("status") in FINAL_STATES:
            try:
                outcome = TaskOutcome.from_record(self.ref, record)
            except exceptions.ComputeAgentError as e:  # an undecodable result
                self._finish(exc=e)
            else:
                self._finish(outcome)
        self._changed.set()

    def _finish(self, outcome: TaskOutcome | None = None,
                exc: BaseException | None = None) -> None:
        if not self.future.done():
            if exc is not None:
                self.future.set_exception(exc)
            else:
                self.future.set_result(outcome)
        self._changed.set()

    # -- TrackedTask -------------------------------------------------------------
    def known_uuid(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while True:
            self._changed.clear()
            if self.record is not None:
                return self.record.get("uuid")
            if self.future.done() and self.future.exception() is None:
                return self.future.result().uuid
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._changed.wait(remaining)

    def wait(self, timeout: float, on_progress: Callable[[float], None]) -> TaskOutcome | None:
        deadline = time.monotonic() + timeout
        last_read, reads = self.registered, 0
        reported = -1.0
        while True:
            self._changed.clear()
            if self.future.done():
                return self.future.result()
            record = self.record
            if record is not None:
                progress = float(record.get("progress") or 0.0)
                if progress != reported:
                    reported = self.last_progress = progress
                    on_progress(progress)
            # Read the task directly only when the stream has not shown it
            # (or is down), and rarely as a backstop when it has.
            if record is None or not self.watcher.healthy:
                due = last_read + (UNSEEN_GRACE if reads == 0 else DEGRADED_POLL)
            else:
                due = last_read + RECHECK_INTERVAL
            now = time.monotonic()
            if now >= due:
                self.watcher.read_directly(self)
                last_read, reads = time.monotonic(), reads + 1
                continue
            remaining = deadline - now
            if remaining <= 0:
                return None
            self._changed.wait(min(remaining, due - now))

    def forget(self) -> None:
        self.watcher.forget(self)
