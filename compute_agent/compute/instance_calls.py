"""Requests that run while the caller waits (RPC calls) and leave the
instance's task_state alone: attach and detach of volumes and ports, and
the guest agent's commands.

Each holds the instance's lock for its whole run (they are short: one
device or one guest command), so it never overlaps another request on the
same instance: a request whose instance is busy with a task_state or with
another such call is refused with INSTANCE_BUSY. Each leaves the usual
records: an instance action with one event, a ``.start`` and ``.end`` or
``.error`` notification, and on failure an instance fault. Arguments are
never written into any of them (they may hold secrets: CHAP credentials,
passwords, file contents).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from compute_agent import exceptions
from compute_agent import notifications as notif
from compute_agent.compute import states
from compute_agent.compute.requests import driver_view
from compute_agent.compute.runner import NotSupported, RequestRunner, WrongHost
from compute_agent.compute.validation import validate_uuid
from compute_agent.context import RequestContext
from compute_agent.driver.base import Operation

LOG = logging.getLogger(__name__)

ATTACHABLE = (states.ACTIVE, states.STOPPED)
DETACHABLE = (states.ACTIVE, states.STOPPED, states.ERROR)
GUEST = (states.ACTIVE,)


@dataclass(frozen=True)
class CallRequest:
    """One synchronous request: its action, event and notification action
    names, and the vm_states it may run in."""

    name: str
    action: str
    event: str
    allowed: tuple[str, ...]


CALL_REQUESTS: dict[str, CallRequest] = {
    r.name: r for r in (
        CallRequest("attach_volume", "attach_volume", "compute_attach_volume", ATTACHABLE),
        CallRequest("detach_volume", "detach_volume", "compute_detach_volume", DETACHABLE),
        CallRequest("attach_interface", "attach_interface", "compute_attach_interface",
                    ATTACHABLE),
        CallRequest("detach_interface", "detach_interface", "compute_detach_interface",
                    DETACHABLE),
        CallRequest("set_admin_password", "set_admin_password",
                    "compute_set_admin_password", GUEST),
        CallRequest("inject_file", "inject_file", "compute_inject_file", GUEST),
        CallRequest("reset_network", "reset_network", "compute_reset_network", GUEST),
    )
}


class InstanceCalls:
    """Runs CALL_REQUESTS for one manager, with the RequestRunner's parts."""

    def __init__(self, runner: RequestRunner):
        self.r = runner

    @contextmanager
    def run(self, ctxt: RequestContext, instance_uuid: Any, request: str,
            secrets: tuple[str, ...] = ()) -> Iterator[tuple[dict[str, Any], Operation]]:
        """Check and hold the instance for ``request``; yields (driver view
        of the instance, driver Operation). Records the outcome of the
        block; a NotImplementedError from the driver becomes
        OPERATION_NOT_SUPPORTED. An error that quotes one of ``secrets``
        has it masked before anyone sees it."""
        r = self.r
        row = CALL_REQUESTS[request]
        r.refuse_if_stopping()
        uuid = validate_uuid(instance_uuid)
        with r.locks.hold(uuid):
            inst = r.db.get_instance(uuid, internal=True)
            self._check(inst, row)
            r.workers.claim(uuid)
            try:
                self._records(ctxt, uuid, row, start=True)
                r.notifier.action(ctxt, row.action, notif.START, r.db.get_instance(uuid))
                op = r.operation(ctxt, uuid, request)
                try:
                    yield driver_view(inst), op
                except NotImplementedError:
                    raise NotSupported(request, type(r.driver).__name__) from None
            except BaseException as exc:
                if isinstance(exc, exceptions.ComputeAgentError):
                    mask(exc, secrets)
                self._failed(ctxt, uuid, row, exc)
                raise
            else:
                self._records(ctxt, uuid, row, start=False, result="success")
                r.notifier.action(ctxt, row.action, notif.END, r.db.get_instance(uuid))
            finally:
                r.workers.release(uuid)

    def _check(self, inst: dict[str, Any], row: CallRequest) -> None:
        uuid = inst["uuid"]
        if inst["host"] != self.r.host:
            raise WrongHost(uuid, inst["host"], self.r.host)
        if inst["task_state"] is not None:
            raise exceptions.InstanceBusy(uuid, inst["task_state"])
        if uuid in self.r.workers.busy():
            raise exceptions.InstanceBusy(uuid, "busy")
        if inst["vm_state"] not in row.allowed:
            raise exceptions.InstanceInvalidState(uuid, "vm_state", inst["vm_state"],
                                                  "|".join(row.allowed))

    def _records(self, ctxt: RequestContext, uuid: str, row: CallRequest, start: bool,
                 result: str = "success", message: str | None = None,
                 tb: str | None = None) -> None:
        db = self.r.db
        try:
            if start:
                db.action_start(uuid, row.action, ctxt.request_id)
                db.action_event_start(uuid, ctxt.request_id, row.event)
            else:
                db.action_event_finish(uuid, ctxt.request_id, row.event, result, tb)
                db.action_finish(uuid, ctxt.request_id, result, message)
        except Exception:
            LOG.exception("Could not record %s of %s", row.name, uuid)

    def _failed(self, ctxt: RequestContext, uuid: str, row: CallRequest,
                exc: BaseException) -> None:
        err = exc if isinstance(exc, exceptions.ComputeAgentError) else \
            exceptions.ComputeAgentError(type(exc).__name__)
        # Only the exception's type and place, never its text: a driver
        # error may quote what it was given.
        tb = "".join(traceback.format_tb(exc.__traceback__)) if not isinstance(
            exc, exceptions.ComputeAgentError) else None
        self._records(ctxt, uuid, row, start=False, result="error", message=err.message, tb=tb)
        try:
            self.r.db.add_instance_fault(uuid, err.code, err.params, err.message)
        except Exception:
            LOG.exception("Could not record the fault of %s", uuid)
        LOG.warning("%s of %s failed: %s", row.name, uuid, err.code)
        self.r.notifier.action(ctxt, row.action, notif.ERROR, self.r.db.get_instance(uuid),
                               err.to_dict())


Call = Callable[[dict[str, Any], Operation], Any]
MASK = "***"


def mask(exc: exceptions.ComputeAgentError, secrets: tuple[str, ...]) -> None:
    """Replace every secret quoted in the error's params and message."""
    secrets = tuple(s for s in secrets if s)
    if not secrets:
        return

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            for secret in secrets:
                value = value.replace(secret, MASK)
        return value

    exc.params = [clean(p) for p in exc.params]
    exc.message = clean(exc.message)
    exc.args = tuple(clean(a) for a in exc.args)
