"""Pause, suspend, rescue and resize (RPC 1.2) through ComputeManager, with
the fake driver and a real SQLite database: each request from a state it
accepts, the refusals, the records it leaves, and recovery's rules for an
interrupted one."""

from __future__ import annotations

import pytest

from compute_agent import exceptions
from compute_agent.compute import states
from compute_agent.compute.recovery_rules import (
    COMPLETED,
    KINDS,
    REDO_FAILED,
    ROLLED_BACK,
    decide,
)
from compute_agent.context import new_context
from compute_agent.driver import power_state
from compute_agent.driver.base import ComputeDriver, InstanceInfo, Operation
from tests.unit.test_manager import build, settle

BIG = {"vcpus": 2, "memory_mb": 512, "root_gb": 2}


def run(manager, method: str, uuid: str, *args):
    accepted = getattr(manager, method)(new_context(), uuid, *args)
    settle(manager)
    return accepted


@pytest.mark.parametrize("method, task_state, vm_state, power", [
    ("pause_instance", states.PAUSING, states.PAUSED, power_state.PAUSED),
    ("suspend_instance", states.SUSPENDING, states.SUSPENDED, power_state.SUSPENDED),
    ("rescue_instance", states.RESCUING, states.RESCUED, power_state.RUNNING),
    ("resize_instance", states.RESIZE_MIGRATING, states.RESIZED, power_state.RUNNING),
])
def test_from_active_and_back(manager, agent_db, method, task_state, vm_state, power):
    uuid = build(manager)
    args = (BIG,) if method == "resize_instance" else ()
    accepted = run(manager, method, uuid, *args)
    assert accepted["task_state"] == task_state
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["task_state"], inst["power_state"]) == (vm_state, None, power)
    back = {"pause_instance": "unpause_instance", "suspend_instance": "resume_instance",
            "rescue_instance": "unrescue_instance", "resize_instance": "confirm_resize"}[method]
    run(manager, back, uuid)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["task_state"], inst["power_state"]) == (
        states.ACTIVE, None, power_state.RUNNING)
    if method == "resize_instance":
        assert inst["flavor"] == BIG


def test_revert_resize_restores_flavor_and_power(manager, agent_db, fake_driver):
    uuid = build(manager)
    run(manager, "stop_instance", uuid)
    run(manager, "resize_instance", uuid, BIG)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["flavor"]) == (states.RESIZED, BIG)
    run(manager, "revert_resize", uuid)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["power_state"]) == (states.STOPPED, power_state.SHUTDOWN)
    assert inst["flavor"] == {"vcpus": 1, "memory_mb": 256, "root_gb": 1}
    assert fake_driver.vms[uuid].root_gb == 1


@pytest.mark.parametrize("flavor, error, params", [
    ({"vcpus": 2, "memory_mb": 512, "root_gb": 0}, exceptions.ResizeDiskTooSmall, ["1", "0"]),
    ({"vcpus": 1, "memory_mb": 256, "root_gb": 1}, exceptions.FlavorUnchanged, []),
])
def test_resize_refused_changes_nothing(manager, agent_db, fake_driver, flavor, error, params):
    uuid = build(manager)
    with pytest.raises(error) as err:
        manager.resize_instance(new_context(), uuid, flavor)
    assert err.value.params == [uuid, *params]
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["task_state"]) == (states.ACTIVE, None)
    assert "resize" not in fake_driver.vms[uuid].history
    assert [(a["action"], a["result"]) for a in agent_db.list_actions(uuid)][-1] == (
        "resize", "error")


@pytest.mark.parametrize("flavor, field", [
    ("big", "flavor"),
    ({"vcpus": 0, "memory_mb": 512, "root_gb": 1}, "flavor.vcpus"),
    ({"vcpus": 1, "memory_mb": 512}, "flavor.root_gb"),
    ({"vcpus": 1, "memory_mb": 512, "root_gb": 1, "swap": 1}, "flavor.swap"),
])
def test_resize_bad_flavor_is_invalid_input(manager, flavor, field):
    uuid = build(manager)
    with pytest.raises(exceptions.InvalidInput) as err:
        manager.resize_instance(new_context(), uuid, flavor)
    assert err.value.params[0] == field


def test_rescue_image_must_be_an_image_or_null(manager):
    uuid = build(manager)
    with pytest.raises(exceptions.InvalidInput) as err:
        manager.rescue_instance(new_context(), uuid, {"url": 5})
    assert err.value.params[0] == "rescue_image.url"


@pytest.mark.parametrize("method, vm_state", [
    ("pause_instance", states.STOPPED), ("unpause_instance", states.ACTIVE),
    ("suspend_instance", states.STOPPED), ("resume_instance", states.ACTIVE),
    ("unrescue_instance", states.ACTIVE), ("confirm_resize", states.ACTIVE),
    ("revert_resize", states.STOPPED), ("stop_instance", states.RESCUED),
])
def test_refused_from_wrong_state(manager, agent_db, method, vm_state):
    uuid = build(manager)
    if vm_state == states.STOPPED:
        run(manager, "stop_instance", uuid)
    elif vm_state == states.RESCUED:
        run(manager, "rescue_instance", uuid)
    with pytest.raises(exceptions.InstanceInvalidState) as err:
        getattr(manager, method)(new_context(), uuid)
    assert err.value.params[:3] == [uuid, "vm_state", vm_state]


def test_driver_without_support_fails_with_operation_not_supported(manager, agent_db,
                                                                   fake_driver, monkeypatch):
    uuid = build(manager)
    monkeypatch.setattr(fake_driver, "pause",
                        lambda op, inst: ComputeDriver.pause(fake_driver, op, inst))
    run(manager, "pause_instance", uuid)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["fault"]["code"]) == (states.ACTIVE, "OPERATION_NOT_SUPPORTED")
    assert inst["fault"]["params"] == ["pause", "FakeDriver"]


def test_instance_actions_and_paging(manager, agent_db):
    uuids = [build(manager, name=f"vm{i}") for i in range(5)]
    run(manager, "pause_instance", uuids[0])
    with pytest.raises(exceptions.InstanceInvalidState):
        manager.pause_instance(new_context(), uuids[0])
    actions = manager.get_instance_actions(new_context(), uuids[0])
    assert [(a["action"], a["result"]) for a in actions] == [
        ("create", "success"), ("pause", "success"), ("pause", "error")]
    assert actions[2]["fault"].startswith("INSTANCE_INVALID_STATE")
    assert [(e["event"], e["result"], e["fault"]) for e in actions[1]["events"]] == [
        ("compute_pause_instance", "success", None)]
    assert all(a["request_id"] and a["start_time"] and a["finish_time"] for a in actions)
    with pytest.raises(exceptions.InstanceNotFound):
        manager.get_instance_actions(new_context(), "6d3c9bb6-6a5a-4bf4-9c1e-1f9a6a0b9a10")

    ctxt = new_context()
    first = manager.list_instances(ctxt, limit=2)
    second = manager.list_instances(ctxt, limit=2, marker=first[-1]["uuid"])
    third = manager.list_instances(ctxt, limit=2, marker=second[-1]["uuid"])
    assert [i["uuid"] for i in first + second + third] == uuids
    assert [i["uuid"] for i in manager.list_instances(ctxt, vm_state="paused")] == [uuids[0]]
    assert manager.list_instances(ctxt, host="elsewhere") == []
    for kwargs, field in (({"limit": 0}, "limit"), ({"limit": 1001}, "limit"),
                          ({"marker": "x"}, "marker"), ({"vm_state": "asleep"}, "vm_state"),
                          ({"marker": "6d3c9bb6-6a5a-4bf4-9c1e-1f9a6a0b9a10"}, "marker")):
        with pytest.raises(exceptions.InvalidInput) as err:
            manager.list_instances(ctxt, **kwargs)
        assert err.value.params[0] == field


# --------------------------------------------------------------------------- recovery rules

def info(power: int) -> InstanceInfo:
    return InstanceInfo(power, "OpaqueRef:vm")


@pytest.mark.parametrize("task_state, power, vm_state, finished", [
    (states.PAUSING, power_state.PAUSED, states.PAUSED, True),
    (states.PAUSING, power_state.RUNNING, states.ACTIVE, False),
    (states.SUSPENDING, power_state.SUSPENDED, states.SUSPENDED, True),
    (states.SUSPENDING, power_state.RUNNING, states.ACTIVE, False),
    (states.RESUMING, power_state.RUNNING, states.ACTIVE, True),
    (states.UNPAUSING, power_state.PAUSED, states.PAUSED, False),
])
def test_recovery_settles_pause_and_suspend_from_power(task_state, power, vm_state, finished):
    d = decide(task_state, info(power), True)
    assert (d.vm_state, d.power, d.finished) == (vm_state, power, finished)


@pytest.mark.parametrize("task_state, redo, power, vm_state, finished", [
    (states.RESCUING, ROLLED_BACK, power_state.RUNNING, states.ACTIVE, False),
    (states.UNRESCUING, COMPLETED, power_state.RUNNING, states.ACTIVE, True),
    (states.RESIZE_MIGRATING, ROLLED_BACK, power_state.SHUTDOWN, states.STOPPED, False),
    (states.RESIZE_REVERTING, COMPLETED, power_state.RUNNING, states.ACTIVE, True),
    (states.RESIZE_CONFIRMING, COMPLETED, power_state.SHUTDOWN, states.STOPPED, True),
    (states.RESIZE_MIGRATING, REDO_FAILED, power_state.RUNNING, states.ERROR, False),
])
def test_recovery_rules_after_redo(task_state, redo, power, vm_state, finished):
    d = decide(task_state, info(power), False, redo)
    assert (d.vm_state, d.finished) == (vm_state, finished)


def test_every_new_task_state_has_a_kind():
    for task_state in (states.PAUSING, states.UNPAUSING, states.SUSPENDING, states.RESUMING,
                       states.RESCUING, states.UNRESCUING, states.RESIZE_MIGRATING,
                       states.RESIZE_CONFIRMING, states.RESIZE_REVERTING):
        assert task_state in KINDS


def test_recovery_rolls_back_an_interrupted_resize(manager, agent_db, fake_driver):
    uuid = build(manager)
    run(manager, "resize_instance", uuid, BIG)
    # As if the agent died mid-resize: the instance still resize_migrating,
    # the driver holding what a revert needs.
    agent_db.update_instance(uuid, {"vm_state": states.ACTIVE,
                                    "task_state": states.RESIZE_MIGRATING,
                                    "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1}})
    agent_db.action_start(uuid, "resize", "req-interrupted")
    run_ = manager.recovery.start(new_context())
    assert run_.wait(10)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["task_state"]) == (states.ACTIVE, None)
    assert inst["fault"]["code"] == "OPERATION_INTERRUPTED"
    assert fake_driver.vms[uuid].root_gb == 1
    assert fake_driver.revert_resize(Operation(uuid, "revert_resize", "r"), inst) == {
        "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1}}


@pytest.mark.parametrize("method, state, op", [
    ("unrescue_instance", states.RESCUED, "unrescue"),
    ("confirm_resize", states.RESIZED, "confirm_resize"),
    ("revert_resize", states.RESIZED, "revert_resize"),
])
def test_failed_undo_keeps_the_state_it_can_be_retried_from(manager, agent_db, fake_driver,
                                                              method, state, op):
    uuid = build(manager)
    if state == states.RESCUED:
        run(manager, "rescue_instance", uuid)
    else:
        run(manager, "resize_instance", uuid, BIG)
    fake_driver.inject_failure(op, exceptions.HypervisorError("x", code="SR_BACKEND_FAILURE"))
    run(manager, method, uuid)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["task_state"], inst["fault"]["code"]) == (
        state, None, "SR_BACKEND_FAILURE")
    back = {"unrescue": "unrescue_instance"}.get(op, method)
    run(manager, back, uuid)
    assert agent_db.get_instance(uuid)["vm_state"] == states.ACTIVE


def test_actions_give_a_failed_step_its_fault_not_its_traceback(manager, fake_driver):
    uuid = build(manager)
    fake_driver.inject_failure("pause", exceptions.HypervisorError(
        "1", "", "disk gone", code="SR_BACKEND_FAILURE"))
    run(manager, "pause_instance", uuid)
    failed = manager.get_instance_actions(new_context(), uuid)[-1]
    assert failed["result"] == "error"
    assert failed["fault"] == "SR_BACKEND_FAILURE ['1', '', 'disk gone']"
    assert [(e["event"], e["result"], e["fault"]) for e in failed["events"]] == [
        ("compute_pause_instance", "error", failed["fault"])]
    assert "Traceback" not in str(failed)
