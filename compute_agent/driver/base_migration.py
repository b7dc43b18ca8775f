"""The part of the driver interface (driver/base.py) for pools, live and
cold migration, host maintenance and pool membership (RPC 1.6).
ComputeDriver inherits it; every method's contract is in its docstring.
Drivers that cannot do these raise NotImplementedError; the manager answers
OPERATION_NOT_SUPPORTED [operation, driver].
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compute_agent.driver.base import InstanceInfo, Operation


class MigrationOperations:

    def get_pool_status(self) -> dict[str, Any]:
        """The pool the agent's host belongs to: ``{uuid, name, role
        ('coordinator' | 'member'), hosts: [{name, address, uuid, enabled,
        live, coordinator, this_host}]}``. A driver without pools raises
        NotImplementedError (the status then has no pool)."""
        raise NotImplementedError

    def prepare_live_migration(self, instance: dict[str, Any]) -> dict[str, Any]:
        """On the DESTINATION agent: get ready to receive ``instance``'s VM
        on this host. Returns ``{pool_uuid, host_ref, host_uuid, sr, network,
        agent_host, token}``: where the VM goes, the SR its disks and the
        network its VIFs map to, and the hypervisor's migration token (a
        secret: it carries a session; never log or store it). The token
        stays valid until :meth:`adopt_instance` or
        :meth:`abort_live_migration`. Raises HypervisorError (e.g.
        HOST_DISABLED) when this host cannot take it."""
        raise NotImplementedError

    def abort_live_migration(self, instance_uuid: str) -> None:
        """On the DESTINATION agent: forget a prepared migration (its token
        stops working). Idempotent."""
        raise NotImplementedError

    def live_migrate(self, op: Operation, instance: dict[str, Any],
                     dest: dict[str, Any]) -> str:
        """On the SOURCE agent: move the running VM to ``dest`` (what the
        destination's prepare_live_migration answered), live. Inside a pool
        with shared storage only the VM moves; otherwise its disks go to
        ``dest['sr']`` (and, across pools, its VIFs to ``dest['network']``).
        Returns the VM's handle at the destination. On failure the VM is
        still running here (the hypervisor's refusal as HypervisorError:
        VM_MIGRATE_FAILED, HOST_NOT_ENOUGH_FREE_MEMORY, VDI_NOT_IN_MAP,
        VM_HOST_INCOMPATIBLE_VERSION_MIGRATE, ...)."""
        raise NotImplementedError

    def cold_migrate(self, op: Operation, instance: dict[str, Any],
                     dest: dict[str, Any]) -> str:
        """On the SOURCE agent: move the HALTED VM to ``dest`` (what the
        destination's prepare_live_migration answered). Inside a pool with
        shared storage only its placement changes (affinity); otherwise
        its disks go to ``dest['sr']`` (and, across pools, its VIFs to
        ``dest['network']``), and it is placed on the destination host.
        Returns the VM's handle at the destination. On failure the VM is
        still here (the hypervisor's refusal as HypervisorError)."""
        raise NotImplementedError

    def adopt_instance(self, instance: dict[str, Any]) -> InstanceInfo:
        """On the DESTINATION agent, after a migration: the instance's VM,
        which must be on this host, becomes this agent's own (its marks and
        its disks' name this agent). Returns its info. Raises
        InstanceNotFound when there is no VM, HypervisorError
        VM_NOT_ON_THIS_HOST when it runs elsewhere."""
        raise NotImplementedError

    # -- issue 12: host maintenance ---------------------------------------------------

    def set_host_enabled(self, enabled: bool) -> None:
        """Let the hypervisor place new VMs on this agent's host (True) or
        not (False: xapi's host.disable). Running VMs are not touched."""
        raise NotImplementedError

    def host_power_action(self, op: Operation, action: str) -> None:
        """Reboot ('reboot') or power off ('shutdown') this agent's host, as
        a tracked hypervisor task. Only a disabled host without guests:
        HypervisorError HOST_NOT_DISABLED, HOST_IN_USE [host, 'VM', vm]."""
        raise NotImplementedError

    # -- issue 12: pools from aggregates ------------------------------------------------

    def join_pool(self, coordinator_address: str, username: str, password: str) -> None:
        """Make this agent's (standalone) host a member of the pool whose
        coordinator is at ``coordinator_address``, logging in there with
        ``username`` / ``password`` (a secret: never logged, scrubbed from
        errors). Returns once the driver follows the host's new role.
        Raises the hypervisor's refusals (e.g.
        JOINING_HOST_CANNOT_HAVE_RUNNING_OR_SUSPENDED_VMS,
        POOL_JOINING_HOST_MUST_HAVE_SAME_PRODUCT_VERSION)."""
        raise NotImplementedError

    def leave_pool(self) -> None:
        """Eject this agent's host from its pool; it comes back standalone
        (its local disks are lost, as on xapi). Returns once the driver
        talks to the standalone host again."""
        raise NotImplementedError
