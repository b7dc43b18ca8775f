"""Settling one instance that an earlier run of the agent left in a
transitional task_state, once recovery.py has re-attached to its tasks:
how the request's dom0 tasks ended, completing or rolling back what the
power state alone cannot say (recovery_redo.py), the stable state that
follows (recovery_rules.decide), removing a half-built VM, and then the
record: the instance, its fault, its action and the notification.

recovery.py decides which instances to settle, when and in which thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from compute_agent import exceptions
from compute_agent import notifications as notif
from compute_agent.compute import states
from compute_agent.compute.recovery_redo import driver_op_of, redo
from compute_agent.compute.recovery_rules import KINDS, Decision, cause, decide
from compute_agent.compute.requests import Request, driver_view, timeout_of
from compute_agent.compute.snapshots import discard_interrupted
from compute_agent.context import RequestContext, new_context
from compute_agent.db.types import utcnow
from compute_agent.driver import power_state
from compute_agent.driver import task_status as ts
from compute_agent.driver.base import ComputeDriver, InstanceInfo, Operation

LOG = logging.getLogger(__name__)

# How long to keep retrying when dom0 is unreachable before leaving the rest
# to the recovery that runs after the driver reconnects (recovery.py's
# re-attaching gives up after as long).
UNAVAILABLE_RETRY_S = 30.0
# How long to wait for an untracked dom0 operation on a VM to be removed.
BUSY_VM_WAIT_S = 20.0
BUSY_VM_RETRY_S = 1.0


class InstanceSettler:
    """``stop`` is recovery's: once set, nothing waits for dom0 any more."""

    def __init__(self, conf: Any, db: Any, driver: ComputeDriver, notifier: notif.Notifier,
                 stop: threading.Event,
                 discard_images: Callable[[str], int] | None = None):
        self.conf = conf
        self.db = db
        self.driver = driver
        self.notifier = notifier
        self._stop = stop
        # Deletes the unfinished snapshot images of an instance (snapshots.py).
        self.discard_images = discard_images

    def settle(self, ctxt: RequestContext, inst: dict[str, Any], tasks: list[dict[str, Any]],
               reattached: dict[str, ts.TaskState]) -> str | None:
        """Settle ``inst`` (its ``tasks`` re-attached, ended as in
        ``reattached``); returns the vm_state it ended in, or None when it
        was left as it is (dom0 unreachable: the reconnect run takes it up;
        the instance changed meanwhile)."""
        uuid, task_state = inst["uuid"], inst["task_state"]
        kind = KINDS.get(task_state)
        op_name = kind.driver_op if kind else task_state
        request_id = self._request_id(uuid, tasks)
        outcomes = self._outcomes(uuid, request_id, reattached)
        rctxt = new_context(request_id=request_id, instance_uuid=uuid) if request_id else \
            ctxt.for_instance(uuid)
        rctxt.update_store()  # log lines carry the request that left it half done
        try:
            # Complete or roll back what settling from the power state
            # alone cannot (rescue, resize: recovery_redo.py), then look.
            redo_name = driver_op_of(kind) or op_name
            redone = redo(self.driver, kind, Operation(
                uuid, redo_name, request_id or rctxt.request_id,
                timeout=timeout_of(self.conf, redo_name)), driver_view(inst))
            info = self._info(inst)
        except exceptions.HypervisorUnavailable as exc:
            LOG.warning("Cannot settle %s now (%s); will retry after reconnect", uuid,
                        exc.message)
            return None
        succeeded = bool(outcomes) and all(o.status == ts.SUCCESS for o in outcomes)
        decision = decide(task_state, info, succeeded, redone.outcome)
        LOG.debug("Recovery decision for %s: task_state %s, VM %s, tasks %s -> vm_state %s%s",
                  uuid, task_state, "none" if info is None else power_state.name(
                      info.power_state), [o.status for o in outcomes], decision.vm_state,
                  "" if decision.finished else " (interrupted)")
        error: exceptions.ComputeAgentError | None = None
        if not decision.finished:
            timeout = timeout_of(self.conf, op_name)
            error = redone.error or cause(uuid, task_state, op_name, outcomes, timeout)
        if decision.discard_snapshot:
            discard_interrupted(self.driver, self.discard_images, inst, Operation(
                uuid, "destroy", request_id or rctxt.request_id,
                timeout=timeout_of(self.conf, "destroy")))
        if decision.destroy:
            op = Operation(uuid, "destroy", request_id or rctxt.request_id,
                           timeout=timeout_of(self.conf, "destroy"))
            try:
                self._destroy(op, inst)
            except exceptions.ComputeAgentError as exc:
                LOG.warning("Could not remove the VM of %s: %s", uuid, exc.message)
                decision = Decision(states.ERROR, None, False)
                error = error or exc
                try:
                    info = self.driver.get_info(driver_view(inst))
                    decision.power = info.power_state
                except exceptions.InstanceNotFound:
                    decision.power = power_state.NOSTATE
                except exceptions.ComputeAgentError:
                    pass
        values: dict[str, Any] = {**redone.values, "vm_state": decision.vm_state,
                                  "task_state": None}
        if decision.power is not None:
            values["power_state"] = decision.power
        if decision.vm_state in (states.DELETED,) or decision.power == power_state.NOSTATE:
            values["vm_ref"] = None
        elif info is not None:
            values["vm_ref"] = info.vm_ref
            if info.shutdown_reason is not None:
                values["shutdown_reason"] = info.shutdown_reason
        if decision.finished:
            values["progress"] = 100
            if task_state == states.SPAWNING and not inst.get("launched_at"):
                values["launched_at"] = utcnow()
        if error is not None:
            self.db.add_instance_fault(uuid, error.code, error.params, error.message)
        # The action first, as outcomes.py does: whoever sees the instance
        # settled also sees how its request ended.
        self._finish_action(rctxt, uuid, request_id, kind, error)
        try:
            updated = self.db.update_instance(uuid, values, expected_task_state=task_state)
        except exceptions.UnexpectedTaskState:
            LOG.info("Instance %s changed while being recovered; leaving it", uuid)
            return None
        if kind is not None:
            action = notif.ACTIONS[kind.name]
            if error is None:
                self.notifier.action(rctxt, action, notif.END, updated)
            else:
                self.notifier.action(rctxt, action, notif.ERROR, updated, error.to_dict())
        LOG.warning("Recovered instance %s from task_state %s: vm_state %s, power_state %s%s",
                    uuid, task_state, updated["vm_state"], power_state.name(
                        updated["power_state"]), f", fault {error.code}" if error else "")
        return decision.vm_state

    def _outcomes(self, uuid: str, request_id: str | None,
                  reattached: dict[str, ts.TaskState]) -> list[ts.TaskState]:
        """How every task of the interrupted request ended, oldest first:
        the re-attached ones as the driver saw them, the rest as recorded."""
        if request_id is None:
            return list(reattached.values())
        found = []
        for row in self.db.list_tracked_tasks(status=None, instance_uuid=uuid):
            if row.get("request_id") != request_id:
                continue
            found.append(reattached.get(row["ref"]) or ts.TaskState(
                row["status"], error=row.get("error") or None))
        return found

    def _info(self, inst: dict[str, Any]) -> InstanceInfo | None:
        """The VM's info, None if there is no VM; retries while dom0 is
        unreachable, then raises HypervisorUnavailable."""
        give_up = time.monotonic() + UNAVAILABLE_RETRY_S
        while True:
            try:
                return self.driver.get_info(driver_view(inst))
            except exceptions.InstanceNotFound:
                return None
            except exceptions.HypervisorUnavailable:
                if self._stop.is_set() or time.monotonic() >= give_up:
                    raise
                self._stop.wait(1.0)

    def _destroy(self, op: Operation, inst: dict[str, Any]) -> None:
        """driver.destroy, waiting out a dom0 operation on the VM that no
        tracked task accounts for (the agent died between starting a task
        and recording it)."""
        give_up = time.monotonic() + BUSY_VM_WAIT_S
        while True:
            try:
                self.driver.destroy(op, driver_view(inst))
                return
            except exceptions.HypervisorError as exc:
                if exc.code != "OTHER_OPERATION_IN_PROGRESS" or self._stop.is_set() or \
                        time.monotonic() >= give_up:
                    raise
                LOG.info("VM of %s is busy in dom0 (%s); retrying its removal",
                         inst["uuid"], exc.params)
                self._stop.wait(BUSY_VM_RETRY_S)

    def _request_id(self, uuid: str, tasks: list[dict[str, Any]]) -> str | None:
        """The request that left the instance in its task_state: the latest
        unfinished action's, else the latest task's."""
        try:
            actions = self.db.list_actions(uuid)
        except Exception:
            actions = []
        for action in reversed(actions):
            if action.get("result") is None:
                return action["request_id"]
        for task in reversed(tasks):
            if task.get("request_id"):
                return task["request_id"]
        return None

    def _finish_action(self, ctxt: RequestContext, uuid: str, request_id: str | None,
                       kind: Request | None, error: exceptions.ComputeAgentError | None) -> None:
        if request_id is None:
            return
        result = "success" if error is None else "error"
        try:
            if kind is not None:
                self.db.action_event_finish(uuid, request_id, kind.event, result,
                                            None if error is None else
                                            f"{error.code} {error.params} (recovery)")
            self.db.action_finish(uuid, request_id, result,
                                  None if error is None else f"{error.code} {error.params}")
        except Exception:
            LOG.exception("Could not finish the action of request %s", request_id)
