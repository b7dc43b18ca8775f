"""What a driver tells recovery about a hypervisor task an earlier run of the
agent started (see ComputeDriver.reattach_task)."""

from __future__ import annotations

from dataclasses import dataclass

PENDING = "pending"
SUCCESS = "success"
FAILURE = "failure"
CANCELLED = "cancelled"
# Not a hypervisor status: the hypervisor no longer knows the task (destroyed,
# garbage collected, or lost in a restart of its API), so its outcome is unknown.
LOST = "lost"

FINAL = (SUCCESS, FAILURE, CANCELLED, LOST)


@dataclass
class TaskState:
    """``status`` is one of PENDING, SUCCESS, FAILURE, CANCELLED, LOST;
    ``result`` the decoded result as a string (success); ``error`` the
    hypervisor's error list (failure) or ``['TASK_LOST', ref]`` (lost);
    ``timed_out`` True when reattach_task cancelled the task itself because
    its ``timeout`` ran out (the status then says how the task ended, or
    PENDING if it still had not)."""

    status: str
    progress: float = 0.0
    result: str | None = None
    error: list[str] | None = None
    timed_out: bool = False

    @property
    def ended(self) -> bool:
        return self.status in FINAL
