"""Re-attaching to a dom0 task an earlier run of the agent recorded in
tracked_tasks: wait for it through the driver (within what is left of its
operation's deadline), retry while dom0 is unreachable, and record its end
if the driver's TaskListener could not. Used by recovery.py."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

from compute_agent import exceptions
from compute_agent.compute.requests import timeout_of
from compute_agent.db.types import parse_time, utcnow
from compute_agent.driver import task_status as ts
from compute_agent.driver.base import ComputeDriver, Operation

LOG = logging.getLogger(__name__)


class TaskReattacher:
    def __init__(self, conf: Any, db: Any, driver: ComputeDriver, stop: threading.Event):
        self.conf = conf
        self.db = db
        self.driver = driver
        self._stop = stop

    def _remaining(self, task: dict[str, Any]) -> float:
        """Seconds left of the task's operation deadline (0 when past)."""
        if task.get("deadline"):
            deadline = parse_time(task["deadline"])
        else:
            deadline = parse_time(task["created_at"]) + dt.timedelta(
                seconds=timeout_of(self.conf, task.get("operation") or ""))
        return max(0.0, (deadline - utcnow()).total_seconds())

    def reattach(self, task: dict[str, Any], retry_s: float) -> ts.TaskState | None:
        """Wait for a tracked task through the driver; None if dom0 stayed
        unreachable for ``retry_s`` seconds. The driver records the end through the TaskListener;
        if it could not (or cannot re-attach at all), it is recorded here."""
        ref = task["ref"]
        op = Operation(instance_uuid=task.get("instance_uuid") or "",
                       name=task.get("operation") or "unknown",
                       request_id=task.get("request_id") or "",
                       timeout=self._remaining(task))
        give_up = time.monotonic() + retry_s
        delay = 0.5
        while True:
            try:
                reattach = getattr(self.driver, "reattach_task", None)
                if reattach is None:
                    raise NotImplementedError
                st = reattach(op, ref, op.timeout or 0.0)
                break
            except NotImplementedError:
                st = ts.TaskState(ts.LOST, error=["TASK_LOST", ref])
                break
            except exceptions.HypervisorUnavailable as exc:
                if self._stop.is_set() or time.monotonic() >= give_up:
                    LOG.warning("Cannot re-attach task %s: %s", ref, exc.message)
                    return None
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
        LOG.info("Re-attached task %s (%s of %s): %s%s", ref, op.name, op.instance_uuid,
                 st.status, " after its timeout" if st.timed_out else "")
        if st.ended:
            self._record_task_end(ref, st)
        return st

    def _record_task_end(self, ref: str, st: ts.TaskState) -> None:
        row = self.db.get_tracked_task(ref)
        if row is None or row["status"] != ts.PENDING:
            return  # the driver's listener recorded it
        values: dict[str, Any] = {"status": st.status, "finished_at": utcnow()}
        if st.error:
            values["error"] = list(st.error)
        if st.result is not None:
            values["result"] = st.result
        if st.status == ts.SUCCESS:
            values["progress"] = 1.0
        try:
            self.db.update_tracked_task(ref, values)
        except Exception:
            LOG.exception("Could not record the end of task %s", ref)
