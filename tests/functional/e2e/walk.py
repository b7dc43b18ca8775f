"""One instance walked through requests on one stack, each request
settled and checked against the database and the hypervisor (through the
stack's view, hypervisor.py): the lifecycle walks of both drivers share it.

:func:`pause_and_suspend` is the part both drivers support (pause,
unpause, suspend, resume, with the refusals of each state);
test_lifecycle_e2e.py continues it with rescue and resize on XenAPI.
"""

from __future__ import annotations

from typing import Any

import pytest

from compute_agent import exceptions

from .stack import watch

# The flavor a refused resize asks for (never applied).
RESIZE_FLAVOR = {"vcpus": 3, "memory_mb": 768, "root_gb": 3}
RUNNING, PAUSED, SHUTDOWN, SUSPENDED = 1, 3, 4, 7


def settle(stack: Any, uuid: str, want: str) -> dict:
    """Wait until the instance is settled in ``want`` (a cast may not be
    consumed yet; a request accepted with confirm=True has its task_state)."""
    inst = watch(stack.api, stack.host, uuid, until=lambda i: i["task_state"] is None and (
        i["vm_state"] == want or (i["fault"] or {}).get("code") not in (None, "GUEST_CRASHED")
    ))[0]
    assert inst["vm_state"] == want, f"{stack.name}: {inst}"
    return inst


class Walk:
    """One instance walked through the lifecycle on one stack."""

    def __init__(self, stack: Any, uuid: str):
        self.stack, self.uuid = stack, uuid
        self.api, self.host = stack.api, stack.host
        self.done: list[str] = []

    def do(self, method: str, want: str, *args) -> dict:
        accepted = getattr(self.api, method)(self.host, self.uuid, *args, confirm=True)
        assert accepted["task_state"] is not None, accepted
        self.done.append(method)
        return settle(self.stack, self.uuid, want)

    def refused(self, state: str, *methods: str) -> None:
        for method in methods:
            args = (RESIZE_FLAVOR,) if method == "resize_instance" else ()
            with pytest.raises(exceptions.InstanceInvalidState) as err:
                getattr(self.api, method)(self.host, self.uuid, *args, confirm=True)
            assert err.value.params[:3] == [self.uuid, "vm_state", state], (method, err.value)
            self.done.append(f"refused {method}")

    def power(self, inst: dict, power: int) -> None:
        """The database and the hypervisor both show ``power``."""
        assert inst["power_state"] == power, (self.stack.name, inst)
        held = self.stack.hypervisor.power_states().get(self.uuid)
        assert held == power, (self.stack.name, held)

    def check_actions(self) -> None:
        """Every request left one action, in order: the create, a success
        per request done, an INSTANCE_INVALID_STATE error per refusal."""
        actions = self.api.get_instance_actions(self.host, self.uuid)
        names = [(a["action"], a["result"]) for a in actions]
        assert names[0] == ("create", "success")
        wanted = [m for m in self.done if not m.startswith("refused")]
        successes = [a for a in actions[1:] if a["result"] == "success"]
        # power sync writes no action; every request left one, in order
        assert len(successes) == len(wanted), (names, wanted)
        refusals = [a for a in actions if a["result"] == "error"]
        assert len(refusals) == len([m for m in self.done if m.startswith("refused")])
        assert all(a["fault"].startswith("INSTANCE_INVALID_STATE") for a in refusals)
        assert all(e["result"] == "success" and e["finish_time"]
                   for a in successes for e in a["events"])


def pause_and_suspend(w: Walk) -> None:
    """From active: pause and unpause, suspend and resume, and what each
    state refuses; back to active."""
    w.refused("active", "unpause_instance", "resume_instance", "unrescue_instance",
              "confirm_resize", "revert_resize")
    w.power(w.do("pause_instance", "paused"), PAUSED)
    w.refused("paused", "pause_instance", "suspend_instance", "resume_instance",
              "rescue_instance", "resize_instance", "stop_instance")
    w.power(w.do("unpause_instance", "active"), RUNNING)
    w.power(w.do("suspend_instance", "suspended"), SUSPENDED)
    w.refused("suspended", "pause_instance", "unpause_instance", "suspend_instance",
              "rescue_instance", "resize_instance")
    w.power(w.do("resume_instance", "active"), RUNNING)
