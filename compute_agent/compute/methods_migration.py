"""The manager's RPC 1.6 methods: live and cold migration (with resize to
another host), host maintenance, power actions and pools. Each hands its
request to compute/migration.py, cross_resize.py, maintenance.py or
pools.py. A mixin of ComputeManager (manager.py), which builds those parts."""

from __future__ import annotations

import threading
from typing import Any

from compute_agent.compute.migration import COLD
from compute_agent.context import RequestContext


class MigrationMethods:
    # Set up by ComputeManager.__init__.
    migrations: Any
    maintenance: Any
    pools: Any
    conf: Any
    _cross_resizes: Any
    _peers: Any
    _peers_lock: threading.Lock

    def live_migrate_instance(self, ctxt: RequestContext, instance_uuid: Any,
                              dest_host: Any) -> dict[str, Any]:
        """Move the running instance to the agent ``dest_host`` (cast)."""
        return self.migrations.accept(ctxt, instance_uuid, dest_host)

    def migrate_instance(self, ctxt: RequestContext, instance_uuid: Any, dest_host: Any,
                         flavor: Any = None) -> dict[str, Any]:
        """Move the stopped instance (VM and disks) to the agent
        ``dest_host`` (cast); it stays stopped there. With a ``flavor`` the
        destination then resizes it: ``resized``, to confirm or revert
        there (compute/cross_resize.py)."""
        if flavor is not None:
            return self._cross_resizes.accept(ctxt, instance_uuid, dest_host, flavor)
        return self.migrations.accept(ctxt, instance_uuid, dest_host, kind=COLD)

    def prepare_live_migration(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        """Destination side: get ready to receive the instance's VM."""
        return self.migrations.prepare(ctxt, instance_uuid)

    def adopt_instance(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        """Destination side: the instance's VM runs here now; take it over."""
        return self.migrations.adopt(ctxt, instance_uuid)

    def abort_live_migration(self, ctxt: RequestContext, instance_uuid: Any) -> None:
        """Destination side: forget a prepared migration."""
        self.migrations.abort(ctxt, instance_uuid)

    def set_host_enabled(self, ctxt: RequestContext, enabled: Any) -> dict[str, Any]:
        """Take this host out of scheduling (False) or back in (True)."""
        return self.maintenance.set_enabled(ctxt, enabled)

    def set_host_maintenance(self, ctxt: RequestContext, enabled: Any,
                             dest_hosts: Any = None) -> dict[str, Any]:
        """Disable the host and live-migrate every instance off it (True),
        or end maintenance (False). Returns the maintenance status."""
        return self.maintenance.set_maintenance(ctxt, enabled, dest_hosts)

    def host_power_action(self, ctxt: RequestContext, action: Any) -> dict[str, Any]:
        """Reboot or shut down this (disabled, empty) host."""
        return self.maintenance.power_action(ctxt, action)

    def join_pool(self, ctxt: RequestContext, coordinator_address: Any, username: Any,
                  password: Any) -> dict[str, Any]:
        """Make this (empty, standalone) host a member of a pool."""
        return self.pools.join(ctxt, coordinator_address, username, password)

    def leave_pool(self, ctxt: RequestContext) -> dict[str, Any]:
        """Eject this (empty) host from its pool."""
        return self.pools.leave(ctxt)

    def peers(self) -> Any:
        """The RPC client this agent uses to talk to other agents."""
        with self._peers_lock:
            if self._peers is None:
                from compute_agent.rpc.rpcapi import ComputeAPI

                self._peers = ComputeAPI(self.conf)
            return self._peers
