"""What a handler gets: the simulator, who called, where, and helpers to
take time (cancellable, with progress) and to hold an object's operation."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from xapisim.current_operations import hold
from xapisim.errors import XenAPIError
from xapisim.store import new_ref

if TYPE_CHECKING:
    from xapisim.services import SimServices
    from xapisim.store import Store


class CallContext:
    def __init__(self, sim: SimServices, method: str, session_ref: str | None,
                 host_ref: str, task_ref: str | None = None):
        self.sim = sim
        self.store: Store = sim.store
        self.method = method
        self.session_ref = session_ref
        self.host_ref = host_ref
        self.task_ref = task_ref
        # Sync calls run under an internal task too, as in xapi; its ref is
        # what current_operations records.
        self.op_ref = task_ref or new_ref()
        self.cancel_requested = threading.Event()

    # -- time -------------------------------------------------------------
    def work(self, key: str | None = None, seconds: float | None = None) -> None:
        """Spend the configured duration of this message, reporting
        progress on the task and stopping with TASK_CANCELLED if asked."""
        total = self.sim.faults.duration(key or self.method) if seconds is None else seconds
        if total <= 0:
            self.check_cancel()
            return
        start = time.monotonic()
        step = min(0.1, total / 10)
        while True:
            self.check_cancel()
            elapsed = time.monotonic() - start
            if elapsed >= total:
                break
            if self.task_ref:
                self.sim.tasks.set_progress(self.task_ref, min(elapsed / total, 0.99))
            self.cancel_requested.wait(min(step, total - elapsed))
        if self.task_ref:
            self.sim.tasks.set_progress(self.task_ref, 0.99)

    def check_cancel(self) -> None:
        if self.cancel_requested.is_set():
            raise XenAPIError("TASK_CANCELLED", self.task_ref or self.op_ref)

    # -- operations ---------------------------------------------------------
    def operation(self, cls: str, ref: str, op: str):
        """Record ``op`` in the object's current_operations for the
        duration; refuse with OTHER_OPERATION_IN_PROGRESS if another
        operation holds it, as xapi does for exclusive operations."""
        return hold(self, cls, ref, op, _exclusive(cls))


def _exclusive(cls: str):
    def check(store: Store, ref: str, op: str) -> None:
        current = store.raw(cls, ref).get("current_operations", {})
        if current:
            other_task, other_op = next(iter(current.items()))
            raise XenAPIError("OTHER_OPERATION_IN_PROGRESS", cls, ref, other_op, other_task)

    return check
