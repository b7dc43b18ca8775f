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
import time
import traceback
from collections.abc import Callable
from typing import Any

from compute_agent import exceptions
from compute_agent import notifications as notif
from compute_agent.compute import states
from compute_agent.compute.locks import InstanceLocks
from compute_agent.compute.requests import REQUESTS, driver_view
from compute_agent.compute.validation import is_uuid, valid_name_or_empty
from compute_agent.context import RequestContext
from compute_agent.db.errors import DatabaseUnavailable
from compute_agent.driver import power_state

LOG = logging.getLogger(__name__)

# Retrying the record of an operation's end while the database is
# unreachable: first pause and longest pause (seconds); for how long is
# [tasks] outcome_record_timeout.
OUTCOME_RETRY_FIRST = 1.0
OUTCOME_RETRY_MAX = 15.0

# Characters of a traceback an action event keeps.
MAX_TRACEBACK = 8192

# inst (driver view) -> (vm_state, power_state or None to keep it)
Settler = Callable[[dict[str, Any]], tuple[str, int | None]]


class Outcomes:
    """``release(uuid)`` is called once an operation's end is recorded (the
    instance is no longer busy in this process)."""

    def __init__(self, db: Any, notifier: notif.Notifier, release: Callable[[str], None],
                 stopping: Callable[[], bool] = lambda: False, retry_for: float = 300.0):
        self.db = db
        self.retry_for = retry_for
        self.notifier = notifier
        self._release = release
        self._stopping = stopping

    # -- the end of an operation -------------------------------------------------------

    def succeed(self, ctxt: RequestContext, uuid: str, request: str, task_state: str,
                values: dict[str, Any]) -> None:
        """Settle the instance with ``values`` (it must still be in
        ``task_state``), finish the action, send ``.end``."""
        values = {**values, "task_state": None}
        self.event_finish(ctxt, uuid, request, "success")
        self.action_finish(ctxt, uuid, "success")
        inst = None
        try:
            inst = self.persist(f"the end of {request} of {uuid}", lambda: self.db.update_instance(
                uuid, values, expected_task_state=task_state))
        except DatabaseUnavailable:
            pass  # logged; recovery settles it once the database is back
        except exceptions.ComputeAgentError as exc:
            # Someone else resolved the instance meanwhile (e.g. recovery).
            LOG.warning("Could not record the end of %s of %s: %s", request, uuid, exc.message)
            try:
                inst = self.db.get_instance(uuid)
            except exceptions.ComputeAgentError:
                inst = None
        finally:
            self._release(uuid)
        if inst is None:
            return
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
            # Its text (SQL, paths) stays in the log; the fault says where.
            error = exceptions.internal_error(ctxt.request_id)
            LOG.error("%s of %s failed unexpectedly", request, uuid,
                      exc_info=(type(exc), exc, exc.__traceback__))
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        tb = tb[-MAX_TRACEBACK:]  # the end says most; the record stays bounded
        self.event_finish(ctxt, uuid, request, "error", tb)
        self.action_finish(ctxt, uuid, "error", f"{error.code} {error.params}")
        inst = None
        try:
            current = self.persist(f"the failure of {request} of {uuid}",
                                   lambda: self.db.get_instance(uuid, internal=True))
            vm_state, new_power = settle(driver_view(current))
            values: dict[str, Any] = {"vm_state": vm_state, "task_state": None}
            if new_power is not None:
                values["power_state"] = new_power
            self.persist(f"the fault of {request} of {uuid}", lambda: self.db.add_instance_fault(
                uuid, error.code, error.params, error.message))
            inst = self.persist(f"the failure of {request} of {uuid}",
                                lambda: self.db.update_instance(
                                    uuid, values, expected_task_state=current["task_state"]))
        except DatabaseUnavailable:
            pass  # logged; recovery settles it once the database is back
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
        caller finds out with get_instance. Only checked values are written
        (the uuid, the name if it is valid, the fault, which names the field
        in escaped and bounded form), and this never raises: the caller
        gets the refusal, not a failure to record it."""
        self.notifier.action(ctxt, "create", notif.ERROR, None, exc.to_dict())
        LOG.warning("Refused build: %s", exc.message)
        if not isinstance(instance, dict) or not is_uuid(instance.get("uuid")):
            return
        try:
            self._record_refused_build(ctxt, instance["uuid"], instance.get("name"), exc,
                                       host, locks)
        except Exception:
            LOG.exception("Could not record the refused build of %s", instance["uuid"])

    def _record_refused_build(self, ctxt: RequestContext, uuid: str, name: Any,
                              exc: exceptions.ComputeAgentError, host: str,
                              locks: InstanceLocks) -> None:
        name = valid_name_or_empty(name)
        with locks.hold(uuid):
            try:
                # Created as a build that never started; it turns to error
                # only once its fault and action are written, so nobody
                # sees an error without its reason.
                self.db.create_instance({
                    "uuid": uuid,
                    "name": name,
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

    # -- writes that must not be lost --------------------------------------------------

    def persist(self, what: str, write: Callable[[], Any]) -> Any:
        """Run ``write`` (one database call), and while the database cannot
        be reached run it again with a growing pause, for at most
        ``retry_for`` seconds: the end of an operation whose dom0 work is done is
        recorded as soon as the database is back. Past that (or once the
        agent stops) DatabaseUnavailable is raised; the database's
        reconnect then triggers recovery, which settles the instance from
        dom0. Other errors are raised at once."""
        deadline = time.monotonic() + self.retry_for
        delay = OUTCOME_RETRY_FIRST
        while True:
            try:
                return write()
            except DatabaseUnavailable as exc:
                if time.monotonic() + delay > deadline or self._stopping():
                    LOG.error("Could not record %s: %s; recovery will once the database "
                              "is back", what, exc.message)
                    raise
                LOG.warning("Could not record %s (database unreachable); retrying in %.0f s",
                            what, delay)
                time.sleep(delay)
                delay = min(delay * 2, OUTCOME_RETRY_MAX)

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
