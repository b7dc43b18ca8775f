"""HTTP transfers (import, export) as tracked tasks.

xapi's HTTP handlers take a ``task_id``: the caller makes the task
(``task.create``), reports it to the TaskListener before any data moves,
runs the transfer, and follows the task to its end like an ``Async`` one;
progress comes from xapi as it takes the data. The transfer runs in a
thread of its own while this one follows the task, so a cancel or timeout
reaches it (task.cancel makes xapi stop the handler).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.base import Operation
from compute_agent.driver.xenapi.tasks import TaskRunner
from compute_agent.driver.xenapi.transport import host_of

LOG = logging.getLogger(__name__)

# After the transfer ended, how long xapi may take to end its task.
END_GRACE = 15.0
STEP = 0.5


class _Transfer(threading.Thread):
    def __init__(self, work: Callable[[str], Any], task_ref: str):
        super().__init__(name="xenapi-transfer", daemon=True)
        self.work = work
        self.task_ref = task_ref
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.work(self.task_ref)
        except BaseException as e:  # handed to the waiting thread
            self.error = e


def run_transfer(runner: TaskRunner, op: Operation, label: str,
                 work: Callable[[str], Any]) -> tuple[Any, Any]:
    """Make a task, run ``work(task_ref)`` (the HTTP request naming it) and
    follow the task. Returns (task result, work's result). An error the
    transfer raised that is not the hypervisor's (the image source failed)
    wins over the task's failure it caused."""
    state = runner._state_for(op)
    if state.cancelled:
        raise exceptions.OperationCancelled(op.name, op.instance_uuid)
    limit = state.remaining()
    if limit <= 0:
        raise exceptions.OperationTimedOut(op.name, op.instance_uuid, state.timeout)
    ref = runner.pool.call("task.create", label, f"{op.name} of {op.instance_uuid}")
    tracked = runner.waiter.track(ref)
    try:
        # one quick read: the watcher may not have seen the new task yet
        uuid = tracked.known_uuid(0.0) or runner._lookup_uuid(ref)
        runner._notify("task_started", op, ref, uuid, host_of(runner.pool.url))
    except BaseException:
        tracked.forget()
        raise
    transfer = _Transfer(work, ref)
    transfer.start()
    outcome, timed_out = runner._follow(op, state, _EndsWithTransfer(tracked, transfer, runner),
                                        limit)
    transfer.join(END_GRACE)
    if isinstance(transfer.error, exceptions.ComputeAgentError) and not isinstance(
            transfer.error, exceptions.HypervisorError | exceptions.HypervisorUnavailable):
        raise transfer.error
    if outcome is None or timed_out:
        raise exceptions.OperationTimedOut(op.name, op.instance_uuid, round(limit, 3))
    if outcome.status == "cancelled":
        raise exceptions.OperationCancelled(op.name, op.instance_uuid)
    if outcome.status != "success":
        raise outcome.error([runner.pool.settings.password])
    if transfer.error is not None:
        raise transfer.error
    return outcome.result, transfer.result


class _EndsWithTransfer:
    """A tracked task whose wait also notices the transfer thread's end: if
    the transfer died without xapi ever ending the task (the request never
    arrived), the task is cancelled instead of awaited to the deadline."""

    def __init__(self, tracked: Any, transfer: _Transfer, runner: TaskRunner):
        self._tracked = tracked
        self._transfer = transfer
        self._runner = runner
        self.ref = tracked.ref

    @property
    def last_progress(self) -> float:
        return self._tracked.last_progress

    def known_uuid(self, timeout: float) -> str | None:
        return self._tracked.known_uuid(timeout)

    def wait(self, timeout: float, on_progress: Callable[[float], None]) -> Any:
        remaining = timeout
        ended_at: float | None = None
        while remaining > 0:
            step = min(STEP, remaining)
            outcome = self._tracked.wait(step, on_progress)
            if outcome is not None:
                return outcome
            remaining -= step
            if not self._transfer.is_alive():
                ended_at = (ended_at or 0.0) + step
                if ended_at >= END_GRACE:
                    LOG.warning("Transfer for task %s ended but xapi did not end the "
                                "task; cancelling it", self.ref)
                    self._runner._send_cancel(self.ref)
                    return self._tracked.wait(END_GRACE, on_progress)
        return None

    def forget(self) -> None:
        self._tracked.forget()
