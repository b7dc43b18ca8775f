"""The manager's TaskListener: writes what the driver reports about dom0
tasks into the tracked_tasks table, and the progress into the instance.

Principle 3 without holes: the intent to start a task is recorded before
its ``Async.*`` call (task_intent, a row under a placeholder ref that says
which call and when), and the task's ref right after the call returns
(task_started binds the row to it), so an agent killed at any moment leaves
a row that recovery resolves: by the ref, or by finding the task the intent
describes. Both writes are retried briefly and then raise TaskNotRecorded:
the driver does not make the call, or cancels the task, rather than wait
on a task nobody recorded. Progress writes are throttled to at most one
per ``[tasks] progress_write_interval`` seconds per task; the final state is
always written; progress and end never raise (losing one must not fail the
operation).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

from compute_agent import exceptions
from compute_agent.db.errors import TrackedTaskExists
from compute_agent.db.types import utcnow
from compute_agent.driver.base import Operation
from compute_agent.metrics import agent as agent_metrics

LOG = logging.getLogger(__name__)


# Writing a task's record is retried this often, with these pauses (s),
# before the operation gives up on it (a database that drops a connection
# now and then must not fail operations; one that is down must stop them).
RECORD_RETRY_DELAYS = (0.1, 0.3, 0.9, 2.0)
INTENT_PREFIX = "intent:"


def intent_ref(method: str) -> str:
    """The placeholder ref of an intent: the Async method and when it is
    called are in it, for recovery to find the task if the agent died
    between the call and the record of its ref."""
    return f"{INTENT_PREFIX}{method}:{time.time():.3f}:{uuidlib.uuid4().hex}"


class TrackedTaskListener:
    def __init__(self, db: Any, agent_host: str, progress_interval: float = 1.0,
                 retry_delays: tuple[float, ...] = RECORD_RETRY_DELAYS):
        self.db = db
        self.agent_host = agent_host
        self.progress_interval = progress_interval
        self.retry_delays = retry_delays
        self._lock = threading.Lock()
        self._last_write: dict[str, float] = {}  # task ref -> monotonic time
        self._started: dict[str, float] = {}  # task ref -> monotonic start, for the metric

    def _must_write(self, op: Operation, what: str, write: Callable[[], Any]) -> None:
        """Run ``write`` until it succeeds; raise TaskNotRecorded when it
        still fails after the retries."""
        for delay in (*self.retry_delays, None):
            try:
                write()
                return
            except TrackedTaskExists:
                return  # an earlier attempt wrote it before its connection broke
            except Exception as exc:
                if delay is None:
                    LOG.error("Could not record %s of %s: %s", what, op.name,
                              type(exc).__name__)
                    raise exceptions.TaskNotRecorded(op.name, op.instance_uuid) from exc
                LOG.debug("Recording %s of %s failed (%s); retrying in %.1f s", what,
                          op.name, type(exc).__name__, delay)
                time.sleep(delay)

    def task_intent(self, op: Operation, method: str) -> str:
        """Record, BEFORE ``Async.<method>`` is called, that it is about to
        be: returns the placeholder ref that task_started binds to the real
        one. Raises TaskNotRecorded (then the call must not be made)."""
        ref = intent_ref(method)
        values = self._values(op, ref, "")
        values["extra"] = {"intent": method}
        self._must_write(op, "the intent of a task", lambda: self.db.add_tracked_task(values))
        LOG.debug("Task intent %s recorded for %s", method, op.name)
        return ref

    def task_started(self, op: Operation, task_ref: str, task_uuid: str, dom0_host: str,
                     intent: str | None = None) -> None:
        """Record the task (bind ``intent``'s row to ``task_ref`` when an
        intent was recorded). Raises TaskNotRecorded: the caller must then
        cancel the task rather than wait on it untracked."""
        if intent is not None:
            values = {"dom0_host": dom0_host}
            if task_uuid:
                values["uuid"] = task_uuid
            self._must_write(op, "a task", lambda: self.db.bind_tracked_task(
                intent, task_ref, values))
        else:
            values = self._values(op, task_ref, task_uuid)
            values["dom0_host"] = dom0_host
            self._must_write(op, "a task", lambda: self.db.add_tracked_task(values))
        LOG.debug("Task %s of %s recorded", task_ref, op.name)
        with self._lock:
            self._last_write[task_ref] = self._started[task_ref] = time.monotonic()

    def task_known(self, task_ref: str) -> bool:
        """Whether a row tracks ``task_ref`` (recovery matching intents)."""
        return self.db.get_tracked_task(task_ref) is not None

    def task_uuid_known(self, op: Operation, task_ref: str, task_uuid: str) -> None:
        try:
            self.db.update_tracked_task(task_ref, {"uuid": task_uuid})
        except Exception:
            LOG.warning("Could not record the uuid of task %s", task_ref)

    def task_not_started(self, op: Operation, intent: str, error: list | None) -> None:
        """The Async call was refused by dom0: the intent ended, no task."""
        try:
            self.db.update_tracked_task(intent, {
                "status": "failure", "finished_at": utcnow(),
                "error": [str(e) for e in error or []][:16]})
        except Exception:
            LOG.warning("Could not close task intent %s (recovery will)", intent)

    def _values(self, op: Operation, ref: str, task_uuid: str) -> dict[str, Any]:
        now = utcnow()
        values: dict[str, Any] = {
            "ref": ref,
            "uuid": task_uuid or None,
            "instance_uuid": op.instance_uuid,
            "operation": op.name,
            "request_id": op.request_id,
            "agent_host": self.agent_host,
            "status": "pending",
            "progress": 0.0,
            "created_at": now,
        }
        if op.timeout:
            # Recovery re-attaches to the task only until then (it cancels
            # the task past it), also when the agent was down meanwhile.
            values["deadline"] = now + dt.timedelta(seconds=float(op.timeout))
        return values

    def task_progress(self, op: Operation, task_ref: str, progress: float) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last_write.get(task_ref, 0.0)
            if now - last < self.progress_interval:
                return
            self._last_write[task_ref] = now
        self._write_progress(op, task_ref, progress)

    def task_finished(
        self, op: Operation, task_ref: str, status: str, result: str | None, error: list | None
    ) -> None:
        with self._lock:
            self._last_write.pop(task_ref, None)
            started = self._started.pop(task_ref, None)
        if started is not None:  # (a re-attached task's start is not known)
            agent_metrics.task_wait(op.name, time.monotonic() - started)
        LOG.debug("Task %s of %s ended: %s", task_ref, op.name, status)
        values: dict[str, Any] = {"status": status, "finished_at": utcnow()}
        if status == "success":
            values["progress"] = 1.0
        if result is not None:
            values["result"] = str(result)
        if error is not None:
            values["error"] = [str(e) for e in error]
        try:
            self.db.update_tracked_task(task_ref, values)
        except Exception:
            LOG.exception("Could not record the end of task %s", task_ref)

    def _write_progress(self, op: Operation, task_ref: str, progress: float) -> None:
        progress = min(max(float(progress), 0.0), 1.0)
        try:
            self.db.update_tracked_task(task_ref, {"progress": progress})
            # The instance's progress follows its task's; unguarded because
            # it is a display value that never drives a state decision.
            self.db.update_instance(op.instance_uuid, {"progress": int(progress * 100)})
        except Exception:
            LOG.exception("Could not record progress of task %s", task_ref)
