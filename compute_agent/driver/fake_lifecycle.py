"""The fake driver's pause, suspend, rescue and resize (RPC 1.2): the same
contracts as driver/base.py, on FakeVM entries, with the fake driver's
delays, gates, failures and task reports (``<op>`` names: pause, unpause,
suspend, resume, rescue, unrescue, resize, confirm_resize, revert_resize).

A rescue is remembered as the power state the VM had before it; a resize as
the old flavor and power state, until it is confirmed or reverted.
"""

from __future__ import annotations

from typing import Any

from compute_agent import exceptions
from compute_agent.driver import power_state
from compute_agent.driver.base import InstanceInfo, Operation


class FakeLifecycle:
    """Mixed into FakeDriver (which provides _task, _vm, _lock, _boot, _info)."""

    def _lifecycle_state(self) -> tuple[dict[str, int], dict[str, tuple[dict, int]]]:
        if not hasattr(self, "_rescues"):
            self._rescues: dict[str, int] = {}
            self._resizes: dict[str, tuple[dict, int]] = {}
        return self._rescues, self._resizes

    def _expect(self, vm: Any, *allowed: int) -> None:
        if vm.power_state not in allowed:
            raise exceptions.HypervisorError(
                vm.vm_ref, ", ".join(power_state.name(p) for p in allowed),
                power_state.name(vm.power_state), code="VM_BAD_POWER_STATE")

    def _change(self, op: Operation, instance: dict[str, Any], allowed: tuple[int, ...],
                to: int) -> None:
        with self._task(op, instance):
            with self._lock:
                vm = self._vm(instance["uuid"])
                self._expect(vm, *allowed)
                vm.power_state = to
                vm.history.append(op.name)

    def pause(self, op: Operation, instance: dict[str, Any]) -> None:
        self._change(op, instance, (power_state.RUNNING,), power_state.PAUSED)

    def unpause(self, op: Operation, instance: dict[str, Any]) -> None:
        self._change(op, instance, (power_state.PAUSED,), power_state.RUNNING)

    def suspend(self, op: Operation, instance: dict[str, Any]) -> None:
        self._change(op, instance, (power_state.RUNNING,), power_state.SUSPENDED)

    def resume(self, op: Operation, instance: dict[str, Any]) -> None:
        self._change(op, instance, (power_state.SUSPENDED,), power_state.RUNNING)

    # -- rescue ----------------------------------------------------------------------

    def rescue(self, op: Operation, instance: dict[str, Any],
               rescue_image: dict[str, Any] | None) -> None:
        rescues, _ = self._lifecycle_state()
        with self._task(op, instance):
            with self._lock:
                vm = self._vm(instance["uuid"])
                rescues.setdefault(instance["uuid"], vm.power_state)
                vm.power_state = power_state.SHUTDOWN
                vm.history.append("rescue")

    def unrescue(self, op: Operation, instance: dict[str, Any],
                 restore_power: bool = False) -> None:
        rescues, _ = self._lifecycle_state()
        with self._task(op, instance):
            with self._lock:
                vm = self._vm(instance["uuid"])
                before = rescues.pop(instance["uuid"], power_state.RUNNING)
                vm.history.append("unrescue")
                if not restore_power or before == power_state.RUNNING:
                    vm.power_state = power_state.RUNNING
                    vm.boots += 1

    def rescue_info(self, instance: dict[str, Any], info: InstanceInfo) -> InstanceInfo:
        """A rescued instance reports its (always running) rescue VM."""
        rescues, _ = self._lifecycle_state()
        if instance.get("vm_state") == "rescued" and instance["uuid"] in rescues:
            return InstanceInfo(power_state.RUNNING, info.vm_ref, info.shutdown_reason,
                                {**info.extra, "rescue_vm": "fake-rescue"})
        return info

    # -- resize ----------------------------------------------------------------------

    def resize(self, op: Operation, instance: dict[str, Any], flavor: dict[str, Any]) -> None:
        _, resizes = self._lifecycle_state()
        with self._task(op, instance):
            with self._lock:
                vm = self._vm(instance["uuid"])
                if int(flavor["root_gb"]) < vm.root_gb:
                    raise exceptions.HypervisorError(vm.vm_ref, str(vm.root_gb * 1024**3),
                                                     code="VDI_TOO_SMALL")
                old = {"vcpus": vm.vcpus, "memory_mb": vm.memory_mb, "root_gb": vm.root_gb}
                resizes[instance["uuid"]] = (old, vm.power_state)
                vm.vcpus, vm.memory_mb = int(flavor["vcpus"]), int(flavor["memory_mb"])
                vm.root_gb = int(flavor["root_gb"])
                vm.history.append("resize")

    def confirm_resize(self, op: Operation, instance: dict[str, Any]) -> None:
        _, resizes = self._lifecycle_state()
        with self._task(op, instance):
            with self._lock:
                self._vm(instance["uuid"])
                resizes.pop(instance["uuid"], None)

    def revert_resize(self, op: Operation, instance: dict[str, Any]) -> dict[str, Any] | None:
        _, resizes = self._lifecycle_state()
        with self._task(op, instance):
            with self._lock:
                vm = self._vm(instance["uuid"])
                kept = resizes.pop(instance["uuid"], None)
                if kept is not None:
                    old, power = kept
                    vm.vcpus, vm.memory_mb = old["vcpus"], old["memory_mb"]
                    vm.root_gb = old["root_gb"]
                    vm.power_state = power
                    vm.history.append("revert_resize")
                return {"flavor": {"vcpus": vm.vcpus, "memory_mb": vm.memory_mb,
                                   "root_gb": vm.root_gb}}
