"""Running long dom0 work as ``Async.*`` tasks and waiting for them.

``TaskRunner.run(op, method, *args)`` starts ``Async.<method>`` on a pooled
session, gives the session back at once (no session is held while dom0
works), reports the task to the TaskListener *before* waiting on it, waits
through a :class:`TaskWaiter`, reports the outcome, destroys the task and
returns the decoded result or raises the structured error.

How the waiting is done is the waiter's business: :class:`PollingWaiter`
(polling.py) reads each task's record with backoff; the TaskWatcher (watcher.py)
follows every task of the pool through one ``event.from`` stream. Both give
the runner the same :class:`TrackedTask` handles.

Operations (``with runner.operation(op, timeout):``) carry one deadline
across their several tasks, and are what :meth:`TaskRunner.cancel` cancels.
"""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.base import Operation, TaskListener
from compute_agent.driver.task_status import LOST, PENDING, TaskState
from compute_agent.driver.xenapi import errors
from compute_agent.driver.xenapi.session import SessionPool
from compute_agent.driver.xenapi.task_reaper import TaskReaper
from compute_agent.driver.xenapi.task_result import TaskOutcome
from compute_agent.driver.xenapi.task_waiter import TaskWaiter, TrackedTask
from compute_agent.driver.xenapi.transport import host_of

LOG = logging.getLogger(__name__)


# After a timeout the task is cancelled; this is how long its end is awaited.
CANCEL_GRACE = 10.0
# How long to wait for the waiter to learn a new task's uuid before asking.
UUID_WAIT = 0.5
# Placeholder refs of recorded intents (compute/task_listener.py) start so.
INTENT_PREFIX = "intent:"
# How much dom0's clock may lag the agent's when matching an intent's task.
INTENT_CLOCK_SLACK = 5.0
# A re-attached transfer task's bytes went through the process that died:
# it is awaited this long (a running handler fails on the lost connection),
# then cancelled, not awaited to its operation's deadline.
ORPHANED_TRANSFER_GRACE = 5.0


def _epoch(value: Any) -> float | None:
    """A xapi datetime (xmlrpc DateTime or ISO-8601 string) as epoch seconds."""
    text = getattr(value, "value", value)
    if not isinstance(text, str):
        return None
    for fmt in ("%Y%m%dT%H:%M:%SZ", "%Y%m%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ",
                "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            return float(calendar.timegm(dt.datetime.strptime(text, fmt).timetuple()))
        except ValueError:
            continue
    return None


@dataclass
class OperationState:
    op: Operation
    deadline: float  # time.monotonic()
    timeout: float
    cancelled: bool = False
    task_ref: str | None = None
    depth: int = 1
    # Cleaning up after a failure: not cancellable, own deadline.
    shielded: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


class TaskRunner:
    """Runs ``Async.*`` calls for operations and waits for their tasks."""

    def __init__(
        self,
        pool: SessionPool,
        waiter: TaskWaiter,
        listener: TaskListener | None = None,
        default_timeout: float = 600.0,
    ):
        self.pool = pool
        self.waiter = waiter
        self.listener = listener
        self.default_timeout = default_timeout
        self._ops: dict[str, OperationState] = {}
        self._lock = threading.Lock()
        self.reaper = TaskReaper(pool)

    # -- operations ------------------------------------------------------------
    @contextlib.contextmanager
    def operation(self, op: Operation, timeout: float | None = None) -> Iterator[OperationState]:
        """Scope of one operation: its deadline covers all its tasks, and
        cancel(op.instance_uuid) reaches it. Nested use (destroy inside a
        failed spawn) shares the outer operation's state."""
        with self._lock:
            state = self._ops.get(op.instance_uuid)
            if state is not None:
                state.depth += 1
            else:
                limit = float(timeout if timeout is not None else self.default_timeout)
                state = OperationState(op, time.monotonic() + limit, limit)
                self._ops[op.instance_uuid] = state
        try:
            yield state
        finally:
            with self._lock:
                state.depth -= 1
                if state.depth <= 0:
                    self._ops.pop(op.instance_uuid, None)

    def cancel(self, instance_uuid: str) -> bool:
        """Cancel the operation in flight for an instance: its running task
        gets task.cancel and its later steps do not start."""
        with self._lock:
            state = self._ops.get(instance_uuid)
        if state is None:
            return False
        with state.lock:
            if state.shielded:
                return True  # cleaning up already; the operation ends cancelled
            state.cancelled = True
            ref = state.task_ref
        if ref is not None:
            self._send_cancel(ref)
        return True

    @contextlib.contextmanager
    def cleanup(self, op: Operation, timeout: float) -> Iterator[None]:
        """Scope for undoing a failed, cancelled or timed-out operation's
        work: its steps run even though the operation was cancelled or ran
        out of time, under a deadline of their own, and cannot be cancelled
        (half-undone work would be the worst outcome)."""
        state = self._state_for(op)
        with state.lock:
            saved = (state.cancelled, state.deadline, state.timeout, state.shielded)
            state.cancelled, state.shielded = False, True
            state.deadline = time.monotonic() + timeout
            state.timeout = timeout
        try:
            yield
        finally:
            with state.lock:
                cancelled, state.deadline, state.timeout, state.shielded = saved
                state.cancelled = cancelled or state.cancelled

    def _state_for(self, op: Operation) -> OperationState:
        with self._lock:
            state = self._ops.get(op.instance_uuid)
        if state is not None and state.op.request_id == op.request_id:
            return state
        limit = float(op.timeout if op.timeout is not None else self.default_timeout)
        return OperationState(op, time.monotonic() + limit, limit)

    # -- running tasks ---------------------------------------------------------
    def run(self, op: Operation, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Run ``Async.<method>(*args)`` and return its decoded result.

        ``timeout`` bounds this task (the operation's deadline bounds it
        too). On expiry the task is cancelled; OperationTimedOut is raised
        unless it succeeded after all. A failed task raises the same
        HypervisorError a synchronous call would; a cancelled one
        OperationCancelled.
        """
        state = self._state_for(op)
        if state.cancelled:
            raise exceptions.OperationCancelled(op.name, op.instance_uuid)
        limit = state.remaining()
        if timeout is not None:
            limit = min(limit, timeout)
        if limit <= 0:
            raise exceptions.OperationTimedOut(op.name, op.instance_uuid, state.timeout)
        tracked = self._start(op, method, args)
        outcome, timed_out = self._follow(op, state, tracked, limit)
        if outcome is None:
            # Still running despite the cancel: leave it tracked (pending)
            # for recovery rather than pretending to know how it ended.
            raise exceptions.OperationTimedOut(op.name, op.instance_uuid, round(limit, 3))
        if outcome.status == "success":
            return outcome.result
        if timed_out:
            raise exceptions.OperationTimedOut(op.name, op.instance_uuid, round(limit, 3))
        if outcome.status == "cancelled":
            raise exceptions.OperationCancelled(op.name, op.instance_uuid)
        raise outcome.error(self._secrets())

    def _start(self, op: Operation, method: str, args: tuple[Any, ...]) -> TrackedTask:
        """Make the Async call between the record of its intent and the
        record of its ref (principle 3): no task is waited on unrecorded.
        An intent that cannot be recorded stops the operation before the
        call; a ref that cannot be recorded cancels the task."""
        listener = self.listener
        intent = listener.task_intent(op, method) if listener is not None else None
        try:
            with self.pool.session() as sess:
                ref = sess.call("Async." + method, *args)
        except exceptions.HypervisorError as e:
            # dom0 refused the call: no task exists.
            if listener is not None and intent is not None:
                listener.task_not_started(op, intent, [e.code, *e.params])
            raise
        # Any other failure (the connection broke) leaves the intent pending:
        # a task may exist, and recovery looks for it.
        tracked = self.waiter.track(ref)
        try:
            if listener is not None:
                listener.task_started(op, ref, "", host_of(self.pool.url), intent=intent)
        except BaseException:
            LOG.warning("Cancelling task %s of %s for %s: it could not be recorded",
                        ref, op.name, op.instance_uuid)
            self._send_cancel(ref)
            tracked.forget()
            raise
        LOG.debug("Task %s (%s) started for %s of %s", ref, method, op.name, op.instance_uuid)
        uuid = tracked.known_uuid(UUID_WAIT) or self._lookup_uuid(ref)
        if uuid and listener is not None and hasattr(listener, "task_uuid_known"):
            self._notify("task_uuid_known", op, ref, uuid)
        return tracked

    def resolve_intent(self, intent: str) -> str | None:
        """The ref of the task a recorded intent started, if dom0 has one:
        a task named ``Async.<method>`` created from a little before the
        intent's time on, the earliest such (the intent was recorded just
        before its call). None when there is none (the call never reached
        dom0, or its task is gone). Tasks another row already tracks are
        not candidates."""
        try:
            _, method, stamp, _ = intent.split(":", 3)
            since = float(stamp) - INTENT_CLOCK_SLACK
        except ValueError:
            return None
        records = self.pool.call("task.get_all_records_where",
                                 f'field "name_label" = "Async.{method}"')
        known = getattr(self.listener, "task_known", None)
        found = []
        for ref, rec in records.items():
            created = _epoch(rec.get("created"))
            if created is not None and created >= since and not (known and known(ref)):
                found.append((created, ref))
        return min(found)[1] if found else None

    def reattach(self, op: Operation, ref: str, timeout: float) -> TaskState:
        """Follow a task an earlier run of the agent started (recovery).

        As run() without the Async call and task_started: progress and the
        end go to the listener, the ended task is destroyed. A task xapi no
        longer has is 'lost' at once. On expiry of ``timeout`` the task is
        cancelled and its end awaited for CANCEL_GRACE (``timed_out`` set;
        status 'pending' if it still has not ended). Raises
        HypervisorUnavailable when dom0 cannot be reached.
        """
        if ref.startswith(INTENT_PREFIX):
            real = self.resolve_intent(ref)
            LOG.info("Task intent %s of %s: %s", ref, op.instance_uuid,
                     f"found task {real}" if real else "no task in dom0")
            if real is None:
                outcome = TaskOutcome.lost(ref)
                self._notify("task_finished", op, ref, outcome.listener_status, None,
                             outcome.error_info)
                return TaskState(LOST, error=list(outcome.error_info))
            if self.listener is not None:
                self.listener.task_started(op, real, "", host_of(self.pool.url), intent=ref)
            ref = real
        with self.operation(op, timeout) as state:
            # One direct read first: a ref xapi forgot is known lost now,
            # not after the waiter's grace period.
            try:
                self.pool.call("task.get_status", ref)
            except exceptions.HypervisorError as e:
                if e.code != "HANDLE_INVALID":
                    raise
                outcome = TaskOutcome.lost(ref)
                self._notify("task_finished", op, ref, outcome.listener_status, None,
                             outcome.error_info)
                return TaskState(LOST, error=list(outcome.error_info))
            if self._is_transfer(ref):
                timeout = min(float(timeout), ORPHANED_TRANSFER_GRACE)
            tracked = self.waiter.track(ref)
            outcome, timed_out = self._follow(op, state, tracked, max(0.0, float(timeout)))
            if outcome is None:
                return TaskState(PENDING, progress=tracked.last_progress, timed_out=True)
            return TaskState(
                outcome.status,
                progress=1.0 if outcome.status == "success" else tracked.last_progress,
                result=outcome.listener_result,
                error=errors.scrub_for_storage(outcome.error_info, self._secrets()) or None,
                timed_out=timed_out,
            )

    def _is_transfer(self, ref: str) -> bool:
        """A task.create'd task (an HTTP transfer's): xapi names an Async
        call's task ``Async.<class>.<message>``."""
        try:
            name = str(self.pool.call("task.get_name_label", ref))
        except exceptions.HypervisorError:
            return False
        return not name.startswith("Async.")

    def _follow(
        self, op: Operation, state: OperationState, tracked: TrackedTask, limit: float
    ) -> tuple[TaskOutcome | None, bool]:
        """Wait for a tracked task as part of ``op``: cancellable through
        the operation, cancelled at ``limit``; report and destroy it once
        ended. Returns (outcome or None if still running, timed_out)."""
        ref = tracked.ref
        timed_out = False

        def progress(p: float) -> None:
            self._notify("task_progress", op, ref, p)

        try:
            with state.lock:
                state.task_ref = ref
                cancel_now = state.cancelled
            if cancel_now:  # cancel() came between the Async call and now
                self._send_cancel(ref)
            outcome = tracked.wait(limit, progress)
            if outcome is None:
                timed_out = True
                LOG.warning("Task of %s for %s timed out after %.1f s; cancelling it",
                            op.name, op.instance_uuid, limit)
                self._send_cancel(ref)
                outcome = tracked.wait(CANCEL_GRACE, progress)
        finally:
            with state.lock:
                state.task_ref = None
            tracked.forget()
        if outcome is not None:
            stored_error = errors.scrub_for_storage(outcome.error_info, self._secrets())
            self._notify(
                "task_finished", op, ref, outcome.listener_status, outcome.listener_result,
                stored_error or None,
            )
            if outcome.status != LOST:
                self.reaper.reap(ref)
        return outcome, timed_out

    def _secrets(self) -> list[str]:
        return [self.pool.settings.password]

    def _lookup_uuid(self, ref: str) -> str:
        try:
            return self.pool.call("task.get_uuid", ref)
        except (exceptions.HypervisorError, exceptions.HypervisorUnavailable) as e:
            LOG.debug("No uuid for task: %s", e)
            return ""

    def _send_cancel(self, ref: str) -> None:
        try:
            self.pool.call("task.cancel", ref)
        except (exceptions.HypervisorError, exceptions.HypervisorUnavailable) as e:
            # Already finished (OPERATION_NOT_ALLOWED) or gone: the outcome
            # tells what happened.
            LOG.debug("task.cancel not sent: %s", e)

    def _notify(self, what: str, *args: Any) -> None:
        if self.listener is None:
            return
        try:
            getattr(self.listener, what)(*args)
        except Exception:  # a listener must not fail the operation
            LOG.exception("TaskListener.%s failed", what)

    def close(self) -> None:
        self.waiter.close()
        self.reaper.close()
