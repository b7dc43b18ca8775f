"""Power states as the agent reports them (nova's numbering, kept so that
schedulers that already know it need no table).

The hypervisor is the source of truth for these; vm_state and task_state live
in the database and are the agent's own.
"""

from __future__ import annotations

NOSTATE = 0
RUNNING = 1
PAUSED = 3
SHUTDOWN = 4
CRASHED = 6
SUSPENDED = 7

# The contract spells the "no state" constant both ways; keep both names.
POWER_NOSTATE = NOSTATE

STATE_MAP: dict[int, str] = {
    NOSTATE: "nostate",
    RUNNING: "running",
    PAUSED: "paused",
    SHUTDOWN: "shutdown",
    CRASHED: "crashed",
    SUSPENDED: "suspended",
}

ALL = tuple(STATE_MAP)


def name(state: int | None) -> str:
    """A readable name for a power state number (for logs and the CLI)."""
    if state is None:
        return "-"
    return STATE_MAP.get(state, f"unknown({state})")
