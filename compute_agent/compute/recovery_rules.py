"""The rules by which recovery.py settles an instance an earlier run of the
agent left in a transitional task_state: which request set it (:data:`KINDS`),
what stable state the VM as dom0 shows it means (:func:`decide`) and, when
the operation did not take effect, why (:func:`cause`). Pure functions of
their inputs; the runner that gathers those inputs is recovery.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compute_agent import exceptions
from compute_agent.compute import states
from compute_agent.compute.requests import REBOOT_RULES, REQUESTS, SETTLED_VM_STATE, Request
from compute_agent.driver import power_state
from compute_agent.driver import task_status as ts
from compute_agent.driver.base import InstanceInfo


class OperationInterrupted(exceptions.ComputeAgentError):
    """params: instance uuid, the task_state it was left in."""

    code = "OPERATION_INTERRUPTED"
    msg_fmt = ("The operation of instance {0} (task_state {1}) was interrupted before it "
               "completed (agent restart or lost dom0 task)")


# task_state -> the request that set it, so that the recovered request
# finishes the same action record and notifications.
# Derived from the request table, plus the task_states a request may hold
# instead of its row's (a HARD reboot).
KINDS: dict[str, Request] = {
    **{row.task_state: row for row in REQUESTS.values()},
    **{task_state: REQUESTS["reboot"] for _, task_state in REBOOT_RULES.values()},
}


@dataclass
class Decision:
    """How to settle one instance. ``finished``: the operation took effect
    (action result success, no fault). ``destroy``: remove the VM and its
    disks first (roll back a build, complete a delete). ``power`` None keeps
    the recorded power state."""

    vm_state: str
    power: int | None
    finished: bool
    destroy: bool = False
    # An interrupted snapshot: remove its snapshot VM and unfinished image.
    discard_snapshot: bool = False


# task_state -> the power state that shows the operation took effect.
TARGET_POWER: dict[str, int] = {
    states.PAUSING: power_state.PAUSED,
    states.UNPAUSING: power_state.RUNNING,
    states.SUSPENDING: power_state.SUSPENDED,
    states.RESUMING: power_state.RUNNING,
}

# What recovery's own driver call (requests.Request.on_interrupt) came to.
COMPLETED, ROLLED_BACK, REDO_FAILED = "completed", "rolled_back", "failed"


def decide(task_state: str, info: InstanceInfo | None, tasks_succeeded: bool,
           redo: str | None = None) -> Decision:
    """The settling rule for an instance left in ``task_state``, given the
    VM's info (None: no VM), whether it had tasks that all succeeded and,
    for a request recovery completes or rolls back, how that went
    (``redo``: COMPLETED, ROLLED_BACK or REDO_FAILED)."""
    power = info.power_state if info is not None else None
    if redo is not None and task_state != states.DELETING:
        return _after_redo(task_state, info, redo)
    if task_state == states.DELETING:
        return Decision(states.DELETED, power_state.NOSTATE, True, destroy=True)
    if task_state == states.SPAWNING:
        if power == power_state.RUNNING:
            return Decision(states.ACTIVE, power, True)
        # Also without a VM: disks marked as the instance's may be left.
        return Decision(states.ERROR, power_state.NOSTATE, False, destroy=True)
    if task_state == states.IMAGE_SNAPSHOT:
        # The image was never reported done: whatever was made goes, and
        # the instance stays as its VM shows it (it kept running).
        if info is None:
            return Decision(states.ERROR, power_state.NOSTATE, False, discard_snapshot=True)
        return Decision(SETTLED_VM_STATE.get(power, states.ERROR),  # type: ignore[arg-type]
                        power, False, discard_snapshot=True)
    if info is None:
        return Decision(states.ERROR, power_state.NOSTATE, False)
    settled = SETTLED_VM_STATE.get(power, states.ERROR)  # type: ignore[arg-type]
    if task_state == states.POWERING_ON:
        return Decision(settled, power, power == power_state.RUNNING)
    if task_state == states.POWERING_OFF:
        if power in (power_state.SHUTDOWN, power_state.CRASHED):
            return Decision(states.STOPPED, power, True)
        return Decision(settled, power, False)
    if task_state in TARGET_POWER:
        return Decision(settled, power, power == TARGET_POWER[task_state])
    if task_state in (states.REBOOTING, states.REBOOTING_HARD):
        # A running VM is what a reboot ends in, but also where it started:
        # only tasks that all succeeded show the reboot happened.
        return Decision(settled, power, power == power_state.RUNNING and tasks_succeeded)
    return Decision(settled, power, False)


def _after_redo(task_state: str, info: InstanceInfo | None, redo: str) -> Decision:
    if info is None:
        return Decision(states.ERROR, power_state.NOSTATE, False)
    power = info.power_state
    settled = SETTLED_VM_STATE.get(power, states.ERROR)
    if redo == COMPLETED:
        kind = KINDS.get(task_state)
        return Decision((kind.settles_to if kind else None) or settled, power, True)
    if redo == ROLLED_BACK:
        return Decision(settled, power, False)
    return Decision(states.ERROR, power, False)


def cause(uuid: str, task_state: str, op_name: str, outcomes: list[ts.TaskState],
          timeout: float) -> exceptions.ComputeAgentError:
    """Why an operation did not complete, from how its tasks ended."""
    for st in reversed(outcomes):
        if st.timed_out:
            return exceptions.OperationTimedOut(op_name, uuid, round(timeout, 3))
        if st.status == ts.CANCELLED:
            return exceptions.OperationCancelled(op_name, uuid)
        if st.status == ts.FAILURE and st.error and st.error[0] != "TASK_LOST":
            return exceptions.hypervisor_error(st.error)
    return OperationInterrupted(uuid, task_state)


def orphans(vm_uuids: list[str], known: dict[str, dict[str, Any]],
            busy: set[str]) -> list[tuple[str, str]]:
    """(uuid, why) of every VM in dom0 whose instance the database does not
    know or knows as deleted, leaving out instances an operation of this
    process is working on."""
    found = []
    for uuid in vm_uuids:
        if uuid in busy:
            continue
        inst = known.get(uuid)
        if inst is None:
            found.append((uuid, "no instance record"))
        elif inst["vm_state"] == states.DELETED and inst["task_state"] is None:
            found.append((uuid, "its instance is deleted"))
    return found
