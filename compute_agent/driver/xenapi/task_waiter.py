"""What the TaskRunner (tasks.py) needs of whoever follows dom0 tasks for
it: the TaskWatcher's event stream (watcher.py) or the PollingWaiter
(polling.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from compute_agent.driver.xenapi.task_result import TaskOutcome

ProgressCallback = Callable[[float], None]


class TrackedTask(Protocol):
    """A task being followed by a waiter."""

    ref: str
    last_progress: float  # the latest progress seen, 0.0 before any

    def known_uuid(self, timeout: float) -> str | None:
        """The task's uuid if the waiter learns it within ``timeout``."""

    def wait(self, timeout: float, on_progress: ProgressCallback) -> TaskOutcome | None:
        """The task's outcome, or None if it is still running after
        ``timeout`` seconds. ``on_progress(p)`` is called as progress
        changes."""

    def forget(self) -> None:
        """Stop following the task."""


class TaskWaiter(Protocol):
    def track(self, ref: str) -> TrackedTask: ...

    def close(self) -> None: ...
