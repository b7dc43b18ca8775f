"""ComputeManager: turns requests into driver operations and state in SQL.

Each request is handled in two steps:

1. *Accept* (in the RPC worker, quick): validate, then under the instance's
   lock move it into its transitional task_state with a compare-and-set
   update, record an instance action for the request id, and send the
   ``.start`` notification. A request that conflicts with the operation in
   progress is refused here with INSTANCE_BUSY, one that does not fit the
   vm_state with INSTANCE_INVALID_STATE. For a ``call`` the refusal is the
   caller's exception; for a ``cast`` it is logged, recorded as a failed
   action and sent as an ``.error`` notification.
2. *Run* (in a thread of its own, so long operations never hold an RPC
   worker): call the driver, then settle the instance into its stable state
   (or ``error`` / the state the hypervisor shows, with a fault), finish the
   action and send ``.end`` or ``.error``.

State transitions (task_state is None in every stable state):

  build      (new)            -> building/spawning      -> active | error
  start      stopped          -> powering_on            -> active
  stop       active|error|rescued -> powering_off       -> stopped
  reboot     active (SOFT), active|stopped|error (HARD)
                              -> rebooting[_hard]       -> active
  terminate  any but deleted  -> deleting               -> deleted (row kept)

On a failed start/stop/reboot the instance settles into what the hypervisor
shows (running -> active, halted -> stopped, otherwise error); a failed
build or terminate ends in ``error``. Every failure adds an instance fault.

What an earlier run of the agent left half done is settled by recovery.py
(on start and after a dom0 reconnect); power state changes the agent did not
ask for are applied by power_sync.py (see docs/tasks.md). The manager
decides; the parts it uses do one job each: operations.py (the request
table), outcomes.py (recording how a request ended), workers.py (operation
threads, busy instances, drain), build_slots.py (bounded builds) and
host_status.py (heartbeat and host status).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from compute_agent import exceptions, states
from compute_agent import notifications as notif
from compute_agent.build_slots import BuildSlots
from compute_agent.context import RequestContext, get_admin_context
from compute_agent.db.types import utcnow
from compute_agent.driver import load_driver, power_state
from compute_agent.driver.base import REBOOT_HARD, REBOOT_TYPES, ComputeDriver
from compute_agent.driver.base import Operation as DriverOperation
from compute_agent.host_status import HostStatus
from compute_agent.locks import InstanceLocks
from compute_agent.operations import REQUESTS, SETTLED_VM_STATE, driver_view, timeout_of
from compute_agent.outcomes import Outcomes, Settler
from compute_agent.power_sync import PowerStateSync
from compute_agent.recovery import Recovery
from compute_agent.task_listener import TrackedTaskListener
from compute_agent.validation import validate_instance, validate_uuid
from compute_agent.workers import Workers

LOG = logging.getLogger(__name__)

RPC_API_VERSION = "1.1"


class ServiceStopping(exceptions.ComputeAgentError):
    """The agent is shutting down and takes no new work. params: host."""

    code = "SERVICE_STOPPING"
    msg_fmt = "The compute agent on {0} is shutting down"


class WrongHost(exceptions.ComputeAgentError):
    """The instance is managed by another agent. params: uuid, its host, this host."""

    code = "INSTANCE_WRONG_HOST"
    msg_fmt = "Instance {0} is on host {1}, not {2}"


# params: operation, driver. Drivers raise the same error for what their
# hypervisor cannot do.
NotSupported = exceptions.OperationNotSupported


class ComputeManager:
    """See the module docstring. Thread-safe; one per agent process."""

    def __init__(
        self,
        conf: Any,
        db: Any,
        driver: ComputeDriver | None = None,
        notifier: notif.Notifier | None = None,
        host: str | None = None,
    ):
        self.conf = conf
        self.host = host or conf.host
        self.db = db
        self.notifier = notifier or notif.Notifier(None, self.host)
        self.task_listener = TrackedTaskListener(
            db, self.host, conf.tasks.progress_write_interval
        )
        if driver is None:
            driver = load_driver(conf.compute_driver, self.task_listener)
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
        self._outcomes = Outcomes(db, self.notifier, release=self._workers.release)
        self._host_status = HostStatus(conf, db, driver, self.host)

    # ------------------------------------------------------------------ lifecycle

    def init_host(self) -> None:
        """Connect the driver, start recovering what an earlier run left
        half done (recovery.py: classified now, settled in background
        threads), and write the first heartbeat. Recovery runs again
        whenever the driver reconnects to the hypervisor."""
        self.driver.init_host(self.host)
        self._recover("start")
        self.driver.set_reconnect_listener(lambda: self._recover("reconnect"))
        self.report_host(get_admin_context())

    def _recover(self, reason: str, ctxt: RequestContext | None = None) -> None:
        if self._stopping.is_set():
            return
        try:
            self.recovery.start(ctxt or get_admin_context(), reason=reason)
        except Exception:
            # The agent serves anyway; the next run retries.
            LOG.exception("Recovery (%s) failed", reason)

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

    def list_instances(self, ctxt: RequestContext) -> list[dict[str, Any]]:
        return self.db.list_instances(host=self.host)

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
        return status

    # ------------------------------------------------------------------ RPC: build

    def build_instance(self, ctxt: RequestContext, instance: Any) -> dict[str, Any]:
        """Accept a build. A known uuid is a no-op returning the instance."""
        self._refuse_if_stopping()
        try:
            spec = validate_instance(instance)
        except exceptions.InvalidInput as exc:
            self._outcomes.refused_build(ctxt, instance, exc, self.host, self._locks)
            raise
        uuid = spec["uuid"]
        with self._locks.hold(uuid):
            try:
                existing = self.db.get_instance(uuid)
            except exceptions.InstanceNotFound:
                existing = None
            if existing is not None:
                LOG.info("Build of known instance %s ignored (vm_state %s)", uuid,
                         existing["vm_state"])
                return existing
            self._workers.claim(uuid)
            try:
                created = self.db.create_instance({
                    **spec,
                    "host": self.host,
                    "vm_state": states.BUILDING,
                    "task_state": states.SPAWNING,
                    "power_state": power_state.NOSTATE,
                    "progress": 0,
                })
            except exceptions.InstanceExists:
                # Another agent sharing the database created it first.
                self._workers.release(uuid)
                return self.db.get_instance(uuid)
            except BaseException:
                self._workers.release(uuid)
                raise
            self._outcomes.action_start(ctxt, uuid, "build")
            self._build_slots.queue(uuid)
        self.notifier.action(ctxt, "create", notif.START, created)
        self._workers.spawn(ctxt, uuid, "build", self._run_build, spec)
        return created

    def _run_build(self, ctxt: RequestContext, uuid: str, spec: dict[str, Any]) -> None:
        op = self._operation(ctxt, uuid, "spawn", timeout_of(self.conf, "spawn"))
        self._outcomes.event_start(ctxt, uuid, "build")
        try:
            with self._build_slots.slot(uuid):
                info = self.driver.spawn(op, spec)
        except BaseException as exc:
            self._outcomes.fail(ctxt, uuid, "build", exc, settle=lambda inst: (states.ERROR, None))
            return
        self._outcomes.succeed(ctxt, uuid, "build", states.SPAWNING, {
            "vm_state": states.ACTIVE,
            "power_state": info.power_state,
            "vm_ref": info.vm_ref,
            "progress": 100,
            "launched_at": utcnow(),
        })

    # ------------------------------------------------------------------ RPC: power, delete

    def start_instance(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        return self._accept(ctxt, instance_uuid, "start", "start", states.POWERING_ON,
                            lambda op, inst: self.driver.power_on(op, inst))

    def stop_instance(self, ctxt: RequestContext, instance_uuid: Any,
                      clean: Any = True) -> dict[str, Any]:
        if not isinstance(clean, bool):
            self._invalid(ctxt, "stop", "clean", "must be a boolean")
        timeout = float(self.conf.tasks.power_timeout)
        return self._accept(
            ctxt, instance_uuid, "stop", "stop", states.POWERING_OFF,
            lambda op, inst: self.driver.power_off(op, inst, clean=clean,
                                                   timeout=min(60.0, timeout)),
        )

    def reboot_instance(self, ctxt: RequestContext, instance_uuid: Any,
                        reboot_type: Any = "SOFT") -> dict[str, Any]:
        if reboot_type not in REBOOT_TYPES:
            self._invalid(ctxt, "reboot", "reboot_type", "must be SOFT or HARD")
        hard = reboot_type == REBOOT_HARD
        return self._accept(
            ctxt, instance_uuid, "reboot", "reboot_hard" if hard else "reboot_soft",
            states.REBOOTING_HARD if hard else states.REBOOTING,
            lambda op, inst: self.driver.reboot(op, inst, reboot_type),
        )

    def terminate_instance(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        if isinstance(instance_uuid, str):
            try:
                inst = self.db.get_instance(instance_uuid)
            except exceptions.ComputeAgentError:
                inst = None  # _accept reports it
            if inst and inst["vm_state"] == states.DELETED and inst["task_state"] is None:
                return inst  # deleting twice is not an error
        return self._accept(ctxt, instance_uuid, "terminate", "terminate", states.DELETING,
                            lambda op, inst: self.driver.destroy(op, inst))

    def _accept(self, ctxt: RequestContext, instance_uuid: Any, request: str, rule: str,
                task_state: str, call: Callable[[DriverOperation, dict], None]) -> dict:
        try:
            self._refuse_if_stopping()
            uuid = validate_uuid(instance_uuid)
        except exceptions.ComputeAgentError as exc:
            self._outcomes.refused(ctxt, None, request, exc)
            raise
        with self._locks.hold(uuid):
            try:
                inst = self.db.get_instance(uuid, internal=True)
                self._check_can_start(inst, rule)
                self._workers.claim(uuid)
                try:
                    updated = self.db.update_instance(
                        uuid, {"task_state": task_state, "progress": 0},
                        expected_task_state=None, expected_vm_state=states.ALLOWED_FROM[rule])
                except exceptions.UnexpectedTaskState as exc:
                    raise exceptions.InstanceBusy(uuid, exc.params[-1]) from None
            except BaseException as exc:
                self._workers.release(uuid)
                if isinstance(exc, exceptions.ComputeAgentError):
                    self._outcomes.refused(ctxt, uuid, request, exc)
                raise
            self._outcomes.action_start(ctxt, uuid, request)
        self.notifier.action(ctxt, notif.ACTIONS[request], notif.START, updated)
        self._workers.spawn(ctxt, uuid, request, self._run_operation, request, task_state, call)
        return updated

    def _check_can_start(self, inst: dict[str, Any], rule: str) -> None:
        uuid = inst["uuid"]
        if inst["host"] != self.host:
            raise WrongHost(uuid, inst["host"], self.host)
        if inst["task_state"] is not None:
            raise exceptions.InstanceBusy(uuid, inst["task_state"])
        allowed = states.ALLOWED_FROM[rule]
        if inst["vm_state"] not in allowed:
            raise exceptions.InstanceInvalidState(uuid, "vm_state", inst["vm_state"],
                                                  "|".join(allowed))

    def _invalid(self, ctxt: RequestContext, request: str, field: str, reason: str) -> None:
        exc = exceptions.InvalidInput(field, reason)
        self._outcomes.refused(ctxt, None, request, exc)
        raise exc

    def _run_operation(self, ctxt: RequestContext, uuid: str, request: str, task_state: str,
                       call: Callable[[DriverOperation, dict], None]) -> None:
        driver_op = REQUESTS[request].driver_op
        op = self._operation(ctxt, uuid, driver_op, timeout_of(self.conf, driver_op))
        self._outcomes.event_start(ctxt, uuid, request)
        try:
            inst = self.db.get_instance(uuid, internal=True)
            call(op, driver_view(inst))
            info = None if request == "terminate" else self.driver.get_info(inst)
        except BaseException as exc:
            self._outcomes.fail(ctxt, uuid, request, exc, settle=self._settler(request))
            return
        values: dict[str, Any] = {"progress": 100}
        if request == "terminate":
            values.update(vm_state=states.DELETED, power_state=power_state.NOSTATE,
                          vm_ref=None)
        else:
            assert info is not None
            values.update(power_state=info.power_state, shutdown_reason=info.shutdown_reason,
                          vm_state=states.STOPPED if request == "stop" else states.ACTIVE)
        self._outcomes.succeed(ctxt, uuid, request, task_state, values)

    def _settler(self, request: str) -> Settler:
        """How an instance settles after ``request`` failed: (vm_state,
        power_state or None to keep it)."""

        def settle(inst: dict[str, Any]) -> tuple[str, int | None]:
            if request in ("build", "terminate"):
                return states.ERROR, None
            try:
                info = self.driver.get_info(inst)
            except exceptions.InstanceNotFound:
                return states.ERROR, power_state.NOSTATE
            except Exception:
                # dom0 unreachable: keep what we knew, unless the request
                # itself may have left the VM half way (reboot).
                vm_state = states.ERROR if request == "reboot" else inst["vm_state"]
                return vm_state, None
            return SETTLED_VM_STATE.get(info.power_state, states.ERROR), info.power_state

        return settle

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

    def report_host(self, ctxt: RequestContext) -> None:
        """Heartbeat the service and report host resources (compute_nodes)."""
        self._host_status.report()

    def sync_power_states(self, ctxt: RequestContext) -> int:
        """Backstop reconciliation of power states (power_sync.py has the
        rules); returns how many instances changed. Instances with an
        operation in progress are left to that operation."""
        return self.power_sync.sync_all(ctxt)

    # ------------------------------------------------------------------ helpers

    def _refuse_if_stopping(self) -> None:
        if self._stopping.is_set():
            raise ServiceStopping(self.host)

    @staticmethod
    def _operation(ctxt: RequestContext, uuid: str, name: str,
                   timeout: float | None) -> DriverOperation:
        return DriverOperation(instance_uuid=uuid, name=name, request_id=ctxt.request_id,
                               timeout=float(timeout) if timeout else None)
