"""Recovery's own driver call for a request an earlier run left half done,
when settling from the power state alone would not do (the request row's
``on_interrupt``, requests.py):

- *complete*: call the request's driver operation again (an unrescue, a
  confirm or a revert of a resize): each is idempotent and finishes what the
  interrupted call began;
- *roll back*: call its ``undo_op`` (an interrupted rescue is undone by an
  unrescue that restores the power state the instance had, an interrupted
  resize by a revert), so that the instance is left as it was before.

recovery.py settles the instance from what this returns and from the VM's
power state afterwards (recovery_rules.decide).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from compute_agent import exceptions
from compute_agent.compute.recovery_rules import COMPLETED, REDO_FAILED, ROLLED_BACK
from compute_agent.compute.requests import COMPLETE, ROLL_BACK, Request
from compute_agent.driver.base import ComputeDriver, Operation


@dataclass
class Redo:
    """``outcome``: None (nothing to call), COMPLETED, ROLLED_BACK or
    REDO_FAILED; ``values``: what the driver call gave back for the instance
    record (a restored flavor); ``error``: why it failed."""

    outcome: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    error: exceptions.ComputeAgentError | None = None


def driver_op_of(kind: Request | None) -> str | None:
    """The driver operation recovery calls for ``kind``, or None."""
    if kind is None:
        return None
    if kind.on_interrupt == COMPLETE:
        return kind.driver_op
    if kind.on_interrupt == ROLL_BACK:
        return kind.undo_op
    return None


def redo(driver: ComputeDriver, kind: Request | None, op: Operation,
         instance: dict[str, Any]) -> Redo:
    """Complete or roll back ``kind`` on the instance (see the module
    docstring). HypervisorUnavailable propagates: the recovery after the
    reconnect takes it up again."""
    name = driver_op_of(kind)
    if kind is None or name is None:
        return Redo()
    try:
        if kind.on_interrupt == ROLL_BACK and name == "unrescue":
            values = driver.unrescue(op, instance, restore_power=True)
        else:
            values = getattr(driver, name)(op, instance)
    except exceptions.HypervisorUnavailable:
        raise
    except exceptions.ComputeAgentError as exc:
        return Redo(REDO_FAILED, error=exc)
    outcome = COMPLETED if kind.on_interrupt == COMPLETE else ROLLED_BACK
    return Redo(outcome, dict(values or {}))
