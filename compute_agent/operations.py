"""What each request the manager runs is called in the records it leaves.

One table for the manager (which runs requests) and recovery.py (which
settles those an earlier run left half done), so that a recovered request
finishes the same action record and event, sends the same notifications and
gets the same timeout as one that ran to its end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compute_agent import states
from compute_agent.driver import power_state


@dataclass(frozen=True)
class Request:
    """A request: its name, the instance action record and action event it
    writes, the driver operation it calls and the [tasks] option that holds
    that operation's timeout."""

    name: str
    action: str
    event: str
    driver_op: str
    timeout_opt: str


REQUESTS: dict[str, Request] = {
    r.name: r for r in (
        Request("build", "create", "compute_build_instance", "spawn", "spawn_timeout"),
        Request("start", "start", "compute_start_instance", "power_on", "power_timeout"),
        Request("stop", "stop", "compute_stop_instance", "power_off", "power_timeout"),
        Request("reboot", "reboot", "compute_reboot_instance", "reboot", "reboot_timeout"),
        Request("terminate", "delete", "compute_terminate_instance", "destroy",
                "destroy_timeout"),
    )
}

# Driver operation -> the [tasks] option with its timeout.
TIMEOUT_OPTS: dict[str, str] = {r.driver_op: r.timeout_opt for r in REQUESTS.values()}

# Power state -> the stable vm_state it means when nothing else is known
# (after a failed or interrupted operation).
SETTLED_VM_STATE: dict[int, str] = {
    power_state.RUNNING: states.ACTIVE,
    power_state.SHUTDOWN: states.STOPPED,
    power_state.PAUSED: states.PAUSED,
    power_state.SUSPENDED: states.SUSPENDED,
}


def timeout_of(conf: Any, driver_op: str) -> float:
    """Seconds a driver operation may take ([tasks] default_timeout for an
    operation not in the table)."""
    return float(getattr(conf.tasks, TIMEOUT_OPTS.get(driver_op, "default_timeout")))


def driver_view(inst: dict[str, Any]) -> dict[str, Any]:
    """What a driver gets: the instance with networks and metadata."""
    view = dict(inst)
    view["networks"] = inst.get("networks") or []
    view["metadata"] = inst.get("metadata") or {}
    return view
