"""The one driver interface the manager talks to.

Every method's contract is in its docstring; drivers (fake, xenapi, ...) live
behind it. A driver never touches the database: what it learns about
hypervisor tasks it reports through the :class:`TaskListener` the manager
hands it, and what it learns about power state changes it reports through the
callback given to :meth:`ComputeDriver.set_power_state_listener`.

ComputeDriver holds the driver's own lifecycle, the core instance
operations, snapshots, queries and recovery; it inherits the families added
later from one module each: base_lifecycle (pause, suspend, rescue, resize:
RPC 1.2), base_devices (volumes, ports, guest: 1.4), base_consoles
(consoles, metrics: 1.5) and base_migration (pools, migration, host
maintenance: 1.6).

Errors: a driver raises :class:`compute_agent.exceptions.ComputeAgentError`
subclasses only. Errors from dom0 come as ``HypervisorError`` (code and params
exactly as XenAPI gives them), an unreachable dom0 as
``HypervisorUnavailable(url, reason)``, an unknown VM as
``InstanceNotFound(uuid)``, an expired timeout as
``OperationTimedOut(operation, uuid, seconds)`` and a cancelled operation as
``OperationCancelled(operation, uuid)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from compute_agent import exceptions
from compute_agent.driver.base_consoles import ConsoleOperations
from compute_agent.driver.base_devices import DeviceOperations
from compute_agent.driver.base_lifecycle import LifecycleOperations
from compute_agent.driver.base_migration import MigrationOperations
from compute_agent.driver.task_status import TaskState

# Reboot types accepted by ComputeDriver.reboot.
REBOOT_SOFT = "SOFT"
REBOOT_HARD = "HARD"
REBOOT_TYPES = (REBOOT_SOFT, REBOOT_HARD)

# Instance operations a driver may implement (capabilities() lists those it does).
INSTANCE_OPERATIONS = ("spawn", "power_on", "power_off", "reboot", "destroy", "pause",
                       "unpause", "suspend", "resume", "rescue", "unrescue", "resize",
                       "confirm_resize", "revert_resize", "snapshot", "live_migrate")

# Keys of the dict get_host_resources returns (the compute_nodes columns).
HOST_RESOURCE_KEYS = (
    "vcpus",
    "vcpus_used",
    "memory_mb",
    "memory_mb_used",
    "free_memory_mb",
    "local_gb",
    "local_gb_used",
    "hypervisor_type",
    "hypervisor_version",
    "hypervisor_hostname",
    "running_vms",
    "cpu_utilisation",
)


@dataclass
class InstanceInfo:
    """What the hypervisor says about one instance's VM.

    ``power_state`` is one of :mod:`compute_agent.driver.power_state`;
    ``vm_ref`` the hypervisor's handle (an OpaqueRef for xapi) or None;
    ``shutdown_reason`` the last reason the guest went down (e.g. xapi's
    ``other_config``/``VM_metrics`` reason: 'halted', 'crashed', 'rebooted') or
    None; ``extra`` anything driver specific that is useful in logs.
    """

    power_state: int
    vm_ref: str | None = None
    shutdown_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Operation:
    """One request's work on one instance, as the driver sees it.

    ``name`` is the operation kind ('spawn', 'power_on', 'power_off',
    'reboot', 'destroy', ...), used to pick a timeout and to label tracked
    tasks. ``request_id`` is the RPC request's id (so tracked tasks and logs
    can be tied to the instance action). ``timeout`` in seconds, or None for
    the driver's configured default for this kind of operation.
    """

    instance_uuid: str
    name: str
    request_id: str
    timeout: float | None = None


class TaskListener(Protocol):
    """Implemented by the manager: persists what the driver does in dom0.

    Principle 3 without holes: the driver calls ``task_intent`` BEFORE an
    ``Async.*`` call (it returns a placeholder ref), and ``task_started``
    right after the call returns a task ref, with that placeholder as
    ``intent`` (the row is bound to the real ref), BEFORE it waits on the
    task; an agent killed at any moment leaves a row recovery resolves.
    These two raise TaskNotRecorded when the record cannot be written: the
    driver then does not make the call, or cancels the task it started.
    ``task_not_started`` closes an intent whose call dom0 refused.
    ``task_progress`` is called as progress changes (the driver may call it
    often; the listener throttles writes). ``task_finished`` is called once
    with status 'success', 'failure' or 'cancelled', the decoded result
    (success) or the XenAPI error list (failure). Progress and end must not
    raise: losing one must not fail the operation.
    """

    def task_intent(self, op: Operation, method: str) -> str: ...

    def task_started(
        self, op: Operation, task_ref: str, task_uuid: str, dom0_host: str,
        intent: str | None = None,
    ) -> None: ...

    def task_not_started(self, op: Operation, intent: str, error: list | None) -> None: ...

    def task_progress(self, op: Operation, task_ref: str, progress: float) -> None: ...

    def task_finished(
        self,
        op: Operation,
        task_ref: str,
        status: str,
        result: str | None,
        error: list | None,
    ) -> None: ...


PowerStateListener = Callable[[str, InstanceInfo], None]


class ComputeDriver(LifecycleOperations, DeviceOperations, MigrationOperations,
                    ConsoleOperations):
    """Base class of every compute driver.

    Instance dicts passed in carry at least: ``uuid``, ``name``,
    ``flavor`` ``{vcpus, memory_mb, root_gb}``, ``image``
    ``{id, url, disk_format}`` (``url`` may be None: a blank root disk),
    ``networks`` (list) and ``metadata`` (dict). Drivers must treat them as
    read-only.

    Concurrency: the manager calls at most one mutating operation per
    instance at a time (it holds a per-instance lock), but calls for
    different instances arrive concurrently from several threads (or green
    threads under eventlet); drivers must be safe for that.
    """

    def __init__(self, task_listener: TaskListener | None = None):
        self.task_listener = task_listener
        self.power_state_listener: PowerStateListener | None = None
        self.reconnect_listener: Callable[[], None] | None = None

    # -- lifecycle of the driver itself ------------------------------------

    def init_host(self, host: str) -> None:
        """Connect to the hypervisor for agent host ``host`` and get ready.

        Called once when the service starts, before any other method.
        Raises HypervisorUnavailable when the hypervisor cannot be reached,
        unless the driver keeps trying in the background (then ``available``
        is False until it connects, and the reconnect listener is called
        once it has).
        """
        raise NotImplementedError

    @property
    def available(self) -> bool:
        """Whether the hypervisor can be reached now. A driver that started
        without it (init_host does not fail for an unreachable hypervisor
        when the driver can connect later) answers False until it connects;
        the manager then refuses work that needs it with
        HYPERVISOR_UNAVAILABLE."""
        return True

    def cleanup_host(self) -> None:
        """Release connections and threads (logout of sessions). Called once
        on shutdown; must not raise and must be safe to call twice."""
        raise NotImplementedError

    # -- instance operations -----------------------------------------------

    def spawn(self, op: Operation, instance: dict[str, Any]) -> InstanceInfo:
        """Create the VM for ``instance`` (root disk of ``flavor.root_gb``:
        blank, or ``image``'s grown to it; vcpus, memory, networks) and
        start it. Returns the running VM's info. Image errors: IMAGE_*.

        If a VM for this uuid already exists (a retried build), the driver
        reuses it rather than creating a second one. On failure the driver
        removes whatever it created before raising.
        """
        raise NotImplementedError

    def power_on(self, op: Operation, instance: dict[str, Any]) -> None:
        """Start a halted VM. A VM that is already running is not an error.
        Raises InstanceNotFound if there is no VM."""
        raise NotImplementedError

    def power_off(
        self, op: Operation, instance: dict[str, Any], clean: bool = True, timeout: float = 60
    ) -> None:
        """Stop the VM. ``clean``: ask the guest to shut down and fall back to
        a hard shutdown if it has not halted within ``timeout`` seconds (or
        refuses); otherwise hard shutdown at once. A VM that is already halted
        is not an error. Raises InstanceNotFound if there is no VM."""
        raise NotImplementedError

    def reboot(self, op: Operation, instance: dict[str, Any], reboot_type: str) -> None:
        """Reboot the VM: ``reboot_type`` is 'SOFT' (clean, via the guest) or
        'HARD' (reset). A SOFT reboot of a guest that cannot do it falls back
        to HARD. A halted VM is started. Raises InstanceNotFound if no VM."""
        raise NotImplementedError

    def destroy(self, op: Operation, instance: dict[str, Any]) -> None:
        """Shut the VM down hard and remove it and its disks (VDIs), leaving
        nothing behind. Idempotent: a missing VM is success."""
        raise NotImplementedError

    # -- snapshots and the image cache ----------------------------------------
    # (pause, suspend, rescue and resize, RPC 1.2: base_lifecycle.py)

    def snapshot(self, op: Operation, instance: dict[str, Any],
                 upload: Callable[[Iterable[bytes]], None]) -> None:
        """Take a crash-consistent snapshot of the instance's root disk
        (the VM keeps running) and hand its data, as a VHD, to
        ``upload(chunks)``: an iterable of byte strings, each of bounded
        size, never the whole disk in memory. Whatever happens, nothing of
        the snapshot is left in the hypervisor afterwards. Raises
        InstanceNotFound without a VM; an error ``upload`` raises
        propagates. Drivers that cannot snapshot keep this default:
        OPERATION_NOT_SUPPORTED ["snapshot", driver]."""
        raise self._unsupported("snapshot")

    def discard_snapshots(self, op: Operation, instance: dict[str, Any]) -> int:
        """Remove what an interrupted ``snapshot`` of the instance left in
        the hypervisor (recovery); returns how many snapshots. Idempotent."""
        return 0

    def manage_image_cache(self, max_unused_age: float) -> int:
        """Remove cached images no disk comes from and no build used for
        ``max_unused_age`` s; return how many (0: no image cache)."""
        return 0

    # -- queries -------------------------------------------------------------

    def get_info(self, instance: dict[str, Any]) -> InstanceInfo:
        """The VM's current power state and shutdown reason. Raises
        InstanceNotFound when there is no VM for the instance."""
        raise NotImplementedError

    def list_instance_uuids(self) -> list[str]:
        """The instance uuids of every VM this agent owns in the hypervisor
        (marked as the agent's own when created), running or not."""
        raise NotImplementedError

    def list_instance_infos(self) -> dict[str, InstanceInfo]:
        """Instance uuid -> get_info() of every VM this agent owns, for the
        periodic jobs and the host status: a driver that can should read
        them in one call to the hypervisor (not one per instance). This
        default asks for each."""
        out: dict[str, InstanceInfo] = {}
        for uuid in self.list_instance_uuids():
            try:
                out[uuid] = self.get_info({"uuid": uuid})
            except exceptions.InstanceNotFound:
                continue
        return out

    def get_host_resources(self) -> dict[str, Any]:
        """Host capacity and usage, with exactly the keys in
        HOST_RESOURCE_KEYS: vcpus, vcpus_used, memory_mb, memory_mb_used,
        free_memory_mb, local_gb, local_gb_used (ints), hypervisor_type,
        hypervisor_version, hypervisor_hostname (str), running_vms (int),
        cpu_utilisation (the host's CPUs' average busy fraction, 0..1, over the
        last metrics interval; None when unknown)."""
        raise NotImplementedError

    def capabilities(self) -> dict[str, Any]:
        """What this driver can do, for get_host_status: at least ``driver``
        (its name) and ``operations`` (the instance operations it
        implements); drivers add what they know of their hypervisor."""
        own = [name for name in INSTANCE_OPERATIONS
               if getattr(type(self), name, None) is not getattr(ComputeDriver, name, None)]
        return {"driver": type(self).__name__, "operations": own}

    # -- issue 4: cancellation and power events -------------------------------

    def cancel(self, instance_uuid: str) -> bool:
        """Ask the hypervisor to cancel the task in flight for the instance.
        Returns True if a cancel was sent, False if nothing was in flight.
        The operation itself then ends (in its own thread) with
        OperationCancelled or, if the task finished first, normally."""
        raise NotImplementedError

    def set_power_state_listener(self, cb: PowerStateListener | None) -> None:
        """Register ``cb(instance_uuid, InstanceInfo)``, called when a VM's
        power state changes without the agent asking (a guest shutting down,
        crashing or rebooting on its own). Drivers that cannot watch events
        never call it; the manager's periodic sync is the backstop."""
        self.power_state_listener = cb

    # -- issue 4: recovery -----------------------------------------------------------

    def reattach_task(self, op: Operation, task_ref: str, timeout: float) -> TaskState:
        """Follow a hypervisor task that an EARLIER run of the agent started
        (its row is in tracked_tasks), for recovery after a restart.

        If the hypervisor no longer has the task (destroyed, garbage
        collected, lost in a restart of its API) return
        ``TaskState('lost', error=['TASK_LOST', task_ref])`` at once; if it
        has ended, its final state at once. Otherwise wait until it ends, at
        most ``timeout`` seconds (may be 0); on expiry cancel it, wait a short
        grace and return its end with ``timed_out=True`` (status 'pending'
        if it still has not ended). While waiting, ``cancel(op.instance_uuid)``
        reaches the task. Report to the TaskListener as for the driver's own
        tasks, except task_started (the row exists): task_progress while
        waiting, task_finished at the end (lost as 'failure' with
        ['TASK_LOST', ref]); then remove the ended task from the hypervisor.
        Raises HypervisorUnavailable when the hypervisor cannot be reached.
        """
        raise NotImplementedError

    def set_reconnect_listener(self, cb: Callable[[], None] | None) -> None:
        """Register ``cb()``, called (from a driver thread, which it must not
        block for long) after the connection to the hypervisor was lost and
        re-established or its API restarted: tasks may have ended or been
        lost meanwhile, and recovery runs again. Drivers without such a
        notion never call it."""
        self.reconnect_listener = cb
