"""The XenAPI driver's pool, migration, maintenance and pool-membership
methods (RPC 1.6): each runs under the operation's scope where it is
long, and hands over to migration.py, pool_view.py or membership.py.
XenAPIDriver inherits them (it provides ``_ops``, ``_timeout`` and the
parts set up in ``_connect``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from compute_agent import exceptions
from compute_agent.driver.base import InstanceInfo, Operation

if TYPE_CHECKING:
    from compute_agent.driver.xenapi.tasks import TaskRunner


class MigrationMethods:
    # Set up by XenAPIDriver._connect.
    migrations: Any
    pool_view: Any
    membership: Any
    pool: Any
    host_info: Any

    def _ops(self) -> tuple[TaskRunner, Any]:  # XenAPIDriver's
        raise NotImplementedError

    def _timeout(self, op: Operation) -> float:  # XenAPIDriver's
        raise NotImplementedError

    def _migrations(self) -> Any:
        self._ops()
        assert self.migrations is not None
        return self.migrations

    def get_pool_status(self) -> dict[str, Any]:
        self._ops()
        assert self.pool_view is not None
        return self.pool_view.status()

    def prepare_live_migration(self, instance: dict[str, Any]) -> dict[str, Any]:
        return self._migrations().prepare(instance)

    def abort_live_migration(self, instance_uuid: str) -> None:
        self._migrations().abort(instance_uuid)

    def live_migrate(self, op: Operation, instance: dict[str, Any],
                     dest: dict[str, Any]) -> str:
        runner = self._ops()[0]
        with runner.operation(op, self._timeout(op)):
            return self._migrations().migrate(op, instance, dest)

    def cold_migrate(self, op: Operation, instance: dict[str, Any],
                     dest: dict[str, Any]) -> str:
        runner = self._ops()[0]
        with runner.operation(op, self._timeout(op)):
            return self._migrations().cold_migrate(op, instance, dest)

    def adopt_instance(self, instance: dict[str, Any]) -> InstanceInfo:
        return self._migrations().adopt(instance)

    # -- host maintenance (issue 12) --------------------------------------------------
    def set_host_enabled(self, enabled: bool) -> None:
        self._ops()
        assert self.pool is not None and self.host_info is not None
        self.pool.call("host.enable" if enabled else "host.disable", self.host_info.host_ref())

    def host_power_action(self, op: Operation, action: str) -> None:
        runner = self._ops()[0]
        assert self.host_info is not None
        method = {"reboot": "host.reboot", "shutdown": "host.shutdown"}.get(action)
        if method is None:
            raise exceptions.InvalidInput("action", "must be reboot or shutdown")
        with runner.operation(op, self._timeout(op)):
            runner.run(op, method, self.host_info.host_ref())

    # -- pools from aggregates (issue 12) --------------------------------------------------
    def join_pool(self, coordinator_address: str, username: str, password: str) -> None:
        self._ops()
        assert self.membership is not None
        self.membership.join(coordinator_address, username, password)

    def leave_pool(self) -> None:
        self._ops()
        assert self.membership is not None
        self.membership.leave()
