"""ComputeManager: the thin facade from RPC method to request.

Each RPC method of the agent is one method here, and each is short: it
checks its own arguments and hands the request to the part that runs it.
What the manager is built from lives in ``compute_agent/compute/``:

- requests.py    the request table: per request, its records, driver
                 operation, timeout, task_state, allowed states, end state
- runner.py      accept a request on an instance, run it in a worker thread,
                 settle the outcome (the same code for every request)
- build.py       the build request (idempotent, bounded by build slots)
- states.py      vm_state / task_state and where each request may start
- outcomes.py    recording how a request ended (action, fault, notification)
- workers.py, build_slots.py, locks.py   threads, build concurrency, locks
- recovery.py, recovery_rules.py, recovery_settle.py
                 settling what an earlier run left
- power_sync.py  power state changes the agent did not ask for
- host_status.py heartbeat and host resources
- validation.py, task_listener.py        input checks; recording dom0 tasks
- instance_calls.py  requests the caller waits for, with no task_state
- attachments.py     volumes and ports: attach, detach, rows, reconciliation
- guest_requests.py  the guest agent's commands
- methods_*.py   the RPC methods of 1.2 (lifecycle), 1.4 (devices), 1.5
                 (consoles) and 1.6 (migration), as mixins of the facade

State transitions (task_state is None in every stable state):

  build      (new)            -> building/spawning      -> active | error
  start      stopped          -> powering_on            -> active
  stop       active|error     -> powering_off           -> stopped
  reboot     active (SOFT), active|stopped|error (HARD)
                              -> rebooting[_hard]       -> active
  terminate  any but deleted  -> deleting               -> deleted (row kept)
  snapshot   active|stopped   -> image_snapshot         -> as the power state shows

RPC 1.2 adds pause/unpause, suspend/resume, rescue/unrescue and resize with
its confirm and revert (their states: compute/lifecycle.py), and the
queries get_instance_actions and list_instances' filters and paging
(compute/queries.py).

On a failed start/stop/reboot the instance settles into what the hypervisor
shows (running -> active, halted -> stopped, otherwise error); a failed
build or terminate ends in ``error``. Every failure adds an instance fault.
Adding an operation: docs/adding-an-operation.md.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from compute_agent import exceptions
from compute_agent import notifications as notif
from compute_agent.compute import queries, states
from compute_agent.compute.attachments import Attachments
from compute_agent.compute.build import Builder
from compute_agent.compute.build_slots import BuildSlots
from compute_agent.compute.consoles import ConsoleQueries
from compute_agent.compute.cross_resize import CrossHostResizes
from compute_agent.compute.guest_requests import GuestRequests
from compute_agent.compute.host_status import HostStatus
from compute_agent.compute.instance_calls import InstanceCalls
from compute_agent.compute.lifecycle import Lifecycle
from compute_agent.compute.locks import InstanceLocks
from compute_agent.compute.maintenance import HostMaintenance
from compute_agent.compute.methods_consoles import ConsoleMethods
from compute_agent.compute.methods_devices import DeviceMethods
from compute_agent.compute.methods_lifecycle import LifecycleMethods
from compute_agent.compute.methods_migration import MigrationMethods
from compute_agent.compute.metrics_poll import MetricsPoll
from compute_agent.compute.migration import LiveMigrations
from compute_agent.compute.outcomes import Outcomes
from compute_agent.compute.pools import PoolMembership
from compute_agent.compute.power_sync import PowerStateSync
from compute_agent.compute.recovery import Recovery
from compute_agent.compute.requests import REBOOT_RULES
from compute_agent.compute.runner import (  # noqa: F401 - part of the manager's API
    NotSupported,
    RequestRunner,
    ServiceStopping,
    WrongHost,
)
from compute_agent.compute.snapshots import Snapshotter
from compute_agent.compute.task_listener import TrackedTaskListener
from compute_agent.compute.validation import validate_uuid
from compute_agent.compute.workers import Workers
from compute_agent.context import RequestContext, get_admin_context
from compute_agent.driver import load_driver
from compute_agent.driver.base import ComputeDriver

LOG = logging.getLogger(__name__)

RPC_API_VERSION = "1.6"


class ComputeManager(LifecycleMethods, DeviceMethods, ConsoleMethods, MigrationMethods):
    """See the module docstring. Thread-safe; one per agent process."""

    def __init__(
        self,
        conf: Any,
        db: Any,
        driver: ComputeDriver | None = None,
        notifier: notif.Notifier | None = None,
        host: str | None = None,
        peers: Any = None,
    ):
        self.conf = conf
        self.host = host or conf.host
        self.db = db
        self.notifier = notifier or notif.Notifier(None, self.host)
        self.task_listener = TrackedTaskListener(
            db, self.host, conf.tasks.progress_write_interval
        )
        if driver is None:
            driver = load_driver(conf.compute_driver, conf, self.task_listener)
        elif driver.task_listener is None:
            driver.task_listener = self.task_listener
        self.driver = driver
        self._locks = InstanceLocks()
        # Power state changes the agent did not ask for, and what an earlier
        # run left half done: both share the per-instance locks.
        self.power_sync = PowerStateSync(db, driver, self.notifier, self.host,
                                         locks=self._locks)
        self.driver.set_power_state_listener(self.power_sync.on_event)
        self._workers = Workers()
        self.recovery = Recovery(conf, db, driver, self.notifier, self.host,
                                 locks=self._locks, busy=self.busy_instances)
        self._stopping = threading.Event()
        self._build_slots = BuildSlots(conf.max_concurrent_builds, self._stopping, self.host)
        self._outcomes = Outcomes(db, self.notifier, release=self._workers.release,
                                  stopping=self._stopping.is_set,
                                  retry_for=float(conf.tasks.outcome_record_timeout))
        self._host_status = HostStatus(conf, db, driver, self.host)
        self._runner = RequestRunner(conf, db, driver, self.notifier, self.host, self._locks,
                                     self._workers, self._outcomes, self._stopping)
        self._calls = InstanceCalls(self._runner)
        self._attachments = Attachments(self._runner, self._calls)
        self._guest = GuestRequests(self._calls)
        self._builder = Builder(self._runner, self._build_slots,
                                after_build=self._attachments.record_build)
        self._peers = peers
        self._peers_lock = threading.Lock()
        self.migrations = LiveMigrations(conf, db, driver, self.notifier, self.host,
                                         self._runner, self.peers)
        self.maintenance = HostMaintenance(conf, db, driver, self.host, self.migrations)
        self.pools = PoolMembership(db, driver, self.host, self._host_status)
        self.recovery.settlers[states.MIGRATING] = self.migrations.recover
        self.recovery.sweeps += [lambda c: self.migrations.close_finished(),
                                 self.migrations.adopt_strays]
        self._snapshots = Snapshotter(conf, db, self._runner, driver)
        self.recovery.settler.discard_images = self._snapshots.discard_images
        self._lifecycle = Lifecycle(self._runner)
        self._cross_resizes = CrossHostResizes(self._runner, self.migrations, self._lifecycle,
                                               self.peers)
        self.recovery.sweeps.append(self._cross_resizes.sweep)
        self._consoles = ConsoleQueries(conf, db, driver, self.host)
        self.metrics = MetricsPoll(db, driver, self.host, float(conf.metrics.rrd_interval))

    # ------------------------------------------------------------------ lifecycle

    def init_host(self) -> None:
        """Connect the driver, start recovering what an earlier run left
        half done (recovery.py: classified now, settled in background
        threads), and write the first heartbeat. Recovery runs again
        whenever the driver reconnects to the hypervisor, and first when
        the agent started without it and it answers."""
        # The listener first: a driver that starts without dom0 calls it
        # once dom0 answers, and recovery must run then.
        self.driver.set_reconnect_listener(lambda: self._recover("reconnect"))
        # An operation whose end could not be written while the database was
        # unreachable is settled as soon as it answers again.
        if hasattr(self.db, "add_reconnect_listener"):
            self.db.add_reconnect_listener(lambda: self._recover("database"))
        self.driver.init_host(self.host)
        if self.driver.available:
            self._recover("start")
        else:
            LOG.warning("Serving without the hypervisor; recovery runs once it answers")
        self.report_host(get_admin_context())

    def _recover(self, reason: str, ctxt: RequestContext | None = None) -> None:
        if self._stopping.is_set():
            return
        try:
            run = self.recovery.start(ctxt or get_admin_context(), reason=reason)
        except Exception:
            # The agent serves anyway; the next run retries.
            LOG.exception("Recovery (%s) failed", reason)
            return
        # Attachments once the instances are settled (compute/attachments.py).
        self._attachments.reconcile_after(run, reason, self.busy_instances)

    def recover(self, ctxt: RequestContext) -> None:
        """Periodic backstop: settle what no operation of this process owns
        (e.g. a dom0 task still running after its operation timed out and
        was settled) and report orphan VMs, without waiting for a restart or
        a reconnect."""
        self._recover("periodic", ctxt)

    def shutdown(self, timeout: float | None) -> list[str]:
        """Stop taking work, hand back builds that have not started in the
        hypervisor (they end in error with fault BUILD_ABORTED), and wait up to
        ``timeout`` seconds (None: forever) for running operations. Returns the
        uuids of operations still running at the deadline; their dom0 tasks
        stay in tracked_tasks for the next start to resolve."""
        self._stopping.set()
        left = self._workers.drain(timeout)
        if left:
            LOG.warning("Shutting down with operations still running: %s", ", ".join(left))
        self.recovery.stop()
        self.power_sync.stop()
        try:
            self.driver.cleanup_host()
        except Exception:
            LOG.exception("Driver cleanup failed")
        return left

    def wait_for_operations(self, timeout: float | None = None) -> bool:
        """Block until no operation runs (True) or ``timeout`` passes (False).
        For tests, the demo and the shutdown path."""
        return not self._workers.drain(timeout)

    def busy_instances(self) -> set[str]:
        """Uuids whose task_state this process set and has not settled yet
        (from before the guarded update until the outcome is recorded), so
        recovery can leave them alone."""
        return self._workers.busy()

    def operations_in_flight(self) -> list[str]:
        """Names ('<request>-<uuid>') of the operations running now."""
        return self._workers.names()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # ------------------------------------------------------------------ RPC: queries

    def ping(self, ctxt: RequestContext) -> dict[str, Any]:
        return {
            "host": self.host,
            "version": RPC_API_VERSION,
            "backend": self.conf.concurrency_backend,
            "driver": type(self.driver).__name__,
        }

    def get_instance(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        return self.db.get_instance(validate_uuid(instance_uuid))

    def list_instances(self, ctxt: RequestContext, vm_state: Any = None, host: Any = None,
                       limit: Any = None, marker: Any = None) -> list[dict[str, Any]]:
        """One page (1.2: filters and paging; queries.py)."""
        return queries.list_instances(self.db, self.host, vm_state, host, limit, marker)

    def get_instance_actions(self, ctxt: RequestContext,
                             instance_uuid: Any) -> list[dict[str, Any]]:
        return queries.instance_actions(self.db, instance_uuid)

    def get_host_status(self, ctxt: RequestContext) -> dict[str, Any]:
        status: dict[str, Any] = {
            "host": self.host,
            "version": RPC_API_VERSION,
            "backend": self.conf.concurrency_backend,
            "stopping": self.stopping,
        }
        status.update(self._host_status.status())
        status["builds"] = {"max": self.conf.max_concurrent_builds,
                            "running": self._build_slots.running}
        status["live_migrations"] = self.migrations.status()
        status["maintenance"] = self.maintenance.status()
        return status

    # ------------------------------------------------------------------ RPC: build

    def build_instance(self, ctxt: RequestContext, instance: Any) -> dict[str, Any]:
        """Accept a build. A known uuid is a no-op returning the instance."""
        return self._builder.accept(ctxt, instance)

    # ------------------------------------------------------------------ RPC: power, delete

    def start_instance(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        return self._runner.accept(ctxt, instance_uuid, "start",
                                   lambda op, inst: self.driver.power_on(op, inst))

    def stop_instance(self, ctxt: RequestContext, instance_uuid: Any,
                      clean: Any = True) -> dict[str, Any]:
        if not isinstance(clean, bool):
            self._runner.invalid(ctxt, "stop", "clean", "must be a boolean")
        timeout = float(self.conf.tasks.clean_shutdown_timeout)
        return self._runner.accept(
            ctxt, instance_uuid, "stop",
            lambda op, inst: self.driver.power_off(op, inst, clean=clean, timeout=timeout),
        )

    def reboot_instance(self, ctxt: RequestContext, instance_uuid: Any,
                        reboot_type: Any = "SOFT") -> dict[str, Any]:
        if reboot_type not in REBOOT_RULES:
            self._runner.invalid(ctxt, "reboot", "reboot_type", "must be SOFT or HARD")
        rule, task_state = REBOOT_RULES[reboot_type]
        return self._runner.accept(
            ctxt, instance_uuid, "reboot",
            lambda op, inst: self.driver.reboot(op, inst, reboot_type),
            rule=rule, task_state=task_state,
        )

    def terminate_instance(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        if isinstance(instance_uuid, str):
            try:
                inst = self.db.get_instance(instance_uuid)
            except exceptions.ComputeAgentError:
                inst = None  # accept() reports it
            if inst and inst["vm_state"] == states.DELETED and inst["task_state"] is None:
                return inst  # deleting twice is not an error
        def destroy(op: Any, inst: dict[str, Any]) -> None:
            self.driver.destroy(op, inst)
            self._attachments.release_deleted(op, inst)

        return self._runner.accept(ctxt, instance_uuid, "terminate", destroy)

    # ------------------------------------------------------------------ RPC 1.3: snapshot

    def snapshot_instance(self, ctxt: RequestContext, instance_uuid: Any,
                          image: Any) -> dict[str, Any]:
        """Snapshot the instance's root disk into a new Glance image
        (snapshots.py); answers ``{image_id}`` at once, the work runs on."""
        return self._snapshots.accept(ctxt, instance_uuid, image)

    # ------------------------------------------------------------------ RPC 1.1: cancel

    def cancel_operation(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        """Cancel the operation in progress on the instance. Returns
        ``{instance_uuid, task_state, cancelled}``: cancelled is False when
        nothing was in progress, or the operation finished (or had not yet
        reached the hypervisor) when the cancel arrived. A cancelled
        operation settles the instance as a failed one does, from what the
        hypervisor shows, with fault OPERATION_CANCELLED."""
        uuid = validate_uuid(instance_uuid)
        inst = self.db.get_instance(uuid)
        task_state = inst["task_state"]
        result = {"instance_uuid": uuid, "task_state": task_state, "cancelled": False}
        if task_state is None:
            return result
        self.notifier.action(ctxt, "cancel", notif.START, inst)
        queued = self._build_slots.cancel_queued(uuid)
        try:
            sent = True if queued else self.driver.cancel(uuid)
        except NotImplementedError:
            exc = NotSupported("cancel_operation", type(self.driver).__name__)
            self.notifier.action(ctxt, "cancel", notif.ERROR, inst, exc.to_dict())
            raise exc from None
        result["cancelled"] = bool(sent)
        LOG.info("Cancel of %s on %s: %s", task_state, uuid,
                 "sent" if sent else "nothing to cancel")
        self.notifier.action(ctxt, "cancel", notif.END, self.db.get_instance(uuid))
        return result

    # ------------------------------------------------------------------ periodic jobs

    def poll_metrics(self, ctxt: RequestContext) -> None:
        """Read the host's metrics (one request to dom0) for /metrics."""
        self.metrics.poll()

    def report_host(self, ctxt: RequestContext) -> None:
        """Heartbeat the service and report host resources (compute_nodes)."""
        self._host_status.report()

    def manage_image_cache(self, ctxt: RequestContext) -> int:
        """Periodic: remove cached image VDIs unused for [image_cache]
        max_unused_age (the driver knows its cache); returns how many."""
        return self.driver.manage_image_cache(float(self.conf.image_cache.max_unused_age))

    def sync_power_states(self, ctxt: RequestContext) -> int:
        """Backstop reconciliation of power states (power_sync.py has the
        rules); returns how many instances changed. Instances with an
        operation in progress are left to that operation."""
        return self.power_sync.sync_all(ctxt)
