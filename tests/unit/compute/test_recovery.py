"""Recovery of work an earlier run of the agent left half done: real SQLite,
the fake driver with its dom0 task table (driver/fake_tasks.py)."""

from __future__ import annotations

import datetime as dt
import threading
import uuid as uuidlib

import pytest

from compute_agent import exceptions
from compute_agent.compute import recovery, recovery_settle, states
from compute_agent.compute.locks import InstanceLocks
from compute_agent.compute.recovery import Recovery
from compute_agent.compute.recovery_rules import Decision, cause, decide
from compute_agent.compute.task_listener import TrackedTaskListener
from compute_agent.db.types import utcnow
from compute_agent.driver import power_state
from compute_agent.driver import task_status as ts
from compute_agent.driver.base import ComputeDriver, InstanceInfo
from compute_agent.driver.fake import FakeDriver

HOST = "test-host"
WAIT = 10  # bound for background threads; never a speed assertion

ACTIONS = {  # task_state -> (action record, event)
    states.SPAWNING: ("create", "compute_build_instance"),
    states.POWERING_ON: ("start", "compute_start_instance"),
    states.POWERING_OFF: ("stop", "compute_stop_instance"),
    states.REBOOTING: ("reboot", "compute_reboot_instance"),
    states.REBOOTING_HARD: ("reboot", "compute_reboot_instance"),
    states.DELETING: ("delete", "compute_terminate_instance"),
}


@pytest.fixture
def driver(agent_db) -> FakeDriver:
    d = FakeDriver()
    d.init_host(HOST)
    d.task_listener = TrackedTaskListener(agent_db, HOST, 0.0)
    return d


@pytest.fixture
def rec(agent_conf, agent_db, driver, notifier) -> Recovery:
    r = Recovery(agent_conf, agent_db, driver, notifier, HOST)
    yield r
    r.stop()


def left_behind(db, task_state, vm_state, tasks=(), power=power_state.NOSTATE, host=HOST,
                task_created=None):
    """An instance as a killed agent leaves it: in ``task_state``, its
    action started, and ``tasks`` ((ref, operation, status)) tracked."""
    uuid = str(uuidlib.uuid4())
    req = f"req-{uuidlib.uuid4()}"
    db.create_instance({
        "uuid": uuid, "name": f"vm-{uuid[:8]}", "host": host, "vm_state": vm_state,
        "task_state": task_state, "power_state": power,
        "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1},
        "image": {"id": "img", "url": None, "disk_format": "vhd"},
    })
    if task_state in ACTIONS:
        action, event = ACTIONS[task_state]
        db.action_start(uuid, action, req)
        db.action_event_start(uuid, req, event)
    for ref, operation, status in tasks:
        values = {"ref": ref, "uuid": str(uuidlib.uuid4()), "dom0_host": "fake-dom0",
                  "instance_uuid": uuid, "operation": operation, "request_id": req,
                  "agent_host": host, "status": status}
        if task_created is not None:
            values["created_at"] = task_created
        db.add_tracked_task(values)
    return uuid, req


def run(rec, reason="start"):
    result = rec.start(reason=reason)
    assert result.wait(WAIT)
    return result


def action_of(db, uuid, req):
    return next(a for a in db.list_actions(uuid) if a["request_id"] == req)


# --------------------------------------------------------------------------- the rules


@pytest.mark.parametrize("task_state, power, succeeded, expected", [
    (states.SPAWNING, power_state.RUNNING, False, Decision(states.ACTIVE, 1, True)),
    (states.SPAWNING, power_state.SHUTDOWN, True, Decision(states.ERROR, 0, False, True)),
    (states.SPAWNING, None, False, Decision(states.ERROR, 0, False, True)),
    (states.POWERING_ON, power_state.RUNNING, False, Decision(states.ACTIVE, 1, True)),
    (states.POWERING_ON, power_state.SHUTDOWN, False, Decision(states.STOPPED, 4, False)),
    (states.POWERING_ON, None, False, Decision(states.ERROR, 0, False)),
    (states.POWERING_OFF, power_state.SHUTDOWN, False, Decision(states.STOPPED, 4, True)),
    (states.POWERING_OFF, power_state.CRASHED, False, Decision(states.STOPPED, 6, True)),
    (states.POWERING_OFF, power_state.RUNNING, False, Decision(states.ACTIVE, 1, False)),
    (states.REBOOTING, power_state.RUNNING, True, Decision(states.ACTIVE, 1, True)),
    (states.REBOOTING, power_state.RUNNING, False, Decision(states.ACTIVE, 1, False)),
    (states.REBOOTING_HARD, power_state.SHUTDOWN, True, Decision(states.STOPPED, 4, False)),
    (states.DELETING, power_state.RUNNING, False, Decision(states.DELETED, 0, True, True)),
    (states.DELETING, None, False, Decision(states.DELETED, 0, True, True)),
    (states.PAUSING, power_state.PAUSED, True, Decision(states.PAUSED, 3, True)),
    (states.PAUSING, power_state.CRASHED, True, Decision(states.ERROR, 6, False)),
    # an interrupted snapshot never counts as done: its leftovers go
    (states.IMAGE_SNAPSHOT, power_state.RUNNING, True,
     Decision(states.ACTIVE, 1, False, discard_snapshot=True)),
    (states.IMAGE_SNAPSHOT, power_state.SHUTDOWN, False,
     Decision(states.STOPPED, 4, False, discard_snapshot=True)),
    (states.IMAGE_SNAPSHOT, None, False,
     Decision(states.ERROR, 0, False, discard_snapshot=True)),
])
def test_decide(task_state, power, succeeded, expected):
    info = None if power is None else InstanceInfo(power_state=power)
    assert decide(task_state, info, succeeded) == expected


def test_cause_names_why():
    u = "u1"
    interrupted = cause(u, states.SPAWNING, "spawn", [], 10)
    assert (interrupted.code, interrupted.params) == ("OPERATION_INTERRUPTED",
                                                      [u, "spawning"])
    lost = ts.TaskState(ts.LOST, error=["TASK_LOST", "r"])
    assert cause(u, states.SPAWNING, "spawn", [lost], 10).code == "OPERATION_INTERRUPTED"
    failed = ts.TaskState(ts.FAILURE, error=["VM_BAD_POWER_STATE", "OpaqueRef:x", "halted",
                                             "running"])
    err = cause(u, states.POWERING_ON, "power_on", [failed], 10)
    assert (err.code, err.params) == ("VM_BAD_POWER_STATE", ["OpaqueRef:x", "halted",
                                                             "running"])
    cancelled = ts.TaskState(ts.CANCELLED)
    assert cause(u, states.SPAWNING, "spawn", [failed, cancelled], 10).code == \
        "OPERATION_CANCELLED"
    timed = ts.TaskState(ts.CANCELLED, timed_out=True)
    err = cause(u, states.SPAWNING, "spawn", [timed], 12.5)
    assert (err.code, err.params) == ("OPERATION_TIMED_OUT", ["spawn", u, "12.5"])


# --------------------------------------------------------------------------- builds


def test_build_whose_task_finishes_after_the_restart_ends_active(rec, driver, agent_db,
                                                                 notifier):
    uuid, req = left_behind(agent_db, states.SPAWNING, states.BUILDING,
                            [("OpaqueRef:t1", "spawn", ts.PENDING)])
    driver.add_vm(uuid, power_state.SHUTDOWN)
    driver.add_task("OpaqueRef:t1", effect=(uuid, power_state.RUNNING))
    result = rec.start()
    # The instance stays busy while its task runs in dom0.
    assert agent_db.get_instance(uuid)["task_state"] == states.SPAWNING
    driver.complete_task("OpaqueRef:t1")
    assert result.wait(WAIT)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["task_state"], inst["power_state"]) == (
        states.ACTIVE, None, power_state.RUNNING)
    assert inst["fault"] is None and inst["launched_at"] is not None
    assert inst["progress"] == 100
    assert agent_db.get_tracked_task("OpaqueRef:t1")["status"] == "success"
    action = action_of(agent_db, uuid, req)
    assert action["result"] == "success"
    assert [(e["event"], e["result"]) for e in action["events"]] == [
        ("compute_build_instance", "success")]
    assert notifier.event_types() == ["instance.create.end"]
    assert result.settled == {uuid: states.ACTIVE}
    assert "OpaqueRef:t1" not in driver.task_table.refs()  # destroyed once recorded


def test_build_whose_task_was_lost_is_rolled_back(rec, driver, agent_db, notifier):
    uuid, req = left_behind(agent_db, states.SPAWNING, states.BUILDING,
                            [("OpaqueRef:gone", "spawn", ts.PENDING)])
    driver.add_vm(uuid, power_state.SHUTDOWN)  # half built, never started
    run(rec)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["task_state"], inst["power_state"]) == (
        states.ERROR, None, power_state.NOSTATE)
    assert inst["fault"]["code"] == "OPERATION_INTERRUPTED"
    assert inst["fault"]["params"] == [uuid, "spawning"]
    assert uuid not in driver.vms  # nothing half built stays in dom0
    task = agent_db.get_tracked_task("OpaqueRef:gone")
    assert task["status"] == "failure" and task["error"] == ["TASK_LOST", "OpaqueRef:gone"]
    assert action_of(agent_db, uuid, req)["result"] == "error"
    assert notifier.event_types() == ["instance.create.error"]
    assert notifier.data("instance.create.error")["fault"]["code"] == "OPERATION_INTERRUPTED"


def test_build_that_never_reached_dom0_ends_in_error(rec, driver, agent_db):
    uuid, _ = left_behind(agent_db, states.SPAWNING, states.BUILDING)
    run(rec)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["task_state"]) == (states.ERROR, None)
    assert inst["fault"]["code"] == "OPERATION_INTERRUPTED"
    assert driver.vms == {}


def test_build_whose_task_failed_records_the_dom0_error(rec, driver, agent_db):
    uuid, _ = left_behind(agent_db, states.SPAWNING, states.BUILDING,
                          [("OpaqueRef:t", "spawn", ts.PENDING)])
    driver.add_vm(uuid, power_state.SHUTDOWN)
    driver.add_task("OpaqueRef:t", status=ts.FAILURE,
                    error=["HOST_NOT_ENOUGH_FREE_MEMORY", "1073741824", "0"])
    run(rec)
    inst = agent_db.get_instance(uuid)
    assert inst["vm_state"] == states.ERROR
    assert inst["fault"]["code"] == "HOST_NOT_ENOUGH_FREE_MEMORY"
    assert inst["fault"]["params"] == ["1073741824", "0"]
    assert uuid not in driver.vms


def test_build_running_after_all_is_finished(rec, driver, agent_db):
    # The last task had ended (recorded) before the agent died; only the
    # instance update was lost.
    uuid, _ = left_behind(agent_db, states.SPAWNING, states.BUILDING,
                          [("OpaqueRef:t", "spawn", ts.SUCCESS)])
    driver.add_vm(uuid, power_state.RUNNING)
    run(rec)
    inst = agent_db.get_instance(uuid, internal=True)
    assert (inst["vm_state"], inst["power_state"], inst["fault"]) == (
        states.ACTIVE, power_state.RUNNING, None)
    assert inst["vm_ref"] == f"OpaqueRef:vm-{uuid}"
    assert driver.reattached == []  # only pending tasks are re-attached


# --------------------------------------------------------------------------- power, reboot, delete


def test_stop_that_took_effect_is_finished(rec, driver, agent_db):
    uuid, req = left_behind(agent_db, states.POWERING_OFF, states.ACTIVE,
                            [("OpaqueRef:t", "power_off", ts.PENDING)], power_state.RUNNING)
    driver.add_vm(uuid, power_state.SHUTDOWN)
    run(rec)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["power_state"], inst["fault"]) == (
        states.STOPPED, power_state.SHUTDOWN, None)
    assert action_of(agent_db, uuid, req)["result"] == "success"


def test_stop_that_did_not_happen_is_rolled_back_with_fault(rec, driver, agent_db):
    uuid, _ = left_behind(agent_db, states.POWERING_OFF, states.ACTIVE,
                          [("OpaqueRef:t", "power_off", ts.PENDING)], power_state.RUNNING)
    driver.add_vm(uuid, power_state.RUNNING)
    run(rec)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["task_state"], inst["power_state"]) == (
        states.ACTIVE, None, power_state.RUNNING)
    assert inst["fault"]["code"] == "OPERATION_INTERRUPTED"
    assert inst["fault"]["params"] == [uuid, "powering_off"]


def test_start_that_took_effect_is_finished(rec, driver, agent_db):
    uuid, _ = left_behind(agent_db, states.POWERING_ON, states.STOPPED, (),
                          power_state.SHUTDOWN)
    driver.add_vm(uuid, power_state.RUNNING)
    run(rec)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["power_state"], inst["fault"]) == (
        states.ACTIVE, power_state.RUNNING, None)


def test_start_of_vanished_vm_ends_in_error(rec, driver, agent_db):
    uuid, _ = left_behind(agent_db, states.POWERING_ON, states.STOPPED, (),
                          power_state.SHUTDOWN)
    run(rec)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["power_state"]) == (states.ERROR, power_state.NOSTATE)
    assert inst["fault"]["code"] == "OPERATION_INTERRUPTED"


def test_reboot_finished_only_with_evidence(rec, driver, agent_db):
    done, _ = left_behind(agent_db, states.REBOOTING, states.ACTIVE,
                          [("OpaqueRef:r1", "reboot", ts.PENDING)], power_state.RUNNING)
    unknown, _ = left_behind(agent_db, states.REBOOTING_HARD, states.ACTIVE, (),
                             power_state.RUNNING)
    driver.add_vm(done)
    driver.add_vm(unknown)
    driver.add_task("OpaqueRef:r1", status=ts.SUCCESS)
    run(rec)
    a, b = agent_db.get_instance(done), agent_db.get_instance(unknown)
    assert (a["vm_state"], a["task_state"], a["fault"]) == (states.ACTIVE, None, None)
    assert (b["vm_state"], b["task_state"]) == (states.ACTIVE, None)
    assert b["fault"]["params"] == [unknown, "rebooting_hard"]


def test_interrupted_delete_is_completed(rec, driver, agent_db, notifier):
    uuid, req = left_behind(agent_db, states.DELETING, states.ACTIVE,
                            [("OpaqueRef:d", "destroy", ts.PENDING)], power_state.RUNNING)
    driver.add_vm(uuid)
    run(rec)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["task_state"], inst["power_state"]) == (
        states.DELETED, None, power_state.NOSTATE)
    assert uuid not in driver.vms
    assert action_of(agent_db, uuid, req)["result"] == "success"
    assert notifier.event_types() == ["instance.delete.end"]


def test_failed_delete_completion_ends_in_error(rec, driver, agent_db):
    uuid, _ = left_behind(agent_db, states.DELETING, states.ACTIVE, (), power_state.RUNNING)
    driver.add_vm(uuid)
    driver.inject_failure("destroy", exceptions.HypervisorError("x", code="VDI_IN_USE"))
    run(rec)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["task_state"], inst["power_state"]) == (
        states.ERROR, None, power_state.RUNNING)
    assert inst["fault"]["code"] == "VDI_IN_USE"


def test_rollback_waits_out_an_untracked_dom0_operation(rec, driver, agent_db, monkeypatch):
    monkeypatch.setattr(recovery_settle, "BUSY_VM_RETRY_S", 0.05)
    # The agent died between starting a task and recording it: dom0 still
    # works on the VM and refuses its removal for a while.
    uuid, _ = left_behind(agent_db, states.SPAWNING, states.BUILDING)
    driver.add_vm(uuid, power_state.SHUTDOWN)
    busy = exceptions.HypervisorError("VM", f"OpaqueRef:vm-{uuid}", "start", "OpaqueRef:task",
                                      code="OTHER_OPERATION_IN_PROGRESS")
    driver.inject_failure("destroy", busy, times=2)
    run(rec)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["power_state"]) == (states.ERROR, power_state.NOSTATE)
    assert inst["fault"]["code"] == "OPERATION_INTERRUPTED"
    assert uuid not in driver.vms
    assert [c for c in driver.calls if c[0] == "destroy"] == [("destroy", uuid)] * 3


# --------------------------------------------------------------------------- timeouts, cancel


def test_task_past_its_deadline_is_cancelled_and_timed_out(rec, driver, agent_db, override):
    override("power_timeout", 5, group="tasks")
    long_ago = utcnow() - dt.timedelta(seconds=60)
    uuid, _ = left_behind(agent_db, states.POWERING_ON, states.STOPPED,
                          [("OpaqueRef:slow", "power_on", ts.PENDING)], power_state.SHUTDOWN,
                          task_created=long_ago)
    driver.add_vm(uuid, power_state.SHUTDOWN)
    driver.add_task("OpaqueRef:slow")
    run(rec)
    assert driver.task_table.cancelled == ["OpaqueRef:slow"]
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["task_state"]) == (states.STOPPED, None)
    assert inst["fault"]["code"] == "OPERATION_TIMED_OUT"
    assert inst["fault"]["params"][:2] == ["power_on", uuid]
    assert agent_db.get_tracked_task("OpaqueRef:slow")["status"] == "cancelled"


def test_reattached_task_waits_for_what_is_left_of_its_timeout(rec, driver, agent_db,
                                                               override):
    override("power_timeout", 300, group="tasks")
    uuid, _ = left_behind(agent_db, states.POWERING_ON, states.STOPPED,
                          [("OpaqueRef:t", "power_on", ts.PENDING)], power_state.SHUTDOWN,
                          task_created=utcnow() - dt.timedelta(seconds=100))
    driver.add_vm(uuid, power_state.SHUTDOWN)
    driver.add_task("OpaqueRef:t", effect=(uuid, power_state.RUNNING))
    seen = {}
    real = driver.reattach_task

    def spy(op, ref, timeout):
        seen["timeout"] = timeout
        driver.complete_task(ref)
        return real(op, ref, timeout)

    driver.reattach_task = spy
    run(rec)
    assert 150 < seen["timeout"] <= 200
    assert agent_db.get_instance(uuid)["vm_state"] == states.ACTIVE


def test_cancel_reaches_a_reattached_task(rec, driver, agent_db):
    uuid, _ = left_behind(agent_db, states.POWERING_ON, states.STOPPED,
                          [("OpaqueRef:t", "power_on", ts.PENDING)], power_state.SHUTDOWN)
    driver.add_vm(uuid, power_state.SHUTDOWN)
    driver.add_task("OpaqueRef:t")
    result = rec.start()
    for _ in range(200):
        if driver.cancel(uuid):
            break
        threading.Event().wait(0.02)
    else:
        pytest.fail("the re-attached task never became cancellable")
    assert result.wait(WAIT)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["task_state"]) == (states.STOPPED, None)
    assert inst["fault"]["code"] == "OPERATION_CANCELLED"


# --------------------------------------------------------------------------- orphans


def test_orphans_are_reported_not_removed_by_default(rec, driver, agent_db):
    orphan = str(uuidlib.uuid4())
    driver.add_vm(orphan)
    known, _ = left_behind(agent_db, None, states.ACTIVE, (), power_state.RUNNING)
    driver.add_vm(known)
    result = run(rec)
    assert result.orphans == [orphan] and result.reaped == []
    assert orphan in driver.vms


def test_orphans_are_removed_with_reap_orphans(rec, driver, agent_db, override):
    override("reap_orphans", True)
    orphan = str(uuidlib.uuid4())
    deleted, _ = left_behind(agent_db, None, states.DELETED)
    known, _ = left_behind(agent_db, None, states.ACTIVE, (), power_state.RUNNING)
    for u in (orphan, deleted, known):
        driver.add_vm(u)
    result = run(rec)
    assert sorted(result.reaped) == sorted([orphan, deleted])
    assert set(driver.vms) == {known}


# --------------------------------------------------------------------------- who recovers what


def test_busy_and_stable_instances_are_left_alone(agent_conf, agent_db, driver, notifier):
    busy_uuid, _ = left_behind(agent_db, states.POWERING_ON, states.STOPPED)
    stable, _ = left_behind(agent_db, None, states.STOPPED, (), power_state.SHUTDOWN)
    other_host, _ = left_behind(agent_db, states.POWERING_ON, states.STOPPED, host="elsewhere")
    r = Recovery(agent_conf, agent_db, driver, notifier, HOST, busy=lambda: {busy_uuid})
    result = run(r)
    assert result.instances == []
    assert agent_db.get_instance(busy_uuid)["task_state"] == states.POWERING_ON
    assert agent_db.get_instance(other_host)["task_state"] == states.POWERING_ON
    assert agent_db.get_instance(stable)["fault"] is None


def test_a_second_run_does_not_take_an_instance_twice(rec, driver, agent_db):
    uuid, _ = left_behind(agent_db, states.SPAWNING, states.BUILDING,
                          [("OpaqueRef:t", "spawn", ts.PENDING)])
    driver.add_vm(uuid, power_state.SHUTDOWN)
    driver.add_task("OpaqueRef:t", effect=(uuid, power_state.RUNNING))
    first = rec.start()
    second = rec.start(reason="reconnect")
    assert first.instances == [uuid] and second.instances == []
    driver.complete_task("OpaqueRef:t")
    assert first.wait(WAIT)
    assert driver.reattached == ["OpaqueRef:t"]
    assert agent_db.get_instance(uuid)["vm_state"] == states.ACTIVE


def test_claim_uses_the_instance_lock(agent_conf, agent_db, driver, notifier):
    locks = InstanceLocks()
    uuid, _ = left_behind(agent_db, states.POWERING_ON, states.STOPPED)
    r = Recovery(agent_conf, agent_db, driver, notifier, HOST, locks=locks)
    started = threading.Event()
    with locks.hold(uuid):
        t = threading.Thread(target=lambda: (r.start(), started.set()))
        t.start()
        assert not started.wait(0.2)  # blocked on the lock the manager holds
    assert started.wait(WAIT)
    t.join(WAIT)
    assert r.last_run.wait(WAIT)


def test_unreachable_dom0_leaves_the_instance_for_a_later_run(rec, driver, agent_db,
                                                              monkeypatch):
    monkeypatch.setattr(recovery, "UNAVAILABLE_RETRY_S", 0.3)
    uuid, _ = left_behind(agent_db, states.POWERING_ON, states.STOPPED,
                          [("OpaqueRef:t", "power_on", ts.PENDING)], power_state.SHUTDOWN)
    driver.add_vm(uuid, power_state.SHUTDOWN)
    driver.add_task("OpaqueRef:t", status=ts.SUCCESS, effect=(uuid, power_state.RUNNING))
    driver.reattach_unavailable = 1000
    run(rec)
    assert agent_db.get_instance(uuid)["task_state"] == states.POWERING_ON
    assert agent_db.get_tracked_task("OpaqueRef:t")["status"] == "pending"
    driver.reattach_unavailable = 0
    driver.vms[uuid].power_state = power_state.RUNNING
    run(rec, reason="reconnect")
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["task_state"], inst["fault"]) == (
        states.ACTIVE, None, None)


def test_unavailable_blip_is_retried(rec, driver, agent_db):
    uuid, _ = left_behind(agent_db, states.POWERING_OFF, states.ACTIVE,
                          [("OpaqueRef:t", "power_off", ts.PENDING)], power_state.RUNNING)
    driver.add_vm(uuid, power_state.SHUTDOWN)
    driver.add_task("OpaqueRef:t", status=ts.SUCCESS)
    driver.reattach_unavailable = 1
    run(rec)
    assert agent_db.get_instance(uuid)["vm_state"] == states.STOPPED


def test_task_of_a_stable_instance_is_only_recorded(rec, driver, agent_db):
    # e.g. a task left running after its operation timed out and settled.
    uuid, _ = left_behind(agent_db, None, states.STOPPED,
                          [("OpaqueRef:t", "power_on", ts.PENDING)], power_state.SHUTDOWN)
    driver.add_vm(uuid, power_state.SHUTDOWN)
    driver.add_task("OpaqueRef:t", status=ts.FAILURE, error=["VM_BAD_POWER_STATE"])
    run(rec)
    assert agent_db.get_tracked_task("OpaqueRef:t")["status"] == "failure"
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["fault"]) == (states.STOPPED, None)


def test_driver_without_reattach_marks_tasks_lost(agent_conf, agent_db, notifier):
    plain = FakeDriver()
    plain.init_host(HOST)
    plain.reattach_task = ComputeDriver.reattach_task.__get__(plain)  # the base: not implemented
    uuid, _ = left_behind(agent_db, states.SPAWNING, states.BUILDING,
                          [("OpaqueRef:t", "spawn", ts.PENDING)])
    r = Recovery(agent_conf, agent_db, plain, notifier, HOST)
    run(r)
    assert agent_db.get_tracked_task("OpaqueRef:t")["status"] == "lost"
    assert agent_db.get_instance(uuid)["vm_state"] == states.ERROR


def test_run_with_nothing_to_do(rec):
    result = run(rec)
    assert (result.instances, result.tasks, result.orphans) == ([], [], [])


# --------------------------------------------------------------------------- wired into the manager


def test_manager_recovers_on_start_and_after_a_reconnect(agent_conf, agent_db, notifier):
    from compute_agent.context import new_context
    from compute_agent.manager import ComputeManager

    driver = FakeDriver()
    crashed_build, _ = left_behind(agent_db, states.SPAWNING, states.BUILDING,
                                   [("OpaqueRef:b", "spawn", ts.PENDING)])
    driver.add_vm(crashed_build, power_state.SHUTDOWN)
    driver.add_task("OpaqueRef:b", effect=(crashed_build, power_state.RUNNING))
    driver.complete_task("OpaqueRef:b")
    mgr = ComputeManager(agent_conf, agent_db, driver=driver, notifier=notifier, host=HOST)
    mgr.init_host()
    try:
        assert mgr.recovery.last_run.reason == "start"
        assert mgr.recovery.last_run.wait(WAIT)
        assert agent_db.get_instance(crashed_build)["vm_state"] == states.ACTIVE

        # An operation of this process is running when dom0 reconnects:
        # recovery leaves it alone and settles only what nobody owns.
        mgr.driver.add_vm(stopped := str(uuidlib.uuid4()), power_state.SHUTDOWN)
        agent_db.create_instance({"uuid": stopped, "name": "s", "host": HOST,
                                  "vm_state": states.STOPPED, "power_state": 4})
        gate = driver.hold("power_on")
        mgr.start_instance(new_context(), stopped)
        assert gate.wait_entered(WAIT)
        orphaned, _ = left_behind(agent_db, states.POWERING_OFF, states.ACTIVE, (),
                                  power_state.RUNNING)
        driver.add_vm(orphaned, power_state.SHUTDOWN)
        driver.reconnect_listener()
        run_ = mgr.recovery.last_run
        assert run_.reason == "reconnect"
        assert run_.instances == [orphaned]
        assert run_.wait(WAIT)
        assert agent_db.get_instance(orphaned)["vm_state"] == states.STOPPED
        assert agent_db.get_instance(stopped)["task_state"] == states.POWERING_ON
        gate.release()
        assert mgr.wait_for_operations(WAIT)
        assert agent_db.get_instance(stopped)["vm_state"] == states.ACTIVE
    finally:
        mgr.shutdown(WAIT)


def test_periodic_recovery_picks_up_a_task_left_after_a_timeout(manager, fake_driver,
                                                               agent_db):
    # A task still running in dom0 after its operation timed out and was
    # settled: the periodic run records how it ended, without a restart.
    uuid, _ = left_behind(agent_db, None, states.STOPPED,
                          [("OpaqueRef:late", "power_on", ts.PENDING)], power_state.SHUTDOWN)
    fake_driver.add_vm(uuid, power_state.SHUTDOWN)
    fake_driver.add_task("OpaqueRef:late", status=ts.CANCELLED)
    from compute_agent.context import new_context

    manager.recover(new_context())
    assert manager.recovery.last_run.reason == "periodic"
    assert manager.recovery.last_run.wait(WAIT)
    assert agent_db.get_tracked_task("OpaqueRef:late")["status"] == "cancelled"
    assert agent_db.get_instance(uuid)["vm_state"] == states.STOPPED
