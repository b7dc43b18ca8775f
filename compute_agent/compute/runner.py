"""Running one request on one instance: accept it, then run it.

1. *Accept* (in the RPC worker, quick): validate the uuid, then under the
   instance's lock check the host, the task_state and the vm_state, move the
   instance into the request's task_state with a compare-and-set update,
   record the instance action and send the ``.start`` notification. A
   conflicting request is refused with INSTANCE_BUSY, one that does not fit
   the vm_state with INSTANCE_INVALID_STATE, and the refusal is recorded
   (outcomes.refused).
2. *Run* (in a worker thread, so long operations never hold an RPC worker):
   call the driver with an Operation carrying the request's timeout, then
   settle the instance into the request's ``settles_to`` state with the
   power state the driver reports, or, on failure, into what the hypervisor
   shows, with a fault.

Everything a request needs to know about itself is its row in
requests.REQUESTS; this module is the same for every request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from compute_agent import exceptions
from compute_agent import notifications as notif
from compute_agent.compute import states
from compute_agent.compute.locks import InstanceLocks
from compute_agent.compute.outcomes import Outcomes, Settler
from compute_agent.compute.requests import REQUESTS, SETTLED_VM_STATE, driver_view, timeout_of
from compute_agent.compute.validation import validate_uuid
from compute_agent.compute.workers import Workers
from compute_agent.context import RequestContext
from compute_agent.driver import power_state
from compute_agent.driver.base import ComputeDriver
from compute_agent.driver.base import Operation as DriverOperation

LOG = logging.getLogger(__name__)

# What a request does in the driver: call(operation, instance view); what it
# returns (a dict or None) is written into the instance with the settled state
# (a revert_resize gives back the flavor it restored).
DriverCall = Callable[[DriverOperation, dict], dict | None]


# A failed unrescue (its rescue VM still there), confirm or revert of a resize
# leaves the instance in the state it started from, so it can be retried.
RETRY_FROM: dict[str, str] = {"unrescue": states.RESCUED,
                              "confirm_resize": states.RESIZED,
                              "revert_resize": states.RESIZED}


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


class RequestRunner:
    """Accepts and runs the requests of the request table. One per manager."""

    def __init__(self, conf: Any, db: Any, driver: ComputeDriver, notifier: notif.Notifier,
                 host: str, locks: InstanceLocks, workers: Workers, outcomes: Outcomes,
                 stopping: threading.Event):
        self.conf = conf
        self.db = db
        self.driver = driver
        self.notifier = notifier
        self.host = host
        self.locks = locks
        self.workers = workers
        self.outcomes = outcomes
        self._stopping = stopping

    def accept(self, ctxt: RequestContext, instance_uuid: Any, request: str,
               call: DriverCall | None, *, rule: str | None = None,
               task_state: str | None = None,
               check: Callable[[dict[str, Any]], None] | None = None,
               run: Callable[..., None] | None = None) -> dict[str, Any]:
        """Accept ``request`` on the instance and run ``call`` in a worker
        thread. ``rule`` and ``task_state`` override the request's row (a
        HARD reboot); ``check(instance)``, called under the instance's lock
        once its states allow the request, may refuse it by raising a
        ComputeAgentError (a resize that would shrink the disk).
        ``run(ctxt, uuid, request, task_state, call)`` replaces the plain run
        for a request with steps of its own (a migration, which involves
        another agent). Returns the instance as accepted."""
        row = REQUESTS[request]
        rule = rule or row.rule
        task_state = task_state or row.task_state
        try:
            self.refuse_if_stopping()
            uuid = validate_uuid(instance_uuid)
            self.refuse_if_no_hypervisor()
        except exceptions.ComputeAgentError as exc:
            self.outcomes.refused(ctxt, None, request, exc)
            raise
        with self.locks.hold(uuid):
            try:
                inst = self.db.get_instance(uuid, internal=True)
                self.check_can_start(inst, rule)
                if check is not None:
                    check(inst)
                self.workers.claim(uuid)
                try:
                    updated = self.db.update_instance(
                        uuid, {"task_state": task_state, "progress": 0},
                        expected_task_state=None, expected_vm_state=states.ALLOWED_FROM[rule])
                except exceptions.UnexpectedTaskState as exc:
                    raise exceptions.InstanceBusy(uuid, exc.params[-1]) from None
            except BaseException as exc:
                self.workers.release(uuid)
                if isinstance(exc, exceptions.ComputeAgentError):
                    self.outcomes.refused(ctxt, uuid, request, exc)
                raise
            self.outcomes.action_start(ctxt, uuid, request)
        self.notifier.action(ctxt, notif.ACTIONS[request], notif.START, updated)
        self.workers.spawn(ctxt, uuid, request, run or self._run, request, task_state, call)
        return updated

    def check_can_start(self, inst: dict[str, Any], rule: str) -> None:
        uuid = inst["uuid"]
        if inst["host"] != self.host:
            raise WrongHost(uuid, inst["host"], self.host)
        if inst["task_state"] is not None:
            raise exceptions.InstanceBusy(uuid, inst["task_state"])
        allowed = states.ALLOWED_FROM[rule]
        if inst["vm_state"] not in allowed:
            raise exceptions.InstanceInvalidState(uuid, "vm_state", inst["vm_state"],
                                                  "|".join(allowed))

    def invalid(self, ctxt: RequestContext, request: str, field: str, reason: str) -> None:
        """Refuse ``request`` for a bad argument: record it, raise INVALID_INPUT."""
        exc = exceptions.InvalidInput(field, reason)
        self.outcomes.refused(ctxt, None, request, exc)
        raise exc

    def refuse_if_stopping(self) -> None:
        if self._stopping.is_set():
            raise ServiceStopping(self.host)

    def refuse_if_no_hypervisor(self) -> None:
        """Work that needs dom0 is refused, not queued, while the driver has
        no connection (it started without dom0 and is still trying)."""
        if not self.driver.available:
            raise exceptions.HypervisorUnavailable(
                getattr(getattr(self.conf, "xenserver", None), "connection_url", "") or "-",
                "not connected; the agent keeps trying")

    def operation(self, ctxt: RequestContext, uuid: str, driver_op: str) -> DriverOperation:
        """The driver Operation for ``driver_op``, with its [tasks] timeout."""
        timeout = timeout_of(self.conf, driver_op)
        return DriverOperation(instance_uuid=uuid, name=driver_op, request_id=ctxt.request_id,
                               timeout=float(timeout) if timeout else None)

    def run_request(self, ctxt: RequestContext, uuid: str, request: str, task_state: str,
                    call: DriverCall) -> None:
        """The plain run of an accepted request, for a ``run`` that adds
        steps after it (a revert across hosts moves the instance back)."""
        self._run(ctxt, uuid, request, task_state, call)

    def _run(self, ctxt: RequestContext, uuid: str, request: str, task_state: str,
             call: DriverCall) -> None:
        row = REQUESTS[request]
        op = self.operation(ctxt, uuid, row.driver_op)
        self.outcomes.event_start(ctxt, uuid, request)
        deleting = row.settles_to == states.DELETED
        try:
            inst = self.db.get_instance(uuid, internal=True)
            LOG.debug("Driver %s of %s (timeout %s s)", op.name, uuid, op.timeout)
            extra = call(op, driver_view(inst))
            info = None if deleting else self.driver.get_info(
                driver_view({**inst, "vm_state": row.settles_to or inst["vm_state"]}))
        except BaseException as exc:
            self.outcomes.fail(ctxt, uuid, request, exc, settle=self.settler(request))
            return
        values: dict[str, Any] = {"progress": 100, **(extra or {})}
        if info is None:
            values.update(vm_state=row.settles_to, power_state=power_state.NOSTATE,
                          vm_ref=None)
        else:
            vm_state = row.settles_to or SETTLED_VM_STATE.get(info.power_state, states.ERROR)
            values.update(power_state=info.power_state, shutdown_reason=info.shutdown_reason,
                          vm_state=vm_state)
        self.outcomes.succeed(ctxt, uuid, request, task_state, values)

    def settler(self, request: str) -> Settler:
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
            if request in RETRY_FROM and inst["vm_state"] == RETRY_FROM[request] and (
                    request != "unrescue" or info.extra.get("rescue_vm")):
                # Kept where the request can be made again (each is
                # idempotent): what it was to remove is still in dom0.
                return inst["vm_state"], info.power_state
            return SETTLED_VM_STATE.get(info.power_state, states.ERROR), info.power_state

        return settle
