"""The request table: every request the manager runs, in one row.

A row says what the request is called in the records it leaves (action and
event), which driver operation it calls and which [tasks] option bounds it,
the task_state it holds while it runs, the rule of states.ALLOWED_FROM that
says where it may start, the vm_state it settles into when it succeeds, and
what recovery does when an earlier run left it half done (``on_interrupt``):

- ``settle``    settle from the power state dom0 shows (recovery_rules.decide);
- ``complete``  call the driver operation again (it is idempotent) and
                record the request as finished;
- ``roll_back`` call the driver operation ``undo_op`` (idempotent), which puts
                back what the request changed, and record it as interrupted.

Two consumers share it instead of keeping it twice: the manager (runner.py,
which runs requests) and recovery (recovery_rules.py, which settles those an
earlier run left half done), so that a recovered request finishes the same
action record and event, sends the same notifications and gets the same
timeout as one that ran to its end. Adding an operation starts with a row
here (docs/adding-an-operation.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compute_agent.compute import states
from compute_agent.driver import power_state


@dataclass(frozen=True)
class Request:
    """A request: its name, the instance action record and action event it
    writes, the driver operation it calls, the [tasks] option that holds
    that operation's timeout, the task_state it holds while it runs, the
    ALLOWED_FROM rule for the vm_states it may start from, and the vm_state
    it leaves on success (None: the one the power state means)."""

    name: str
    action: str
    event: str
    driver_op: str
    timeout_opt: str
    task_state: str
    rule: str
    settles_to: str | None
    on_interrupt: str = "settle"
    undo_op: str | None = None


SETTLE, COMPLETE, ROLL_BACK = "settle", "complete", "roll_back"


REQUESTS: dict[str, Request] = {
    r.name: r for r in (
        Request("build", "create", "compute_build_instance", "spawn", "spawn_timeout",
                states.SPAWNING, "build", states.ACTIVE),
        Request("start", "start", "compute_start_instance", "power_on", "power_timeout",
                states.POWERING_ON, "start", states.ACTIVE),
        Request("stop", "stop", "compute_stop_instance", "power_off", "power_timeout",
                states.POWERING_OFF, "stop", states.STOPPED),
        # A HARD reboot holds rebooting_hard and starts from reboot_hard's
        # states: the manager picks those by reboot_type (REBOOT_RULES).
        Request("reboot", "reboot", "compute_reboot_instance", "reboot", "reboot_timeout",
                states.REBOOTING, "reboot_soft", states.ACTIVE),
        Request("terminate", "delete", "compute_terminate_instance", "destroy",
                "destroy_timeout", states.DELETING, "terminate", states.DELETED),
        # RPC 1.2 (issue 8): pause, suspend, rescue, resize.
        Request("pause", "pause", "compute_pause_instance", "pause", "power_timeout",
                states.PAUSING, "pause", states.PAUSED),
        Request("unpause", "unpause", "compute_unpause_instance", "unpause", "power_timeout",
                states.UNPAUSING, "unpause", states.ACTIVE),
        Request("suspend", "suspend", "compute_suspend_instance", "suspend", "suspend_timeout",
                states.SUSPENDING, "suspend", states.SUSPENDED),
        Request("resume", "resume", "compute_resume_instance", "resume", "suspend_timeout",
                states.RESUMING, "resume", states.ACTIVE),
        Request("rescue", "rescue", "compute_rescue_instance", "rescue", "rescue_timeout",
                states.RESCUING, "rescue", states.RESCUED, ROLL_BACK, "unrescue"),
        Request("unrescue", "unrescue", "compute_unrescue_instance", "unrescue",
                "rescue_timeout", states.UNRESCUING, "unrescue", states.ACTIVE, COMPLETE),
        Request("resize", "resize", "compute_resize_instance", "resize", "resize_timeout",
                states.RESIZE_MIGRATING, "resize", states.RESIZED, ROLL_BACK, "revert_resize"),
        Request("confirm_resize", "confirmResize", "compute_confirm_resize", "confirm_resize",
                "resize_timeout", states.RESIZE_CONFIRMING, "confirm_resize", None, COMPLETE),
        Request("revert_resize", "revertResize", "compute_revert_resize", "revert_resize",
                "resize_timeout", states.RESIZE_REVERTING, "revert_resize", None, COMPLETE),
        # The instance keeps running: it settles into what its power state means.
        Request("snapshot", "createImage", "compute_snapshot_instance", "snapshot",
                "snapshot_timeout", states.IMAGE_SNAPSHOT, "snapshot", None),
        # RPC 1.6 (issue 12): the source agent's side of a cold and of a live
        # migration (compute/migration.py runs them and settles them after a
        # crash; the destination has no row). Both hold task_state migrating
        # (resize_migrating is the resize's); live last, so that recovery's
        # plain rules name it for an instance of neither kind.
        Request("migrate", "migrate", "compute_migrate_instance", "cold_migrate",
                "cold_migration_timeout", states.MIGRATING, "migrate", states.STOPPED),
        Request("live_migrate", "live-migration", "compute_live_migrate_instance",
                "live_migrate", "live_migration_timeout", states.MIGRATING, "live_migrate",
                states.ACTIVE),
    )
}

# reboot_type -> (ALLOWED_FROM rule, task_state) of a reboot.
REBOOT_RULES: dict[str, tuple[str, str]] = {
    "SOFT": ("reboot_soft", states.REBOOTING),
    "HARD": ("reboot_hard", states.REBOOTING_HARD),
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
