"""Read-only answers about instances: list_instances with its filters and
paging, and get_instance_actions (what happened to an instance, request by
request). Arguments are checked here (INVALID_INPUT [field, reason])."""

from __future__ import annotations

from typing import Any

from compute_agent.compute import states
from compute_agent.compute.validation import (
    validate_filter,
    validate_page,
    validate_uuid,
)

# Action and event fields as the RPC API gives them (docs/rpc-api.md).
ACTION_FIELDS = ("request_id", "action", "start_time", "finish_time", "result")
EVENT_FIELDS = ("event", "start_time", "finish_time", "result")


def list_instances(db: Any, default_host: str, vm_state: Any = None, host: Any = None,
                   limit: Any = None, marker: Any = None) -> list[dict[str, Any]]:
    """One page of instances of ``host`` (default: this agent's), oldest
    first, optionally only those in ``vm_state`` (deleted ones only when
    asked for by name); ``marker`` is the uuid of the last instance of the
    previous page."""
    vm_state = validate_filter(vm_state, "vm_state", states.VM_STATES)
    host = validate_filter(host, "host") or default_host
    limit, marker = validate_page(limit, marker)
    return db.list_instances(host=host, vm_state=vm_state, limit=limit, marker=marker)


def instance_actions(db: Any, instance_uuid: Any) -> list[dict[str, Any]]:
    """The instance's actions, oldest first, each with its events. An
    action's ``fault`` is the error it ended with ("CODE [params]", as the
    instance fault has it) or None; a failed event carries its action's
    fault. The tracebacks the events keep in the database stay there: they
    are for the operator's eyes, and a dom0 error's text may hold a session
    reference. Raises INSTANCE_NOT_FOUND."""
    uuid = validate_uuid(instance_uuid)
    db.get_instance(uuid)
    out = []
    for action in db.list_actions(uuid):
        item = {k: action.get(k) for k in ACTION_FIELDS}
        fault = action.get("message") if action.get("result") == "error" else None
        item["fault"] = fault
        item["events"] = [
            {**{k: e.get(k) for k in EVENT_FIELDS},
             "fault": fault if e.get("result") == "error" else None}
            for e in action.get("events", [])]
        out.append(item)
    return out
