"""The fake driver plus a dom0 task table, so recovery can be unit-tested:
tasks an "earlier run" left behind are put in the table by the test, and
``reattach_task`` follows them as the xenapi driver's contract says
(compute_agent/driver/task_state.py, notes/requests-recovery.md)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from compute_agent.driver import power_state
from compute_agent.driver import task_state as ts
from compute_agent.driver.base import Operation
from compute_agent.driver.fake import FakeDriver, FakeVM


@dataclass
class FakeTaskRecord:
    status: str = ts.PENDING
    progress: float = 0.0
    result: str | None = None
    error: list[str] = field(default_factory=list)
    # What the task does to the VM when it succeeds: (uuid, power_state) or None.
    effect: tuple[str, int] | None = None


class TaskTableDriver(FakeDriver):
    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.tasks: dict[str, FakeTaskRecord] = {}
        self.reattached: list[str] = []
        self.cancelled_tasks: list[str] = []
        self.unavailable = 0  # how many reattach/get_info calls fail as unreachable
        self._cond = threading.Condition()

    # -- test hooks ----------------------------------------------------------------
    def add_vm(self, uuid: str, state: int = power_state.RUNNING, name: str = "vm") -> FakeVM:
        vm = FakeVM(uuid=uuid, name=name, vcpus=1, memory_mb=256, root_gb=1,
                    vm_ref=f"OpaqueRef:vm-{uuid}", power_state=state)
        self.vms[uuid] = vm
        return vm

    def add_task(self, ref: str, status: str = ts.PENDING, **kw: Any) -> FakeTaskRecord:
        rec = FakeTaskRecord(status=status, **kw)
        with self._cond:
            self.tasks[ref] = rec
        return rec

    def complete_task(self, ref: str, status: str = ts.SUCCESS,
                      error: list[str] | None = None) -> None:
        with self._cond:
            rec = self.tasks[ref]
            rec.status = status
            rec.error = list(error or [])
            if status == ts.SUCCESS:
                rec.progress = 1.0
                self._apply(rec)
            self._cond.notify_all()

    def forget_tasks(self) -> None:
        """What an xapi restart does to tasks."""
        with self._cond:
            self.tasks.clear()
            self._cond.notify_all()

    def _apply(self, rec: FakeTaskRecord) -> None:
        if rec.effect is not None:
            uuid, state = rec.effect
            if uuid in self.vms:
                self.vms[uuid].power_state = state

    # -- the contract ------------------------------------------------------------------
    def reattach_task(self, op: Operation, task_ref: str, timeout: float) -> ts.TaskState:
        from compute_agent.exceptions import HypervisorUnavailable

        if self.unavailable > 0:
            self.unavailable -= 1
            raise HypervisorUnavailable("fake://dom0", "connection refused")
        self.reattached.append(task_ref)
        cancel_flag = threading.Event()
        with self._lock:
            self._in_flight[op.instance_uuid] = cancel_flag
        timed_out = False
        try:
            with self._cond:
                rec = self.tasks.get(task_ref)
                if rec is None:
                    state = ts.TaskState(ts.LOST, error=["TASK_LOST", task_ref])
                else:
                    remaining = timeout
                    while rec.status == ts.PENDING and remaining > 0 and not cancel_flag.is_set():
                        self._cond.wait(min(0.05, remaining))
                        remaining -= 0.05
                    if rec.status == ts.PENDING:
                        # Cancelled by the timeout or by cancel(): in this fake
                        # a cancel always wins over a pending task.
                        timed_out = not cancel_flag.is_set()
                        rec.status = ts.CANCELLED
                        self.cancelled_tasks.append(task_ref)
                    state = ts.TaskState(rec.status, rec.progress, rec.result,
                                         list(rec.error) or None, timed_out)
                    del self.tasks[task_ref]  # task.destroy once recorded
        finally:
            with self._lock:
                if self._in_flight.get(op.instance_uuid) is cancel_flag:
                    del self._in_flight[op.instance_uuid]
        listener = self.task_listener
        if listener is not None:
            status = ts.FAILURE if state.status == ts.LOST else state.status
            listener.task_finished(op, task_ref, status, state.result, state.error)
        return state
