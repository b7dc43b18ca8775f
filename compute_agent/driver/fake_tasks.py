"""The fake driver's dom0 task table: tasks an earlier run of the agent left
behind, as a test puts them there, followed by ``FakeDriver.reattach_task``
the way the XenAPI driver follows a real xapi task (see
ComputeDriver.reattach_task)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from compute_agent.driver import task_status as ts


@dataclass
class FakeTaskRecord:
    status: str = ts.PENDING
    progress: float = 0.0
    result: str | None = None
    error: list[str] = field(default_factory=list)
    # What the task does when it succeeds: (instance uuid, power state of its VM).
    effect: tuple[str, int] | None = None


class FakeTaskTable:
    """Thread-safe table of fake dom0 tasks by ref."""

    def __init__(self, apply_effect: Callable[[tuple[str, int]], None]):
        self._apply_effect = apply_effect
        self._cond = threading.Condition()
        self._records: dict[str, FakeTaskRecord] = {}
        self.cancelled: list[str] = []  # refs cancelled, in order

    def add(self, ref: str, status: str = ts.PENDING, **fields) -> FakeTaskRecord:
        rec = FakeTaskRecord(status=status, **fields)
        with self._cond:
            self._records[ref] = rec
        return rec

    def complete(self, ref: str, status: str = ts.SUCCESS,
                 error: list[str] | None = None) -> None:
        with self._cond:
            rec = self._records[ref]
            rec.status = status
            rec.error = list(error or [])
            if status == ts.SUCCESS:
                rec.progress = 1.0
                if rec.effect is not None:
                    self._apply_effect(rec.effect)
            self._cond.notify_all()

    def forget_all(self) -> None:
        """What an xapi restart does to tasks."""
        with self._cond:
            self._records.clear()
            self._cond.notify_all()

    def refs(self) -> list[str]:
        with self._cond:
            return sorted(self._records)

    def follow(self, ref: str, timeout: float, cancel: threading.Event) -> ts.TaskState:
        """Wait up to ``timeout`` for the task to end; cancel it at the
        timeout or when ``cancel`` is set (in this fake a cancel always wins
        over a pending task). The ended task is destroyed."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            rec = self._records.get(ref)
            if rec is None:
                return ts.TaskState(ts.LOST, error=["TASK_LOST", ref])
            while rec.status == ts.PENDING and not cancel.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(0.05, remaining))
            timed_out = False
            if rec.status == ts.PENDING:
                timed_out = not cancel.is_set()
                rec.status = ts.CANCELLED
                self.cancelled.append(ref)
            del self._records[ref]
            return ts.TaskState(rec.status, rec.progress, rec.result, list(rec.error) or None,
                                timed_out)
