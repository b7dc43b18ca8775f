"""kill -9 in the middle of a suspend, a resize and a rescue (issue 8): a
real ``xapi-sim`` process whose VM.suspend, VDI.resize and VDI.create tasks
take seconds, a real ``compute-agent`` (XenAPI driver) killed with SIGKILL
while all three run in dom0, real RabbitMQ and SQLite or MariaDB.

After the restart every instance settles and keeps no task_state: the
suspend, whose task ran on in dom0, is re-attached to and completes; the
resize and the rescue are rolled back (the old flavor, root disk and power
state; the rescue VM and its disk removed) with fault OPERATION_INTERRUPTED;
no tracked task stays pending, and dom0 holds nothing the database does not
know (tests/functional/e2e/stack.py: assert_dom0_matches_db).
"""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from compute_agent import exceptions
from compute_agent.db.api import Database
from tests.functional.db_fixtures import make_migrated_database_url
from tests.functional.e2e.stack import assert_dom0_matches_db, instance_spec
from tests.functional.harness import AgentProcess, Rpc, SimProcess, wait_until

pytestmark = pytest.mark.timeout(150)

LONG_S = 4.0  # how long the interrupted dom0 tasks take
SETTLE_LIMIT_S = 40.0  # bound for recovery after the restart; never a speed assertion
LONG_TASKS = ("VM.suspend", "VDI.resize", "VDI.create")
SMALL = {"vcpus": 1, "memory_mb": 256, "root_gb": 1}
BIG = {"vcpus": 2, "memory_mb": 512, "root_gb": 2}


class Crashable:
    def __init__(self, workdir: Path, database: str):
        self.url, self._drop = make_migrated_database_url(database)
        self.sim = SimProcess(workdir, task_duration=0.1)
        self.rpc = Rpc("ca_lifecrash")
        self.host = f"ca-lifecrash-{uuidlib.uuid4().hex[:10]}"
        self.rpc.hosts.append(self.host)
        self.agent = AgentProcess(workdir, host=self.host, db_url=self.url,
                                  sim_url=self.sim.url, exchange=self.rpc.exchange,
                                  topic=self.rpc.topic)
        self.db = Database(self.url)
        self.api = self.rpc.api

    def close(self) -> None:
        if self.agent.proc is not None:
            self.agent.kill9()
        self.sim.stop()
        self.rpc.close()
        self.db.dispose()
        self._drop()

    def settled(self, uuid: str) -> dict | None:
        try:
            inst = self.db.get_instance(uuid, internal=True)
        except exceptions.InstanceNotFound:
            return None  # a build cast not consumed yet
        return inst if inst["task_state"] is None and inst["vm_state"] != "building" else None

    def long_tasks_running(self) -> set[str]:
        with self.sim.session() as x:
            return {rec["name_label"].removeprefix("Async.")
                    for rec in x.task.get_all_records().values()
                    if rec["status"] == "pending"} & set(LONG_TASKS)


@pytest.fixture
def crashable(tmp_path: Path) -> Iterator:
    made: list[Crashable] = []

    def make(database: str) -> Crashable:
        env = Crashable(tmp_path, database)
        made.append(env)
        env.sim.start()
        env.agent.start()
        env.agent.wait_serving(env.api)
        return env

    yield make
    for env in made:
        env.close()


@pytest.mark.parametrize("database", ["sqlite", "mysql"])
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
            env.long_tasks_running() == set(LONG_TASKS)

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
