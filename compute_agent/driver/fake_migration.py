"""The fake driver's pools and live migration: every FakeDriver of one
process is a standalone host in a fleet (FLEET, by agent host name), and a
live migration moves the in-memory VM from one driver to another.

Steering as for the fake's other operations: ``fake:fail:live_migrate`` /
``fake:delay:live_migrate`` in the instance metadata, inject_failure,
set_delay and hold with the operation name ``live_migrate``. A destination
in another process cannot be reached (CANNOT_CONTACT_HOST).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.base import InstanceInfo, Operation

# agent host -> its fake driver, for the drivers of this process
FLEET: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_FLEET_LOCK = threading.Lock()


class FakeMigrationMixin:
    """Mixed into FakeDriver (which provides host, vms, _lock, _task, _vm, _info)."""

    host: str | None
    vms: dict[str, Any]

    def _join_fleet(self) -> None:
        with _FLEET_LOCK:
            FLEET[self.host or ""] = self

    joined: str | None = None  # the coordinator address join_pool named

    def get_pool_status(self) -> dict[str, Any]:
        if self.joined:
            return {"uuid": f"fake-pool-{self.joined}", "name": self.joined, "role": "member",
                    "hosts": [{"name": self.host, "address": "", "uuid": self.host,
                               "enabled": True, "live": True, "coordinator": False,
                               "this_host": True}]}
        return {"uuid": f"fake-pool-{self.host}", "name": f"{self.host}", "role": "coordinator",
                "hosts": [{"name": self.host, "address": "", "uuid": self.host, "enabled": True,
                           "live": True, "coordinator": True, "this_host": True}]}

    def join_pool(self, coordinator_address: str, username: str, password: str) -> None:
        if self.joined:
            raise exceptions.HypervisorError(code="JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS")
        self.joined = coordinator_address

    def leave_pool(self) -> None:
        if not self.joined:
            raise exceptions.HypervisorError("the host is not a pool member",
                                             code="OPERATION_NOT_ALLOWED")
        self.joined = None

    def prepare_live_migration(self, instance: dict[str, Any]) -> dict[str, Any]:
        return {"pool_uuid": f"fake-pool-{self.host}", "host_ref": self.host,
                "host_uuid": self.host, "sr": "fake-sr", "network": "fake-net",
                "agent_host": self.host, "token": {"fake": "token"}}

    def abort_live_migration(self, instance_uuid: str) -> None:
        return None

    def live_migrate(self, op: Operation, instance: dict[str, Any],
                     dest: dict[str, Any]) -> str:
        with self._task(op, instance):  # type: ignore[attr-defined]
            with _FLEET_LOCK:
                target = FLEET.get(dest.get("agent_host") or "")
            if target is None:
                raise exceptions.HypervisorError(str(dest.get("agent_host")),
                                                 code="CANNOT_CONTACT_HOST")
            with self._lock:  # type: ignore[attr-defined]
                vm = self._vm(instance["uuid"])  # type: ignore[attr-defined]
                vm.history.append(f"live_migrate:{target.host}")
                del self.vms[instance["uuid"]]
            with target._lock:
                target.vms[instance["uuid"]] = vm
            return vm.vm_ref

    def cold_migrate(self, op: Operation, instance: dict[str, Any],
                     dest: dict[str, Any]) -> str:
        with self._lock:  # type: ignore[attr-defined]
            if self._vm(instance["uuid"]).power_state != 4:  # type: ignore[attr-defined]
                raise exceptions.HypervisorError(instance["uuid"], "Halted",
                                                 code="VM_BAD_POWER_STATE")
        return self.live_migrate(op, instance, dest)

    def adopt_instance(self, instance: dict[str, Any]) -> InstanceInfo:
        with self._lock:  # type: ignore[attr-defined]
            return self._info(self._vm(instance["uuid"]))  # type: ignore[attr-defined]

    # -- host maintenance ------------------------------------------------------------
    host_enabled = True

    def set_host_enabled(self, enabled: bool) -> None:
        self.host_enabled = bool(enabled)

    def host_power_action(self, op: Operation, action: str) -> None:
        if action not in ("reboot", "shutdown"):
            raise exceptions.InvalidInput("action", "must be reboot or shutdown")
        with self._lock:  # type: ignore[attr-defined]
            if self.host_enabled:
                raise exceptions.HypervisorError(code="HOST_NOT_DISABLED")
            running = [u for u, vm in self.vms.items() if vm.power_state == 1]
            if running:
                raise exceptions.HypervisorError(self.host or "", "VM", running[0],
                                                 code="HOST_IN_USE")
        if action == "reboot":
            self.host_enabled = True

