"""kill -9 in the middle of the operations of issue 8: a real ``xapi-sim``
process whose tasks of interest take seconds, a real ``compute-agent``
(XenAPI driver) killed with SIGKILL while they run in dom0, real RabbitMQ
and MariaDB or PostgreSQL.

- suspend, resize and rescue (MariaDB): after the restart the
  suspend, whose task ran on in dom0, is re-attached to and completes; the
  resize and the rescue are rolled back (the old flavor, root disk and power
  state; the rescue VM and its disk removed) with fault
  OPERATION_INTERRUPTED;
- the ways back, pause, unpause, resume, unrescue, confirm and revert
  (PostgreSQL): each is completed.

Every instance settles and keeps no task_state, no tracked task stays
pending, and dom0 holds nothing the database does not know
(tests/functional/e2e/stack.py: assert_dom0_matches_db).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from compute_agent import exceptions
from tests.functional.agent_stack import AgentStack
from tests.functional.e2e.stack import assert_dom0_matches_db, instance_spec
from tests.functional.harness import wait_until

pytestmark = pytest.mark.timeout(150)

LONG_S = 4.0  # how long the interrupted dom0 tasks take
SETTLE_LIMIT_S = 40.0  # bound for recovery after the restart; never a speed assertion
LONG_TASKS = ("VM.suspend", "VDI.resize", "VDI.create")
SMALL = {"vcpus": 1, "memory_mb": 256, "root_gb": 1}
BIG = {"vcpus": 2, "memory_mb": 512, "root_gb": 2}


class Crashable(AgentStack):
    """The agent stack (agent_stack.py) on ``database`` with quick dom0
    tasks, and what these tests do with it."""

    def __init__(self, workdir: Path, database: str):
        super().__init__(workdir, "lifecrash", backend=database, task_duration=0.1)

    def settled(self, uuid: str) -> dict | None:
        try:
            inst = self.db.get_instance(uuid, internal=True)
        except exceptions.InstanceNotFound:
            return None  # a build cast not consumed yet
        return inst if inst["task_state"] is None and inst["vm_state"] != "building" else None

    def long_tasks_running(self, methods: tuple[str, ...] = LONG_TASKS) -> list[str]:
        """The pending dom0 tasks of ``methods``, sorted (one per task)."""
        with self.sim.session() as x:
            return sorted(rec["name_label"].removeprefix("Async.")
                          for rec in x.task.get_all_records().values()
                          if rec["status"] == "pending"
                          and rec["name_label"].removeprefix("Async.") in methods)

    def build(self, name: str) -> str:
        body = instance_spec(name, flavor=dict(SMALL))
        self.api.build_instance(self.host, body)
        return body["uuid"]

    def wait_settled(self, uuid: str, want: str, limit: float = 30) -> dict:
        inst = wait_until(lambda: self.settled(uuid), limit, f"instance {uuid} to settle", 0.05)
        assert inst["vm_state"] == want, inst
        return inst


@pytest.fixture
def crashable(tmp_path: Path) -> Iterator[Callable[[str], Crashable]]:
    with contextlib.ExitStack() as made:  # each stack closed after the test
        yield lambda database: made.enter_context(Crashable(tmp_path, database)).start()


# One database per crash test (the e2e walk runs on all three; SQLite's
# crash recovery is test_crash_recovery.py's).
@pytest.mark.parametrize("database", ["mysql"])
def test_kill9_mid_suspend_resize_and_rescue_settles_everything(crashable, database):
    env = crashable(database)
    bodies = {name: instance_spec(f"crash-{name}", flavor=dict(SMALL))
              for name in ("suspend", "resize", "rescue")}
    for body in bodies.values():
        env.api.build_instance(env.host, body)
    uuids = {name: body["uuid"] for name, body in bodies.items()}
    for uuid in uuids.values():
        assert wait_until(lambda u=uuid: env.settled(u), 30, "the builds")["vm_state"] == \
            "active"
    for method in LONG_TASKS:
        env.sim.control.set_duration(method, LONG_S)
    env.api.suspend_instance(env.host, uuids["suspend"], confirm=True)
    env.api.resize_instance(env.host, uuids["resize"], BIG, confirm=True)
    env.api.rescue_instance(env.host, uuids["rescue"], confirm=True)

    def all_in_flight() -> bool:
        # Running in dom0 and recorded as tracked tasks (the agent records a
        # task right after dom0 hands out its ref: wait for both).
        tracked = {t["operation"] for t in env.db.list_tracked_tasks(agent_host=env.host)}
        return tracked >= {"suspend", "resize", "rescue"} and \
            env.long_tasks_running() == sorted(LONG_TASKS)

    wait_until(all_in_flight, 20, "the three long dom0 tasks to run", 0.05)
    env.agent.kill9()
    pending = env.db.list_tracked_tasks(agent_host=env.host)
    assert {t["operation"] for t in pending} >= {"suspend", "resize", "rescue"}, pending
    for method in LONG_TASKS:
        env.sim.control.set_duration(method, 0.1)

    restarted = time.monotonic()
    env.agent.start()
    for uuid in uuids.values():
        wait_until(lambda u=uuid: env.settled(u), SETTLE_LIMIT_S,
                   f"instance {uuid} to settle after the restart", 0.1)
    took = time.monotonic() - restarted

    suspended = env.db.get_instance(uuids["suspend"], internal=True)
    assert (suspended["vm_state"], suspended["power_state"]) == ("suspended", 7), suspended
    resized = env.db.get_instance(uuids["resize"], internal=True)
    assert (resized["vm_state"], resized["power_state"]) == ("active", 1), resized
    assert resized["flavor"] == SMALL
    assert resized["fault"]["code"] == "OPERATION_INTERRUPTED"
    rescued = env.db.get_instance(uuids["rescue"], internal=True)
    assert (rescued["vm_state"], rescued["power_state"]) == ("active", 1), rescued
    assert rescued["fault"]["code"] == "OPERATION_INTERRUPTED"
    with env.sim.session() as x:
        vm = x.VM.get_record(resized["vm_ref"])
        assert (int(vm["VCPUs_max"]), int(vm["memory_static_max"])) == (1, 256 * 1024**2)
        assert "compute_agent_resize_flavor" not in vm["other_config"]
    assert_dom0_matches_db(env.sim, env.db, env.host)
    assert env.db.list_tracked_tasks(agent_host=env.host) == [], "tracked tasks left pending"
    actions = {name: [(a["action"], a["result"]) for a in env.db.list_actions(uuid)]
               for name, uuid in uuids.items()}
    assert actions == {"suspend": [("create", "success"), ("suspend", "success")],
                       "resize": [("create", "success"), ("resize", "error")],
                       "rescue": [("create", "success"), ("rescue", "error")]}
    print(f"\n[{database}] {len(pending)} tasks in flight at the kill; all settled "
          f"{took:.1f} s after the restart")
    # The agent serves normally afterwards.
    env.api.resize_instance(env.host, uuids["resize"], BIG, confirm=True)
    inst = wait_until(lambda: env.settled(uuids["resize"]), 30, "the second resize")
    assert (inst["vm_state"], inst["flavor"]) == ("resized", BIG)


BACK_TASKS = ("VM.resume", "VM.pause", "VM.unpause", "VDI.destroy")


def test_kill9_mid_the_ways_back_completes_each(crashable):
    env = crashable("postgresql")
    names = ("resume", "pause", "unpause", "unrescue", "confirm", "revert")
    uuids = {name: env.build(f"back-{name}") for name in names}
    for uuid in uuids.values():
        env.wait_settled(uuid, "active")
    # Into the states the ways back start from (dom0 quick).
    for name, method, args in (
            ("resume", "suspend_instance", ()), ("unpause", "pause_instance", ()),
            ("unrescue", "rescue_instance", ()), ("confirm", "resize_instance", (BIG,)),
            ("revert", "resize_instance", (BIG,))):
        getattr(env.api, method)(env.host, uuids[name], *args, confirm=True)
    for name, state in (("resume", "suspended"), ("unpause", "paused"),
                        ("unrescue", "rescued"), ("confirm", "resized"), ("revert", "resized")):
        env.wait_settled(uuids[name], state)
    for method in BACK_TASKS:
        env.sim.control.set_duration(method, LONG_S)
    for name, method in (("resume", "resume_instance"), ("pause", "pause_instance"),
                         ("unpause", "unpause_instance"), ("unrescue", "unrescue_instance"),
                         ("confirm", "confirm_resize"), ("revert", "revert_resize")):
        getattr(env.api, method)(env.host, uuids[name], confirm=True)
    ops = {"resume", "pause", "unpause", "unrescue", "confirm_resize", "revert_resize"}
    # unrescue, confirm and revert each end in a VDI.destroy (the rescue
    # disk, the kept root disk, the grown root disk).
    wanted = sorted(["VM.resume", "VM.pause", "VM.unpause"] + ["VDI.destroy"] * 3)

    def all_in_flight() -> bool:
        tracked = {t["operation"] for t in env.db.list_tracked_tasks(agent_host=env.host)}
        return tracked >= ops and env.long_tasks_running(BACK_TASKS) == wanted

    wait_until(all_in_flight, 30, "the six long dom0 tasks to run", 0.05)
    env.agent.kill9()
    for method in BACK_TASKS:
        env.sim.control.set_duration(method, 0.1)
    env.agent.start()
    settled = {name: env.wait_settled(uuids[name], want, SETTLE_LIMIT_S) for name, want in (
        ("resume", "active"), ("pause", "paused"), ("unpause", "active"),
        ("unrescue", "active"), ("confirm", "active"), ("revert", "active"))}
    assert settled["confirm"]["flavor"] == BIG
    assert settled["revert"]["flavor"] == SMALL
    assert all(i["power_state"] == (3 if n == "pause" else 1) for n, i in settled.items())
    for name, uuid in uuids.items():
        last = env.db.list_actions(uuid)[-1]
        assert last["result"] == "success", (name, last)
    assert_dom0_matches_db(env.sim, env.db, env.host)
    assert env.db.list_tracked_tasks(agent_host=env.host) == [], "tracked tasks left pending"
