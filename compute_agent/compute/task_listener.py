"""The manager's TaskListener: writes what the driver reports about dom0
tasks into the tracked_tasks table, and the progress into the instance.

A task is recorded before the driver waits on it (task_started), so an agent
killed mid-operation finds it on restart. Progress writes are throttled to at
most one per ``[tasks] progress_write_interval`` seconds per task; the final
state is always written. No method raises: losing a progress update must not
fail the operation.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

from compute_agent.db.types import utcnow
from compute_agent.driver.base import Operation
from compute_agent.metrics import agent as agent_metrics

LOG = logging.getLogger(__name__)


class TrackedTaskListener:
    def __init__(self, db: Any, agent_host: str, progress_interval: float = 1.0):
        self.db = db
        self.agent_host = agent_host
        self.progress_interval = progress_interval
        self._lock = threading.Lock()
        self._last_write: dict[str, float] = {}  # task ref -> monotonic time
        self._started: dict[str, float] = {}  # task ref -> monotonic start, for the metric

    def task_started(self, op: Operation, task_ref: str, task_uuid: str, dom0_host: str) -> None:
        now = utcnow()
        values: dict[str, Any] = {
            "ref": task_ref,
            "uuid": task_uuid,
            "dom0_host": dom0_host,
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
        try:
            self.db.add_tracked_task(values)
        except Exception:
            LOG.exception("Could not record task %s of %s", task_ref, op.name)
        with self._lock:
            self._last_write[task_ref] = self._started[task_ref] = time.monotonic()

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
