"""XenAPIDriver: the ComputeDriver for dom0s spoken to over XenAPI.

Wires the pieces together from ``[xenserver]`` and ``[tasks]`` options: a
session pool, a task runner with its waiter, storage, networking, VM
operations and host figures. Every public method runs under an operation
scope whose deadline is the operation's timeout.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from compute_agent import exceptions
from compute_agent.conf import CONF
from compute_agent.driver.base import ComputeDriver, InstanceInfo, Operation, TaskListener
from compute_agent.driver.xenapi.host import HostInfo
from compute_agent.driver.xenapi.network import Networking
from compute_agent.driver.xenapi.session import ConnectionSettings, SessionPool
from compute_agent.driver.xenapi.storage import Storage, parse_sr_filter
from compute_agent.driver.xenapi.tasks import PollingWaiter, TaskRunner, TaskWaiter
from compute_agent.driver.xenapi.transport import TLSSettings
from compute_agent.driver.xenapi.vm_ops import VMOps

LOG = logging.getLogger(__name__)

# Operation name -> [tasks] option holding its timeout.
TIMEOUT_OPTIONS = {
    "spawn": "spawn_timeout",
    "power_on": "power_timeout",
    "power_off": "power_timeout",
    "reboot": "reboot_timeout",
    "destroy": "destroy_timeout",
}


def operation_timeout(op: Operation, conf: Any = CONF) -> float:
    if op.timeout is not None:
        return float(op.timeout)
    option = TIMEOUT_OPTIONS.get(op.name, "default_timeout")
    return float(getattr(conf.tasks, option))


def settings_from_conf(conf: Any = CONF) -> ConnectionSettings:
    xs = conf.xenserver
    if not xs.connection_url:
        raise exceptions.InvalidInput(
            "xenserver.connection_url", "must be set when compute_driver is xenapi"
        )
    return ConnectionSettings(
        url=xs.connection_url,
        username=xs.connection_username,
        password=xs.connection_password or "",
        login_timeout=float(xs.login_timeout),
        tls=TLSSettings(ca_file=xs.ca_file or None, insecure=bool(xs.insecure)),
    )


class XenAPIDriver(ComputeDriver):
    def __init__(self, task_listener: TaskListener | None = None):
        super().__init__(task_listener)
        self.pool: SessionPool | None = None
        self.runner: TaskRunner | None = None
        self.vmops: VMOps | None = None
        self.host_info: HostInfo | None = None
        self.host: str | None = None
        self._closed = threading.Event()

    # -- lifecycle -------------------------------------------------------------
    def init_host(self, host: str) -> None:
        self.host = host
        try:
            sr_filter = parse_sr_filter(CONF.xenserver.sr_matching_filter)
        except ValueError as e:
            raise exceptions.InvalidInput("xenserver.sr_matching_filter", str(e)) from None
        self.pool = SessionPool(settings_from_conf(), CONF.xenserver.connection_concurrent)
        waiter = self._make_waiter(self.pool)
        self.runner = TaskRunner(
            self.pool, waiter, self.task_listener, float(CONF.tasks.default_timeout)
        )
        storage = Storage(self.pool, self.runner, sr_filter, host)
        self.vmops = VMOps(
            self.pool, self.runner, storage, Networking(self.pool), host,
            CONF.xenserver.vm_template or "",
        )
        self.host_info = HostInfo(self.pool, storage)
        # Fail now, with a clear error, if dom0 cannot be reached.
        self.pool.call("pool.get_all")
        LOG.info("XenAPI driver connected to %s", self.pool.coordinator.url)

    def _make_waiter(self, pool: SessionPool) -> TaskWaiter:
        return PollingWaiter(pool, max_interval=float(CONF.tasks.poll_interval))

    def cleanup_host(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            if self.runner is not None:
                self.runner.close()
        finally:
            if self.pool is not None:
                self.pool.close()

    def _ops(self) -> tuple[TaskRunner, VMOps]:
        if self.runner is None or self.vmops is None:
            raise exceptions.HypervisorUnavailable(
                CONF.xenserver.connection_url or "", "driver not initialised (init_host)"
            )
        return self.runner, self.vmops

    # -- instance operations -------------------------------------------------------
    def spawn(self, op: Operation, instance: dict[str, Any]) -> InstanceInfo:
        runner, vmops = self._ops()
        with runner.operation(op, operation_timeout(op)):
            return vmops.spawn(op, instance)

    def power_on(self, op: Operation, instance: dict[str, Any]) -> None:
        runner, vmops = self._ops()
        with runner.operation(op, operation_timeout(op)):
            vmops.power_on(op, instance)

    def power_off(self, op: Operation, instance: dict[str, Any], clean: bool = True,
                  timeout: float = 60) -> None:
        runner, vmops = self._ops()
        with runner.operation(op, operation_timeout(op)):
            vmops.power_off(op, instance, clean, timeout)

    def reboot(self, op: Operation, instance: dict[str, Any], reboot_type: str) -> None:
        runner, vmops = self._ops()
        with runner.operation(op, operation_timeout(op)):
            vmops.reboot(op, instance, reboot_type)

    def destroy(self, op: Operation, instance: dict[str, Any]) -> None:
        runner, vmops = self._ops()
        with runner.operation(op, operation_timeout(op)):
            vmops.destroy(op, instance)

    # -- queries ---------------------------------------------------------------------
    def get_info(self, instance: dict[str, Any]) -> InstanceInfo:
        return self._ops()[1].get_info(instance)

    def list_instance_uuids(self) -> list[str]:
        return self._ops()[1].list_instance_uuids()

    def get_host_resources(self) -> dict[str, Any]:
        self._ops()
        assert self.host_info is not None
        return self.host_info.resources()

    def cancel(self, instance_uuid: str) -> bool:
        return self._ops()[0].cancel(instance_uuid)
