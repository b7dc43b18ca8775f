"""What a finished xapi task says: its status, its result decoded from the
XML-RPC encoding xapi stores it in, or its error as a structured error."""

from __future__ import annotations

import xmlrpc.client
from dataclasses import dataclass, field
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.xenapi import errors

PENDING_STATES = ("pending", "cancelling")
FINAL_STATES = ("success", "failure", "cancelled")
# Not a xapi status: the task disappeared before its outcome was seen
# (destroyed, garbage collected, or lost in an xapi restart).
LOST = "lost"


def decode_result(text: str | None) -> Any:
    """Decode a task's ``result`` field.

    xapi stores the XML-RPC encoding of the call's return value:
    ``<value>OpaqueRef:...</value>`` for a ref (a string without a type
    tag), a full ``<value><struct>...`` for a record, "" for void (None).
    Older xapis store a bare ref; that is returned as it is.
    """
    if text is None:
        return None
    s = text.strip()
    if not s:
        return None
    if not s.startswith("<value"):
        return s
    doc = (
        "<?xml version='1.0'?><methodResponse><params><param>"
        f"{s}</param></params></methodResponse>"
    )
    try:
        params, _ = xmlrpc.client.loads(doc)
    except Exception as e:  # expat and xmlrpc raise several unrelated types
        raise exceptions.HypervisorError(
            s[:200], str(e), code="TASK_RESULT_UNPARSEABLE"
        ) from None
    return params[0] if params else None


@dataclass
class TaskOutcome:
    """The end of a task as the agent saw it."""

    ref: str
    status: str  # success | failure | cancelled | lost
    result: Any = None  # decoded result (success)
    raw_result: str | None = None  # as xapi stored it
    error_info: list[str] = field(default_factory=list)
    uuid: str | None = None

    @classmethod
    def from_record(cls, ref: str, record: dict[str, Any]) -> TaskOutcome:
        status = str(record.get("status", ""))
        raw = record.get("result")
        return cls(
            ref=ref,
            status=status,
            result=decode_result(raw) if status == "success" else None,
            raw_result=raw if status == "success" else None,
            error_info=[str(x) for x in record.get("error_info") or []],
            uuid=record.get("uuid"),
        )

    @classmethod
    def lost(cls, ref: str, uuid: str | None = None) -> TaskOutcome:
        return cls(ref=ref, status=LOST, error_info=["TASK_LOST", ref], uuid=uuid)

    @property
    def listener_result(self) -> str | None:
        """The result as the TaskListener records it (a string)."""
        if self.status != "success" or self.result is None:
            return None
        return self.result if isinstance(self.result, str) else repr(self.result)

    @property
    def listener_status(self) -> str:
        return "failure" if self.status == LOST else self.status

    def error(self, secrets: list[str] | None = None) -> exceptions.HypervisorError:
        """The structured error of a failed (or lost) task: the same code
        and params a synchronous call would have raised."""
        return errors.from_error_info(self.error_info, secrets or [])


def is_final(record: dict[str, Any]) -> bool:
    return record.get("status") in FINAL_STATES
