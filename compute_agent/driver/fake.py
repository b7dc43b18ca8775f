"""An in-memory driver: VMs are dict entries, operations finish at once.

Used by unit tests and by functional tests that exercise the RPC and manager
layers without a hypervisor. Tests steer it in two ways:

* programmatically (same process): :meth:`FakeDriver.inject_failure`,
  :meth:`FakeDriver.set_delay` and :meth:`FakeDriver.hold` (a gate that keeps
  an operation in flight until released, so tests need no sleeps);
* through the instance's metadata (works across processes, e.g. an agent
  started as a subprocess): ``fake:delay:<op>`` = seconds, and
  ``fake:fail:<op>`` = ``"CODE"`` or ``"CODE,param,..."`` which makes ``<op>``
  raise ``HypervisorError(code, params)`` every time, or
  ``fake:guest_unresponsive`` = ``"true"`` so that clean shutdowns and soft
  reboots fall back to hard ones.

``<op>`` is the Operation name: spawn, power_on, power_off, reboot, destroy
(and those of fake_lifecycle.py).
The driver reports fake dom0 tasks to its TaskListener like a real one would.

For recovery tests, tasks an "earlier run" left in dom0 are put in the task
table (:meth:`FakeDriver.add_task`, :meth:`FakeDriver.complete_task`,
:meth:`FakeDriver.forget_tasks`; fake_tasks.py) and followed by
:meth:`FakeDriver.reattach_task`; :meth:`FakeDriver.add_vm` puts a VM in
directly.
"""

from __future__ import annotations

import itertools
import threading
import uuid as uuidlib
from collections.abc import Callable, Iterable
from typing import Any

from compute_agent import exceptions
from compute_agent.driver import power_state
from compute_agent.driver import task_status as ts
from compute_agent.driver.base import (
    REBOOT_HARD,
    REBOOT_TYPES,
    ComputeDriver,
    InstanceInfo,
    Operation,
    TaskListener,
)
from compute_agent.driver.fake_consoles import FakeConsoles
from compute_agent.driver.fake_lifecycle import FakeLifecycle
from compute_agent.driver.fake_migration import FakeMigrationMixin
from compute_agent.driver.fake_parts import Failure, FakeTask, FakeVM, Gate, unresponsive
from compute_agent.driver.fake_tasks import FakeTaskRecord, FakeTaskTable


class FakeDriver(FakeMigrationMixin, FakeLifecycle, FakeConsoles, ComputeDriver):
    """In-memory hypervisor with knobs for failures, delays and guest events."""

    def __init__(
        self,
        task_listener: TaskListener | None = None,
        vcpus: int = 16,
        memory_mb: int = 32768,
        local_gb: int = 500,
        conf: Any = None,
    ):
        # ``conf`` is accepted for the loader's sake: nothing here is configurable.
        super().__init__(task_listener)
        self.host: str | None = None
        self.vms: dict[str, FakeVM] = {}
        self.totals = {"vcpus": vcpus, "memory_mb": memory_mb, "local_gb": local_gb}
        self.calls: list[tuple[str, str]] = []  # (operation, instance uuid)
        self._lock = threading.RLock()
        self._failures: dict[str, list[Failure]] = {}
        self._delays: dict[str, float] = {}
        self._gates: dict[str, Gate] = {}
        self._in_flight: dict[str, threading.Event] = {}  # uuid -> cancel flag
        self._refs = itertools.count(1)
        self._shutdowns = itertools.count(1)
        self.cleaned_up = False
        # dom0 tasks left by an "earlier run" (recovery tests); see add_task.
        self.task_table = FakeTaskTable(self._apply_task_effect)
        self.reattached: list[str] = []
        self.reattach_unavailable = 0  # this many reattach_task calls fail as unreachable

    # -- test hooks ----------------------------------------------------------

    def inject_failure(
        self,
        op_name: str,
        error: exceptions.ComputeAgentError,
        times: int | None = 1,
        instance_uuid: str | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``op_name`` (all if None) raise
        ``error``, optionally only for one instance."""
        with self._lock:
            self._failures.setdefault(op_name, []).append(Failure(error, times, instance_uuid))

    def set_delay(self, op_name: str, seconds: float) -> None:
        """Make every ``op_name`` take ``seconds`` (cancellable)."""
        self._delays[op_name] = seconds

    def hold(self, op_name: str) -> Gate:
        """Keep every ``op_name`` in flight until the returned gate is released."""
        gate = Gate()
        self._gates[op_name] = gate
        return gate

    def guest_event(
        self, instance_uuid: str, new_state: int, reason: str | None = None
    ) -> None:
        """Simulate the guest changing power state on its own (shutting down,
        crashing) and tell the power state listener."""
        with self._lock:
            vm = self._vm(instance_uuid)
            vm.power_state = new_state
            self._record_shutdown(vm, reason)
            info = self._info(vm)
        if self.power_state_listener is not None:
            self.power_state_listener(instance_uuid, info)

    def add_vm(self, uuid: str, state: int = power_state.RUNNING,
               name: str = "vm") -> FakeVM:
        """Put a VM for ``uuid`` into the fake hypervisor directly (e.g. one
        an earlier run of the agent half built)."""
        vm = FakeVM(uuid=uuid, name=name, vcpus=1, memory_mb=256, root_gb=1,
                    vm_ref=f"OpaqueRef:vm-{uuid}", power_state=state)
        with self._lock:
            self.vms[uuid] = vm
        return vm

    def add_task(self, ref: str, status: str = ts.PENDING, **fields: Any) -> FakeTaskRecord:
        """A dom0 task an earlier run of the agent started (for
        reattach_task): ``status``, ``progress``, ``result``, ``error`` and
        ``effect`` = (instance uuid, power state its VM gets on success)."""
        return self.task_table.add(ref, status, **fields)

    def complete_task(self, ref: str, status: str = ts.SUCCESS,
                      error: list[str] | None = None) -> None:
        """End a pending task (its effect applies on success)."""
        self.task_table.complete(ref, status, error)

    def forget_tasks(self) -> None:
        """Every task disappears, as in an xapi restart."""
        self.task_table.forget_all()

    def _apply_task_effect(self, effect: tuple[str, int]) -> None:
        uuid, state = effect
        with self._lock:
            if uuid in self.vms:
                self.vms[uuid].power_state = state

    # -- lifecycle -----------------------------------------------------------

    def init_host(self, host: str) -> None:
        self.host = host
        self._join_fleet()

    def cleanup_host(self) -> None:
        self.cleaned_up = True

    # -- operations ------------------------------------------------------------

    def spawn(self, op: Operation, instance: dict[str, Any]) -> InstanceInfo:
        uuid = instance["uuid"]
        with self._task(op, instance):
            with self._lock:
                vm = self.vms.get(uuid)
                if vm is None:
                    flavor = instance.get("flavor") or {}
                    vm = FakeVM(
                        uuid=uuid,
                        name=instance.get("name") or uuid,
                        vcpus=int(flavor.get("vcpus", 1)),
                        memory_mb=int(flavor.get("memory_mb", 512)),
                        root_gb=int(flavor.get("root_gb", 1)),
                        vm_ref=f"OpaqueRef:{uuidlib.uuid4()}",
                    )
                    self.vms[uuid] = vm
                self._boot(vm, "spawn")
                return self._info(vm)

    def power_on(self, op: Operation, instance: dict[str, Any]) -> None:
        with self._task(op, instance):
            with self._lock:
                vm = self._vm(instance["uuid"])
                if vm.power_state != power_state.RUNNING:
                    self._boot(vm, "power_on")

    def power_off(
        self, op: Operation, instance: dict[str, Any], clean: bool = True, timeout: float = 60
    ) -> None:
        with self._task(op, instance):
            with self._lock:
                vm = self._vm(instance["uuid"])
                if vm.power_state == power_state.SHUTDOWN:
                    return
                hard = not clean or unresponsive(instance)
                vm.history.append("hard_shutdown" if hard else "clean_shutdown")
                vm.power_state = power_state.SHUTDOWN
                self._record_shutdown(vm, "halted")

    def reboot(self, op: Operation, instance: dict[str, Any], reboot_type: str) -> None:
        if reboot_type not in REBOOT_TYPES:
            raise exceptions.InvalidInput("reboot_type", f"must be one of {REBOOT_TYPES}")
        with self._task(op, instance):
            with self._lock:
                vm = self._vm(instance["uuid"])
                hard = reboot_type == REBOOT_HARD or unresponsive(instance)
                vm.history.append("hard_reboot" if hard else "clean_reboot")
                self._record_shutdown(vm, "rebooted")
                self._boot(vm, "reboot")

    def destroy(self, op: Operation, instance: dict[str, Any]) -> None:
        with self._task(op, instance):
            with self._lock:
                self.vms.pop(instance["uuid"], None)

    def snapshot(self, op: Operation, instance: dict[str, Any],
                 upload: Callable[[Iterable[bytes]], None]) -> None:
        """Uploads a stand-in for the disk: 64 KiB of zeros per GiB of
        root disk (a fake VM has no data)."""
        with self._task(op, instance):
            with self._lock:
                vm = self._vm(instance["uuid"])
                vm.history.append("snapshot")
                chunks = max(1, vm.root_gb)
        upload(bytes(64 * 1024) for _ in range(chunks))

    # -- queries ---------------------------------------------------------------

    def get_info(self, instance: dict[str, Any]) -> InstanceInfo:
        with self._lock:
            return self.rescue_info(instance, self._info(self._vm(instance["uuid"])))

    def list_instance_uuids(self) -> list[str]:
        with self._lock:
            return sorted(self.vms)

    def get_host_resources(self) -> dict[str, Any]:
        with self._lock:
            running = [v for v in self.vms.values() if v.power_state == power_state.RUNNING]
            vcpus_used = sum(v.vcpus for v in running)
            memory_used = sum(v.memory_mb for v in running)
            disk_used = sum(v.root_gb for v in self.vms.values())
        return {
            "vcpus": self.totals["vcpus"],
            "vcpus_used": vcpus_used,
            "memory_mb": self.totals["memory_mb"],
            "memory_mb_used": memory_used,
            "free_memory_mb": self.totals["memory_mb"] - memory_used,
            "local_gb": self.totals["local_gb"],
            "local_gb_used": disk_used,
            "hypervisor_type": "fake",
            "hypervisor_version": "1.0",
            "hypervisor_hostname": self.host or "fake-host",
            "running_vms": len(running),
            # a stand-in figure: half of each used vCPU busy
            "cpu_utilisation": min(1.0, 0.5 * vcpus_used / max(1, self.totals["vcpus"])),
        }

    def cancel(self, instance_uuid: str) -> bool:
        with self._lock:
            flag = self._in_flight.get(instance_uuid)
        if flag is None:
            return False
        flag.set()
        return True

    def reattach_task(self, op: Operation, task_ref: str, timeout: float) -> ts.TaskState:
        if self.reattach_unavailable > 0:
            self.reattach_unavailable -= 1
            raise exceptions.HypervisorUnavailable("fake://dom0", "connection refused")
        self.reattached.append(task_ref)
        cancel_flag = threading.Event()
        with self._lock:
            self._in_flight[op.instance_uuid] = cancel_flag
        try:
            state = self.task_table.follow(task_ref, timeout, cancel_flag)
        finally:
            with self._lock:
                if self._in_flight.get(op.instance_uuid) is cancel_flag:
                    del self._in_flight[op.instance_uuid]
        listener = self.task_listener
        if listener is not None:
            status = ts.FAILURE if state.status == ts.LOST else state.status
            try:
                listener.task_finished(op, task_ref, status, state.result, state.error)
            except Exception:  # noqa: BLE001 - a listener failure must not fail recovery
                pass
        return state

    # -- internals -------------------------------------------------------------

    def _vm(self, uuid: str) -> FakeVM:
        try:
            return self.vms[uuid]
        except KeyError:
            raise exceptions.InstanceNotFound(uuid) from None

    @staticmethod
    def _info(vm: FakeVM) -> InstanceInfo:
        return InstanceInfo(
            power_state=vm.power_state,
            vm_ref=vm.vm_ref,
            shutdown_reason=vm.shutdown_reason,
            extra={"boots": vm.boots, "last_shutdown_time": vm.shutdown_time},
        )

    def _record_shutdown(self, vm: FakeVM, reason: str | None) -> None:
        vm.shutdown_reason = reason
        if reason is not None:
            vm.shutdown_time = f"shutdown-{next(self._shutdowns)}"

    @staticmethod
    def _boot(vm: FakeVM, why: str) -> None:
        vm.power_state = power_state.RUNNING
        vm.boots += 1
        vm.history.append(why)

    def _task(self, op: Operation, instance: dict[str, Any]) -> FakeTask:
        return FakeTask(self, op, instance)

    def _take_failure(self, op: Operation, instance: dict[str, Any]) -> Exception | None:
        spec = (instance.get("metadata") or {}).get(f"fake:fail:{op.name}")
        if spec:
            code, *params = str(spec).split(",")
            return exceptions.HypervisorError(*params, code=code)
        with self._lock:
            for failure in self._failures.get(op.name, []):
                if failure.instance_uuid not in (None, op.instance_uuid):
                    continue
                if failure.times is not None:
                    failure.times -= 1
                    if failure.times <= 0:
                        self._failures[op.name].remove(failure)
                return failure.error
        return None

    def _delay(self, op: Operation, instance: dict[str, Any]) -> float:
        meta = (instance.get("metadata") or {}).get(f"fake:delay:{op.name}")
        if meta is not None:
            return float(meta)
        return self._delays.get(op.name, 0.0)
