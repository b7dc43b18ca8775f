"""The pieces of the fake driver (fake.py) that are not the driver: a VM
record, an injected failure, a gate that holds operations in flight, and
one fake dom0 task with the listener calls a real task would make."""

from __future__ import annotations

import threading
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from compute_agent import exceptions
from compute_agent.driver import power_state
from compute_agent.driver.base import Operation

if TYPE_CHECKING:
    from compute_agent.driver.fake import FakeDriver


@dataclass
class FakeVM:
    uuid: str
    name: str
    vcpus: int
    memory_mb: int
    root_gb: int
    vm_ref: str
    power_state: int = power_state.SHUTDOWN
    shutdown_reason: str | None = None
    # Changes with every shutdown or reboot (as xapi's last_shutdown_time).
    shutdown_time: str | None = None
    boots: int = 0
    history: list[str] = field(default_factory=list)


@dataclass
class Failure:
    error: exceptions.ComputeAgentError
    times: int | None  # None: every time
    instance_uuid: str | None


class Gate:
    """Holds operations of one kind in flight until released."""

    def __init__(self) -> None:
        self._released = threading.Event()
        self._entered = threading.Semaphore(0)

    def release(self) -> None:
        self._released.set()

    def wait_entered(self, timeout: float = 10.0) -> bool:
        """Block until an operation has reached the gate (True) or timeout."""
        return self._entered.acquire(timeout=timeout)

    def _pass(self, cancelled: threading.Event) -> None:
        self._entered.release()
        while not self._released.wait(0.05):
            if cancelled.is_set():
                return


def unresponsive(instance: dict[str, Any]) -> bool:
    value = (instance.get("metadata") or {}).get("fake:guest_unresponsive", "")
    return str(value).lower() in ("1", "true", "yes")


class FakeTask:
    """One fake dom0 task: reports to the listener, applies delay, gate,
    cancellation, timeout and injected failure, in that order."""

    def __init__(self, driver: FakeDriver, op: Operation, instance: dict[str, Any]):
        self.driver = driver
        self.op = op
        self.instance = instance
        self.ref = f"OpaqueRef:{uuidlib.uuid4()}"
        self.cancelled = threading.Event()

    def __enter__(self) -> FakeTask:
        d, op = self.driver, self.op
        d.calls.append((op.name, op.instance_uuid))
        with d._lock:
            d._in_flight[op.instance_uuid] = self.cancelled
        self._notify("task_started", self.ref, str(uuidlib.uuid4()), d.host or "fake-dom0")
        try:
            self._wait()
            error = self.driver._take_failure(op, self.instance)
            if error is not None:
                raise error
        except BaseException as exc:
            self._finish(exc)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._finish(exc)

    def _wait(self) -> None:
        d, op = self.driver, self.op
        delay = d._delay(op, self.instance)
        timeout = op.timeout
        if delay > 0:
            limit = delay if timeout is None else min(delay, timeout)
            self._notify("task_progress", self.ref, 0.5)
            self.cancelled.wait(limit)
            self._check_cancelled()
            if timeout is not None and delay > timeout:
                raise exceptions.OperationTimedOut(op.name, op.instance_uuid, timeout)
        gate = d._gates.get(op.name)
        if gate is not None:
            gate._pass(self.cancelled)
            self._check_cancelled()

    def _check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise exceptions.OperationCancelled(self.op.name, self.op.instance_uuid)

    def _finish(self, exc: BaseException | None) -> None:
        with self.driver._lock:
            if self.driver._in_flight.get(self.op.instance_uuid) is self.cancelled:
                del self.driver._in_flight[self.op.instance_uuid]
        if getattr(self, "_done", False):
            return
        self._done = True
        if exc is None:
            self._notify("task_progress", self.ref, 1.0)
            self._notify("task_finished", self.ref, "success", "", None)
        elif isinstance(exc, exceptions.OperationCancelled):
            self._notify("task_finished", self.ref, "cancelled", None, None)
        else:
            err = [getattr(exc, "code", type(exc).__name__), *getattr(exc, "params", [])]
            self._notify("task_finished", self.ref, "failure", None, err)

    def _notify(self, method: str, *args: Any) -> None:
        listener = self.driver.task_listener
        if listener is None:
            return
        try:
            getattr(listener, method)(self.op, *args)
        except Exception:  # noqa: BLE001 - a listener failure must not fail the operation
            pass
