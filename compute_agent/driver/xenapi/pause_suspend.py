"""Pause / unpause and suspend / resume of an instance's VM, each one
``Async.VM.*`` task. A VM already in the state asked for is left alone (a
retried request, or another XenAPI client got there first); any other
power state fails with xapi's VM_BAD_POWER_STATE."""

from __future__ import annotations

from typing import Any

from compute_agent.driver.base import Operation
from compute_agent.driver.xenapi.tasks import TaskRunner
from compute_agent.driver.xenapi.vm_ops import VMOps

# operation -> (the xapi power state it ends in, the Async call, its extra arguments)
CALLS: dict[str, tuple[str, str, tuple[Any, ...]]] = {
    "pause": ("Paused", "VM.pause", ()),
    "unpause": ("Running", "VM.unpause", ()),
    "suspend": ("Suspended", "VM.suspend", ()),
    # start_paused, force
    "resume": ("Running", "VM.resume", (False, False)),
}


class PauseSuspend:
    def __init__(self, runner: TaskRunner, vmops: VMOps):
        self.runner = runner
        self.vmops = vmops

    def change(self, op: Operation, instance: dict[str, Any], operation: str) -> None:
        target, method, extra = CALLS[operation]
        ref, rec = self.vmops.require(instance)
        if rec.get("power_state") == target:
            return
        self.runner.run(op, method, ref, *extra)
