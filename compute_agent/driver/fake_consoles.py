"""The fake driver's consoles and metrics (issue 11), kept apart from
fake.py: a console location per running VM, a console log made from the
VM's boot history, and steady figures derived from its flavor, so unit
tests of the manager can check the shapes the XenAPI driver gives."""

from __future__ import annotations

import time
from typing import Any

from compute_agent import exceptions
from compute_agent.driver import power_state

_RUNNING = (power_state.RUNNING, power_state.PAUSED)


class FakeConsoles:
    """Mixed into FakeDriver, which provides ``vms``, ``_vm`` and ``_lock``."""

    vms: dict[str, Any]
    host: str | None

    def _vm(self, uuid: str) -> Any:  # pragma: no cover - FakeDriver's
        raise NotImplementedError

    def _running_vm(self, instance: dict[str, Any]) -> Any:
        vm = self._vm(instance["uuid"])
        if vm.power_state not in _RUNNING:
            raise exceptions.ConsoleNotAvailable(instance["uuid"], f"power state {vm.power_state}")
        return vm

    def get_vnc_console(self, instance: dict[str, Any]) -> dict[str, Any]:
        vm = self._running_vm(instance)
        return {"location": f"http://fake-dom0.invalid/console?uuid={vm.vm_ref}",
                "vm_uuid": vm.vm_ref}

    def get_console_output(self, instance: dict[str, Any], max_bytes: int) -> bytes:
        vm = self._running_vm(instance)
        lines = [f"[{i:4d}] {vm.name}: {why}" for i, why in enumerate(vm.history)]
        lines.append(f"{vm.name} login:")
        return ("\n".join(lines) + "\n").encode()[-max_bytes:]

    @staticmethod
    def _figures(vm: Any) -> dict[str, Any]:
        cpus = [0.25] * vm.vcpus
        return {"vm_uuid": vm.vm_ref,
                "cpu": {"count": vm.vcpus, "utilisation": cpus, "average": 0.25},
                "memory": {"total_bytes": vm.memory_mb * 1024 * 1024,
                           "free_bytes": vm.memory_mb * 1024 * 1024 // 2},
                "disks": [{"device": "xvda", "read_bytes_per_second": 0.0,
                           "write_bytes_per_second": 0.0}],
                "nics": [{"device": "0", "rx_bytes_per_second": 0.0,
                          "tx_bytes_per_second": 0.0}]}

    def poll_metrics(self) -> dict[str, Any]:
        vms = [v for v in list(self.vms.values()) if v.power_state in _RUNNING]
        return {
            "host_uuid": f"fake-host-{self.host}", "sampled_at": time.time(), "step": 5,
            "host": {"cpu": {"count": 16, "utilisation": [0.1] * 16, "average": 0.1},
                     "memory": {"total_bytes": 32 << 30, "free_bytes": 16 << 30},
                     "load_average": 0.5, "nics": []},
            "instances": {v.uuid: self._figures(v) for v in vms},
        }

    def get_diagnostics(self, instance: dict[str, Any]) -> dict[str, Any]:
        vm = self._vm(instance["uuid"])
        if vm.power_state not in _RUNNING:
            raise exceptions.InstanceNotRunning(instance["uuid"], f"power state {vm.power_state}")
        return {"sampled_at": time.time(), "step": 5, **self._figures(vm)}
