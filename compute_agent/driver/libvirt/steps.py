"""libvirt calls reported to the manager's TaskListener as tasks.

libvirt has no task objects: its calls return when done. Each call that
changes a domain or a volume is still reported like a dom0 task (a ref of
the form ``libvirt:<uuid>``, started BEFORE the call, finished after it), so
that the action record shows the steps and an agent killed in the middle of
one finds it in tracked_tasks on restart. Such a task cannot be followed by a
new process: reattaching one reports it lost (``TASK_LOST``) and recovery
settles the instance from what libvirt shows.
"""

from __future__ import annotations

import contextlib
import logging
import uuid as uuidlib
from collections.abc import Iterator
from typing import Any

from compute_agent.driver.base import Operation, TaskListener

LOG = logging.getLogger(__name__)

REF_PREFIX = "libvirt:"


class Steps:
    def __init__(self, listener: TaskListener | None, hypervisor_host: str):
        self.listener = listener
        self.hypervisor_host = hypervisor_host

    @contextlib.contextmanager
    def step(self, op: Operation, what: str) -> Iterator[str]:
        """Report one libvirt call (``what``, for logs) as a task."""
        task_uuid = str(uuidlib.uuid4())
        ref = REF_PREFIX + task_uuid
        LOG.debug("%s %s: %s (%s)", op.name, op.instance_uuid, what, ref)
        self._notify("task_started", op, ref, task_uuid, self.hypervisor_host)
        try:
            yield ref
        except BaseException as exc:
            code = getattr(exc, "code", type(exc).__name__)
            status = "cancelled" if code == "OPERATION_CANCELLED" else "failure"
            error = None if status == "cancelled" else [code, *getattr(exc, "params", [])]
            self._notify("task_finished", op, ref, status, None, error)
            raise
        self._notify("task_progress", op, ref, 1.0)
        self._notify("task_finished", op, ref, "success", "", None)

    def _notify(self, method: str, *args: Any) -> None:
        if self.listener is None:
            return
        try:
            getattr(self.listener, method)(*args)
        except Exception:  # a listener failure must not fail the operation
            LOG.exception("task listener %s failed", method)
