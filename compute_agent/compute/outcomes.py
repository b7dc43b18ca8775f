"""How a request ends, written down: the instance action and its event, the
instance fault, the settled state and the notification.

The order is the point. Action, event and fault are written before the
instance leaves its task_state, so whoever sees the instance settled also
sees how its request ended and why. A refused request (for a cast the only
trace there is) gets a failed action and an ``.error`` notification.
Writing action records never raises: a database hiccup there must not turn
a finished operation into a crashed one.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

from compute_agent import exceptions
from compute_agent import notifications as notif
from compute_agent.compute import states
from compute_agent.compute.locks import InstanceLocks
from compute_agent.compute.requests import REQUESTS, driver_view
from compute_agent.compute.validation import validate_uuid
from compute_agent.context import RequestContext
from compute_agent.driver import power_state

LOG = logging.getLogger(__name__)

# inst (driver view) -> (vm_state, power_state or None to keep it)
Settler = Callable[[dict[str, Any]], tuple[str, int | None]]


class Outcomes:
    """``release(uuid)`` is called once an operation's end is recorded (the
    instance is no longer busy in this process)."""

    def __init__(self, db: Any, notifier: notif.Notifier, release: Callable[[str], None]):
        self.db = db
        self.notifier = notifier
        self._release = release

    # -- the end of an operation -------------------------------------------------------

    def succeed(self, ctxt: RequestContext, uuid: str, request: str, task_state: str,
                values: dict[str, Any]) -> None:
        """Settle the instance with ``values`` (it must still be in
        ``task_state``), finish the action, send ``.end``."""
        values = {**values, "task_state": None}
        self.event_finish(ctxt, uuid, request, "success")
        self.action_finish(ctxt, uuid, "success")
        try:
            inst = self.db.update_instance(uuid, values, expected_task_state=task_state)
        except exceptions.ComputeAgentError as exc:
            # Someone else resolved the instance meanwhile (e.g. recovery).
            LOG.warning("Could not record the end of %s of %s: %s", request, uuid, exc.message)
            inst = self.db.get_instance(uuid)
        finally:
            self._release(uuid)
        self.notifier.action(ctxt, notif.ACTIONS[request], notif.END, inst)
        LOG.info("%s of %s done: vm_state %s, power_state %s", request, uuid,
                 inst["vm_state"], power_state.name(inst["power_state"]))

    def fail(self, ctxt: RequestContext, uuid: str, request: str, exc: BaseException,
             settle: Settler) -> None:
        """Record ``exc`` as the instance's fault, settle it as ``settle``
        says, finish the action with an error, send ``.error``."""
        if isinstance(exc, exceptions.ComputeAgentError):
            error = exc
            LOG.warning("%s of %s failed: %s %s", request, uuid, error.code, error.params)
        else:
            error = exceptions.ComputeAgentError(
                type(exc).__name__, str(exc),
                message=f"Internal error during {request}: {type(exc).__name__}: {exc}")
            LOG.error("%s of %s failed unexpectedly", request, uuid,
                      exc_info=(type(exc), exc, exc.__traceback__))
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.event_finish(ctxt, uuid, request, "error", tb)
        self.action_finish(ctxt, uuid, "error", f"{error.code} {error.params}")
        inst = None
        try:
            current = self.db.get_instance(uuid, internal=True)
            vm_state, new_power = settle(driver_view(current))
            values: dict[str, Any] = {"vm_state": vm_state, "task_state": None}
            if new_power is not None:
                values["power_state"] = new_power
            self.db.add_instance_fault(uuid, error.code, error.params, error.message)
            inst = self.db.update_instance(uuid, values,
                                           expected_task_state=current["task_state"])
        except Exception:
            LOG.exception("Could not record the failure of %s of %s", request, uuid)
        finally:
            self._release(uuid)
        self.notifier.action(ctxt, notif.ACTIONS[request], notif.ERROR, inst, error.to_dict())

    def refused(self, ctxt: RequestContext, uuid: str | None, request: str,
                exc: exceptions.ComputeAgentError) -> None:
        """Record a refused request: for a cast this is the only trace."""
        LOG.info("Refused %s of %s: %s", request, uuid, exc.message)
        inst = None
        if uuid is not None and not isinstance(exc, exceptions.InstanceNotFound):
            try:
                inst = self.db.get_instance(uuid)
            except exceptions.ComputeAgentError:
                inst = None
        if inst is not None:
            self.action_start(ctxt, uuid, request)
            self.action_finish(ctxt, uuid, "error", f"{exc.code} {exc.params}")
        self.notifier.action(ctxt, notif.ACTIONS[request], notif.ERROR, inst, exc.to_dict())

    def refused_build(self, ctxt: RequestContext, instance: Any,
                      exc: exceptions.ComputeAgentError, host: str,
                      locks: InstanceLocks) -> None:
        """A build cast has nobody to tell; if it names a usable uuid that is
        not known yet, leave an instance in error with the fault so the
        caller finds out with get_instance."""
        self.notifier.action(ctxt, "create", notif.ERROR, None, exc.to_dict())
        LOG.warning("Refused build: %s", exc.message)
        if not isinstance(instance, dict):
            return
        try:
            uuid = validate_uuid(instance.get("uuid"), "uuid")
        except exceptions.InvalidInput:
            return
        name = instance.get("name")
        with locks.hold(uuid):
            try:
                # Created as a build that never started; it turns to error
                # only once its fault and action are written, so nobody
                # sees an error without its reason.
                self.db.create_instance({
                    "uuid": uuid,
                    "name": name if isinstance(name, str) else "",
                    "host": host,
                    "vm_state": states.BUILDING,
                    "task_state": None,
                    "power_state": power_state.NOSTATE,
                })
            except exceptions.InstanceExists:
                return  # a known instance is never touched by a bad build
            self.db.add_instance_fault(uuid, exc.code, exc.params, exc.message)
            self.action_start(ctxt, uuid, "build")
            self.action_finish(ctxt, uuid, "error", exc.message)
            self.db.update_instance(uuid, {"vm_state": states.ERROR})

    # -- action records ----------------------------------------------------------------

    def action_start(self, ctxt: RequestContext, uuid: str, request: str) -> None:
        try:
            self.db.action_start(uuid, REQUESTS[request].action, ctxt.request_id)
        except Exception:
            LOG.exception("Could not record action %s of %s", request, uuid)

    def action_finish(self, ctxt: RequestContext, uuid: str, result: str,
                      message: str | None = None) -> None:
        try:
            self.db.action_finish(uuid, ctxt.request_id, result, message)
        except Exception:
            LOG.exception("Could not finish the action of request %s", ctxt.request_id)

    def event_start(self, ctxt: RequestContext, uuid: str, request: str) -> None:
        try:
            self.db.action_event_start(uuid, ctxt.request_id, REQUESTS[request].event)
        except Exception:
            LOG.exception("Could not record event of %s", request)

    def event_finish(self, ctxt: RequestContext, uuid: str, request: str, result: str,
                     tb: str | None = None) -> None:
        try:
            self.db.action_event_finish(uuid, ctxt.request_id, REQUESTS[request].event,
                                        result, tb)
        except Exception:
            LOG.exception("Could not finish event of %s", request)
