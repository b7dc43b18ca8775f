"""Crash safety of dom0 tasks, end to end (issue 4): a real ``xapi-sim``
process, a real ``compute-agent`` process with the XenAPI driver, real
RabbitMQ, SQLite and PostgreSQL; dom0 checked through a separate XenAPI
SDK session.

- 20 builds cast through ComputeAPI, the agent killed with SIGKILL mid-way
  and started again: every instance ends active or error (with a fault)
  within 30 s of the restart, none keeps a task_state, the database and dom0
  agree VM for VM and nothing is built twice. Also with the simulator
  restarted (process, or its xapi) while the agent is down.
- Power state changes made by the guest (the simulator's control API)
  reach the database within a second.
- cancel_operation during a long build and a long start; timeout expiry.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from compute_agent import exceptions
from tests.functional.agent_stack import AgentStack
from tests.functional.harness import sdk_session, wait_until

BUILDS = 20
RECOVERY_LIMIT_S = 30.0  # the bound, from the restart
EVENT_LIMIT_S = 1.0  # the bound for a guest's power change to reach the DB

pytestmark = pytest.mark.timeout(120)


class Env(AgentStack):
    """A simulator, an agent on it with notifications, a client and the
    agent's database (agent_stack.py), and what these tests do with them."""

    def __init__(self, workdir: Path, backend: str, task_duration: float,
                 defaults: dict[str, Any] | None = None, **tasks: Any):
        super().__init__(
            workdir, "crash", backend=backend, task_duration=task_duration,
            notifications=True,
            options={"DEFAULT": {"max_concurrent_builds": 10, **(defaults or {})},
                     "xenserver": {"connection_concurrent": 10}, "tasks": tasks})

    def build(self, name: str, **flavor: int) -> dict[str, Any]:
        body = {"uuid": str(uuidlib.uuid4()), "name": name,
                "flavor": {"vcpus": 1, "memory_mb": flavor.get("memory_mb", 256),
                           "root_gb": 1},
                "image": {"id": None, "url": None, "disk_format": None},
                "networks": [], "metadata": {}}
        self.api.build_instance(self.agent.host, body)
        return body

    def settled(self, uuid: str, want: str | None = None, timeout: float = 30) -> dict:
        def check():
            try:
                inst = self.db.get_instance(uuid, internal=True)
            except exceptions.InstanceNotFound:
                return None
            if inst["task_state"] is None and inst["vm_state"] != "building" and (
                    want is None or inst["vm_state"] == want):
                return inst
            return None

        return wait_until(check, timeout, f"instance {uuid} to settle ({want or 'any'})")


@pytest.fixture
def make_env(tmp_path) -> Iterator[Callable[..., Env]]:
    made: list[Env] = []

    def make(backend: str = "sqlite", task_duration: float = 0.2,
             defaults: dict[str, Any] | None = None, **tasks: Any) -> Env:
        env = Env(tmp_path, backend, task_duration, defaults, **tasks)
        made.append(env)
        return env.start()

    yield make
    for env in made:
        env.close()


# --------------------------------------------------------------------------- dom0 vs database


def dom0_state(xenapi: Any, agent_host: str) -> tuple[dict[str, list], dict]:
    """(instance uuid -> [VM record], instance uuid -> [VDI uuid]) of what
    the agent marked as its own in dom0."""
    vms: dict[str, list] = {}
    for rec in xenapi.VM.get_all_records().values():
        other = rec["other_config"]
        if rec["is_control_domain"] or other.get("compute_agent_host") != agent_host:
            continue
        vms.setdefault(other.get("compute_agent_instance_uuid", ""), []).append(rec)
    vdis: dict[str, list] = {}
    for rec in xenapi.VDI.get_all_records().values():
        owner = rec["other_config"].get("compute_agent_instance_uuid")
        if owner:
            vdis.setdefault(owner, []).append(rec["uuid"])
    return vms, vdis


def assert_db_and_dom0_agree(env: Env, uuids: list[str]) -> dict[str, int]:
    with env.sim.session() as xenapi:
        vms, vdis = dom0_state(xenapi, env.agent.host)
    counts = {"active": 0, "error": 0}
    for uuid in uuids:
        inst = env.db.get_instance(uuid, internal=True)
        mine = vms.get(uuid, [])
        assert len(mine) <= 1, f"{uuid} built {len(mine)} times"
        assert inst["task_state"] is None, inst
        assert inst["vm_state"] in ("active", "error"), inst
        counts[inst["vm_state"]] += 1
        if inst["vm_state"] == "active":
            assert len(mine) == 1 and mine[0]["power_state"] == "Running", (inst, mine)
            assert inst["power_state"] == 1
        else:
            assert inst["fault"] is not None, inst
            if inst["power_state"] == 0:
                assert mine == [], (inst, mine)
                assert vdis.get(uuid, []) == [], f"disks of {uuid} left behind"
            else:
                assert len(mine) == 1, (inst, mine)
    assert set(vms) <= set(uuids), f"VMs unknown to the database: {set(vms) - set(uuids)}"
    return counts


# --------------------------------------------------------------------------- the crash test


def starting_vms(env: Env) -> int:
    with env.sim.session() as xenapi:
        vms, _ = dom0_state(xenapi, env.agent.host)
    return sum("start_on" in rec["current_operations"].values()
               for recs in vms.values() for rec in recs)


@pytest.mark.parametrize("backend, dom0_restart, concurrency", [
    ("sqlite", None, "threading"),
    ("postgresql", None, "threading"),
    ("sqlite", "process", "threading"),
    ("postgresql", "xapi", "threading"),
    ("postgresql", None, "eventlet"),
])
def test_kill9_mid_build_every_instance_recovers(make_env, backend, dom0_restart, concurrency):
    env = make_env(backend, task_duration=3, defaults={"concurrency_backend": concurrency})
    bodies = [env.build(f"crash-{i:02d}") for i in range(BUILDS)]
    uuids = [b["uuid"] for b in bodies]
    host = env.agent.host
    # Every build accepted (its row written), and dom0 busy with several.
    wait_until(lambda: len(env.db.list_instances(host=host)) == BUILDS, 20,
               "all builds to be accepted")
    # Kill while VMs are being started: their VM.start_on tasks run on in dom0
    # and are re-attached to, while the builds still queued never got there.
    wait_until(lambda: starting_vms(env) >= 3, 30, "VMs starting in dom0", 0.2)
    env.agent.kill9()
    in_flight = env.db.list_tracked_tasks(agent_host=host)
    busy = [i for i in env.db.list_instances(host=host) if i["task_state"] is not None]
    assert in_flight and busy, "the kill came too late to test anything"
    if dom0_restart == "process":
        env.sim.crash_and_restart()
    elif dom0_restart == "xapi":
        env.sim.control.restart_xapi()

    restarted = time.monotonic()
    env.agent.start()

    def all_settled() -> bool:
        insts = env.db.list_instances(host=host)
        return len(insts) == BUILDS and all(
            i["task_state"] is None and i["vm_state"] in ("active", "error") for i in insts)

    wait_until(all_settled, RECOVERY_LIMIT_S, "every instance to settle after the restart",
               0.1)
    took = time.monotonic() - restarted
    counts = assert_db_and_dom0_agree(env, uuids)
    assert env.db.list_tracked_tasks(agent_host=host) == [], "tracked tasks left pending"
    print(f"\n[{backend}, {concurrency}, dom0 restart {dom0_restart}] {len(busy)} busy / "
          f"{len(in_flight)} "
          f"tasks in flight at the kill; settled {took:.1f} s after the restart: {counts}")
    # The agent serves normally afterwards: an instance recovered as active
    # can be stopped.
    active = [u for u in uuids if env.db.get_instance(u)["vm_state"] == "active"]
    if active:
        env.api.stop_instance(host, active[0], confirm=True)
        assert env.settled(active[0], "stopped", timeout=20)["power_state"] == 4


# --------------------------------------------------------------------------- power state events


def vm_ref_of(env: Env, uuid: str) -> str:
    return env.db.get_instance(uuid, internal=True)["vm_ref"]


def test_guest_power_changes_reach_the_database_within_a_second(make_env):
    env = make_env("sqlite", task_duration=0.1)
    body = env.build("events")
    uuid = body["uuid"]
    assert env.settled(uuid)["vm_state"] == "active"
    vm = vm_ref_of(env, uuid)
    measured = {}

    def guest(event: str, expect: Callable[[dict], bool]) -> dict:
        {"shutdown": env.sim.control.guest_shutdown, "crash": env.sim.control.crash_vm,
         "reboot": env.sim.control.guest_reboot}[event](vm)
        sent = time.monotonic()
        inst = wait_until(lambda: (lambda i: i if expect(i) else None)(
            env.db.get_instance(uuid, internal=True)), EVENT_LIMIT_S,
            f"guest {event} to reach the database")
        measured[event] = time.monotonic() - sent
        return inst

    inst = guest("shutdown", lambda i: i["vm_state"] == "stopped")
    assert (inst["power_state"], inst["shutdown_reason"]) == (4, "halted")

    env.api.start_instance(env.agent.host, uuid, confirm=True)
    env.settled(uuid, "active")
    inst = guest("crash", lambda i: i["vm_state"] == "error")
    assert inst["power_state"] == 6
    assert inst["fault"]["code"] == "GUEST_CRASHED"

    env.api.reboot_instance(env.agent.host, uuid, "HARD", confirm=True)
    env.settled(uuid, "active")
    before = len(env.notes.of("instance.power_state.update", uuid))
    inst = guest("reboot", lambda i: i["shutdown_reason"] == "rebooted")
    assert (inst["vm_state"], inst["power_state"]) == ("active", 1)
    wait_until(lambda: len(env.notes.of("instance.power_state.update", uuid)) > before, 5,
               "the power state notification")
    kinds = [(n["old_vm_state"], n["instance"]["vm_state"])
             for n in env.notes.of("instance.power_state.update", uuid)]
    assert ("active", "stopped") in kinds and ("active", "error") in kinds
    print(f"\nguest event -> database: {measured}")


# --------------------------------------------------------------------------- cancel and timeout


def wait_for_dom0_op(env: Env, uuid: str, op: str) -> None:
    def running() -> bool:
        with env.sim.session() as xenapi:
            vms, _ = dom0_state(xenapi, env.agent.host)
        return any(op in rec["current_operations"].values() for rec in vms.get(uuid, []))

    wait_until(running, 20, f"dom0 to run {op} for {uuid}", 0.1)


def test_cancel_operation_during_a_long_build_and_a_long_start(make_env):
    env = make_env("sqlite", task_duration=0.1)
    host = env.agent.host
    env.sim.control.set_duration("VM.start_on", 60)
    body = env.build("cancel-me")
    uuid = body["uuid"]
    wait_for_dom0_op(env, uuid, "start_on")
    result = env.api.cancel_operation(host, uuid)
    assert result == {"instance_uuid": uuid, "task_state": "spawning", "cancelled": True}
    inst = env.settled(uuid, timeout=20)
    assert (inst["vm_state"], inst["power_state"]) == ("error", 0)
    assert inst["fault"]["code"] == "OPERATION_CANCELLED"
    assert assert_db_and_dom0_agree(env, [uuid]) == {"active": 0, "error": 1}
    statuses = {t["status"] for t in env.db.list_tracked_tasks(status=None, instance_uuid=uuid)}
    assert "cancelled" in statuses and "pending" not in statuses

    # A start: cancelled, the instance is back where it was (stopped).
    env.sim.control.clear()
    other = env.build("cancel-start")
    env.settled(other["uuid"], "active")
    env.api.stop_instance(host, other["uuid"], confirm=True)
    env.settled(other["uuid"], "stopped")
    env.sim.control.set_duration("VM.start_on", 60)
    env.api.start_instance(host, other["uuid"], confirm=True)
    wait_for_dom0_op(env, other["uuid"], "start_on")
    assert env.api.cancel_operation(host, other["uuid"])["cancelled"] is True
    inst = env.settled(other["uuid"], timeout=20)
    assert (inst["vm_state"], inst["power_state"]) == ("stopped", 4)
    assert inst["fault"]["code"] == "OPERATION_CANCELLED"
    # Nothing in progress: nothing to cancel.
    assert env.api.cancel_operation(host, other["uuid"]) == {
        "instance_uuid": other["uuid"], "task_state": None, "cancelled": False}


def test_timeout_cancels_the_task_and_records_a_fault(make_env):
    env = make_env("sqlite", task_duration=0.1, power_timeout=3)
    host = env.agent.host
    body = env.build("slow-start")
    uuid = body["uuid"]
    env.settled(uuid, "active")
    env.api.stop_instance(host, uuid, confirm=True)
    env.settled(uuid, "stopped")
    env.sim.control.set_duration("VM.start_on", 60)
    started = time.monotonic()
    env.api.start_instance(host, uuid, confirm=True)
    inst = env.settled(uuid, timeout=30)
    took = time.monotonic() - started
    assert (inst["vm_state"], inst["power_state"]) == ("stopped", 4)
    assert inst["fault"]["code"] == "OPERATION_TIMED_OUT"
    assert inst["fault"]["params"][:2] == ["power_on", uuid]
    tasks = env.db.list_tracked_tasks(status=None, instance_uuid=uuid)
    assert tasks[-1]["status"] == "cancelled"
    with env.sim.session() as xenapi:
        vms, _ = dom0_state(xenapi, host)
    assert vms[uuid][0]["power_state"] == "Halted"
    assert vms[uuid][0]["current_operations"] == {}
    print(f"\nstart with a 3 s power_timeout settled after {took:.1f} s")


def test_sim_restarted_from_disk_keeps_no_operation_of_a_lost_task(tmp_path):
    """What the process-restart crash test relies on: xapi (and the
    simulator) drop current_operations of tasks that did not survive."""
    from xapisim.server import Simulator

    sim = Simulator(task_duration=0.0, state_dir=str(tmp_path), persist=True).start()
    try:
        vm = sim.store.create("VM", {"name_label": "busy", "power_state": "Halted"})
        sim.store.update("VM", vm, current_operations={"OpaqueRef:gone-task": "start"})
    finally:
        sim.stop()
    again = Simulator(task_duration=0.0, state_dir=str(tmp_path), persist=True).start()
    try:
        with sdk_session(again.url, "crash-test") as session:
            rec = session.xenapi.VM.get_record(vm)
        assert rec["current_operations"] == {}
        assert "start" in rec["allowed_operations"]
    finally:
        again.stop()


# --------------------------------------------------------------------------- orphans


def make_orphan(xenapi: Any, agent_host: str) -> tuple[str, str]:
    """A VM marked as the agent's for an instance the database never heard
    of (e.g. a database restored from an old backup). -> (instance uuid, VM ref)"""
    owner = str(uuidlib.uuid4())
    vm = xenapi.VM.create({
        "name_label": "orphan", "name_description": "", "user_version": "1",
        "is_a_template": False, "affinity": "OpaqueRef:NULL",
        "memory_static_max": str(256 << 20), "memory_dynamic_max": str(256 << 20),
        "memory_dynamic_min": str(256 << 20), "memory_static_min": str(256 << 20),
        "VCPUs_params": {}, "VCPUs_max": "1", "VCPUs_at_startup": "1",
        "actions_after_shutdown": "destroy", "actions_after_reboot": "restart",
        "actions_after_crash": "destroy", "PV_bootloader": "", "PV_kernel": "",
        "PV_ramdisk": "", "PV_args": "", "PV_bootloader_args": "", "PV_legacy_args": "",
        "HVM_boot_policy": "BIOS order", "HVM_boot_params": {"order": "dc"},
        "platform": {}, "PCI_bus": "", "recommendations": "",
        "other_config": {"compute_agent_instance_uuid": owner,
                         "compute_agent_host": agent_host},
    })
    return owner, vm


@pytest.mark.parametrize("reap", [False, True])
def test_orphan_vms_are_reported_and_reaped_on_request(make_env, reap):
    env = make_env("sqlite", task_duration=0.1, defaults={"reap_orphans": reap})
    kept = env.build("kept")
    env.settled(kept["uuid"], "active")
    with env.sim.session() as xenapi:
        owner, vm = make_orphan(xenapi, env.agent.host)
        env.agent.kill9()
        env.agent.start()
        env.agent.wait_serving(env.api)

        def vm_gone() -> bool:
            return vm not in xenapi.VM.get_all()

        def reported() -> bool:
            return f"VM of instance {owner}" in env.agent.log_tail(100000)

        if reap:
            wait_until(vm_gone, 20, "the orphan VM to be removed", 0.1)
        else:
            wait_until(reported, 20, "the orphan VM to be reported", 0.1)
            assert not vm_gone()
        vms, _ = dom0_state(xenapi, env.agent.host)
    assert list(vms) == [kept["uuid"]] if reap else sorted(vms) == sorted([kept["uuid"], owner])
    assert env.db.get_instance(kept["uuid"])["vm_state"] == "active"
