"""ComputeManager's state machine, with the fake driver and a real SQLite DB."""

from __future__ import annotations

import threading
import uuid as uuidlib

import pytest

from compute_agent import exceptions
from compute_agent.compute import states
from compute_agent.context import new_context
from compute_agent.driver import power_state
from compute_agent.driver.fake import FakeDriver
from compute_agent.manager import ComputeManager
from compute_agent.rpc.transport import RPC_API_VERSION
from tests.unit.conftest import RecordingNotifier

WAIT = 10  # upper bound for background operations; never a speed assertion


def spec(**overrides):
    body = {
        "uuid": str(uuidlib.uuid4()),
        "name": "vm",
        "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1},
        "image": {"id": "img", "url": None, "disk_format": "vhd"},
        "networks": [],
        "metadata": {},
    }
    body.update(overrides)
    return body


def build(manager, **overrides):
    body = spec(**overrides)
    manager.build_instance(new_context(), body)
    assert manager.wait_for_operations(WAIT)
    return body["uuid"]


def settle(manager):
    assert manager.wait_for_operations(WAIT)


# --------------------------------------------------------------------------- build

def test_build_goes_building_spawning_then_active_running(manager, agent_db, notifier):
    body = spec()
    ctxt = new_context()
    accepted = manager.build_instance(ctxt, body)
    assert accepted["vm_state"] == states.BUILDING
    assert accepted["task_state"] == states.SPAWNING
    settle(manager)
    inst = agent_db.get_instance(body["uuid"])
    assert inst["vm_state"] == states.ACTIVE
    assert inst["task_state"] is None
    assert inst["power_state"] == power_state.RUNNING
    assert inst["launched_at"] is not None
    assert inst["progress"] == 100
    assert inst["fault"] is None
    assert inst["host"] == "test-host"
    actions = agent_db.list_actions(body["uuid"])
    assert [(a["action"], a["request_id"], a["result"]) for a in actions] == [
        ("create", ctxt.request_id, "success")]
    assert [(e["event"], e["result"]) for e in actions[0]["events"]] == [
        ("compute_build_instance", "success")]
    assert notifier.event_types() == ["instance.create.start", "instance.create.end"]
    assert notifier.data("instance.create.end")["instance"]["vm_state"] == states.ACTIVE


def test_build_records_the_dom0_task(manager, agent_db):
    uuid = build(manager)
    tasks = agent_db.list_tracked_tasks(status=None, instance_uuid=uuid)
    assert len(tasks) == 1
    assert tasks[0]["operation"] == "spawn"
    assert tasks[0]["status"] == "success"
    assert tasks[0]["agent_host"] == "test-host"


def test_repeated_build_with_known_uuid_is_a_noop(manager, fake_driver, agent_db):
    body = spec()
    manager.build_instance(new_context(), body)
    settle(manager)
    again = manager.build_instance(new_context(), dict(body, name="other"))
    settle(manager)
    assert again["name"] == "vm"
    assert fake_driver.calls.count(("spawn", body["uuid"])) == 1
    assert len(agent_db.list_actions(body["uuid"])) == 1


def test_build_of_known_uuid_while_building_is_a_noop(manager, fake_driver):
    gate = fake_driver.hold("spawn")
    body = spec()
    manager.build_instance(new_context(), body)
    assert gate.wait_entered()
    assert manager.build_instance(new_context(), body)["task_state"] == states.SPAWNING
    gate.release()
    settle(manager)
    assert fake_driver.calls.count(("spawn", body["uuid"])) == 1


def test_build_failure_sets_error_with_fault(manager, fake_driver, agent_db, notifier):
    fake_driver.inject_failure(
        "spawn",
        exceptions.HypervisorError("OpaqueRef:x", "too big", code="VM_MEMORY_SIZE_TOO_LOW"))
    uuid = build(manager)
    inst = agent_db.get_instance(uuid)
    assert inst["vm_state"] == states.ERROR
    assert inst["task_state"] is None
    assert inst["fault"]["code"] == "VM_MEMORY_SIZE_TOO_LOW"
    assert inst["fault"]["params"] == ["OpaqueRef:x", "too big"]
    action = agent_db.list_actions(uuid)[0]
    assert action["result"] == "error"
    assert action["events"][0]["result"] == "error"
    assert "VM_MEMORY_SIZE_TOO_LOW" in action["events"][0]["traceback"]
    err = notifier.data("instance.create.error")
    assert err["fault"]["code"] == "VM_MEMORY_SIZE_TOO_LOW"
    assert notifier.sent[-1][0] == "error"
    tasks = agent_db.list_tracked_tasks(status=None, instance_uuid=uuid)
    assert tasks[0]["status"] == "failure"
    assert tasks[0]["error"][0] == "VM_MEMORY_SIZE_TOO_LOW"


def test_build_failure_from_unexpected_exception_is_internal_error(manager, fake_driver,
                                                                  agent_db):
    fake_driver.spawn = lambda op, inst: 1 / 0  # a bug in a driver
    uuid = build(manager)
    inst = agent_db.get_instance(uuid)
    assert inst["vm_state"] == states.ERROR
    assert inst["fault"]["code"] == "INTERNAL_ERROR"
    # The request id to find it in the log by, never the exception's text.
    assert inst["fault"]["params"][0].startswith("req-")
    assert "ZeroDivision" not in str(inst["fault"])


@pytest.mark.parametrize("mutate, field", [
    (lambda b: b.pop("name"), "name"),
    (lambda b: b.update(name=""), "name"),
    (lambda b: b.update(flavor={"vcpus": "2", "memory_mb": 256, "root_gb": 1}), "flavor.vcpus"),
    (lambda b: b["flavor"].pop("memory_mb"), "flavor.memory_mb"),
    (lambda b: b.update(image="cirros"), "image"),
    (lambda b: b.update(networks={}), "networks"),
    (lambda b: b.update(extra=1), "extra"),
])
def test_invalid_build_leaves_error_instance_with_fault(manager, agent_db, notifier, fake_driver,
                                                         mutate, field):
    body = spec()
    mutate(body)
    with pytest.raises(exceptions.InvalidInput) as info:
        manager.build_instance(new_context(), body)
    assert info.value.params[0] == field
    inst = agent_db.get_instance(body["uuid"])
    assert inst["vm_state"] == states.ERROR
    assert inst["fault"]["code"] == "INVALID_INPUT"
    assert inst["fault"]["params"][0] == field
    assert "instance.create.error" in notifier.event_types()
    assert fake_driver.calls == []


@pytest.mark.parametrize("body", [None, "x", {"uuid": "not-a-uuid", "name": "a"}, {}])
def test_invalid_build_without_usable_uuid_only_refuses(manager, agent_db, body):
    with pytest.raises(exceptions.InvalidInput):
        manager.build_instance(new_context(), body)
    assert agent_db.list_instances(include_deleted=True) == []


def test_invalid_build_never_touches_a_known_instance(manager, agent_db):
    uuid = build(manager)
    with pytest.raises(exceptions.InvalidInput):
        manager.build_instance(new_context(), {"uuid": uuid})
    inst = agent_db.get_instance(uuid)
    assert inst["vm_state"] == states.ACTIVE
    assert inst["fault"] is None


# --------------------------------------------------------------------------- lifecycle

def test_stop_start_reboot_terminate(manager, agent_db, fake_driver, notifier):
    uuid = build(manager)

    stopping = manager.stop_instance(new_context(), uuid)
    assert stopping["task_state"] == states.POWERING_OFF
    settle(manager)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["task_state"], inst["power_state"]) == (
        states.STOPPED, None, power_state.SHUTDOWN)

    assert manager.start_instance(new_context(), uuid)["task_state"] == states.POWERING_ON
    settle(manager)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["power_state"]) == (states.ACTIVE, power_state.RUNNING)

    assert manager.reboot_instance(new_context(), uuid, "SOFT")["task_state"] == states.REBOOTING
    settle(manager)
    assert manager.reboot_instance(new_context(), uuid, "HARD")["task_state"] == (
        states.REBOOTING_HARD)
    settle(manager)
    assert [h for h in fake_driver.vms[uuid].history if h.endswith("_reboot")] == [
        "clean_reboot", "hard_reboot"]
    assert agent_db.get_instance(uuid)["vm_state"] == states.ACTIVE

    assert manager.terminate_instance(new_context(), uuid)["task_state"] == states.DELETING
    settle(manager)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["task_state"], inst["power_state"]) == (
        states.DELETED, None, power_state.NOSTATE)
    assert uuid not in fake_driver.vms
    assert manager.list_instances(new_context()) == []

    actions = [a["action"] for a in agent_db.list_actions(uuid)]
    assert actions == ["create", "stop", "start", "reboot", "reboot", "delete"]
    assert all(a["result"] == "success" for a in agent_db.list_actions(uuid))
    for action in ("power_off", "power_on", "reboot", "delete"):
        assert f"instance.{action}.start" in notifier.event_types()
        assert f"instance.{action}.end" in notifier.event_types()


def test_terminated_instance_stays_readable_and_terminate_is_idempotent(manager, agent_db):
    uuid = build(manager)
    manager.terminate_instance(new_context(), uuid)
    settle(manager)
    again = manager.terminate_instance(new_context(), uuid)
    assert again["vm_state"] == states.DELETED
    assert manager.get_instance(new_context(), uuid)["vm_state"] == states.DELETED
    assert len(agent_db.list_actions(uuid)) == 2
    with pytest.raises(exceptions.InstanceInvalidState):
        manager.start_instance(new_context(), uuid)


def test_clean_stop_of_unresponsive_guest_falls_back_to_hard(manager, fake_driver, agent_db):
    uuid = build(manager, metadata={"fake:guest_unresponsive": "true"})
    manager.stop_instance(new_context(), uuid, clean=True)
    settle(manager)
    assert fake_driver.vms[uuid].history[-1] == "hard_shutdown"
    assert agent_db.get_instance(uuid)["vm_state"] == states.STOPPED


def test_hard_stop(manager, fake_driver):
    uuid = build(manager)
    manager.stop_instance(new_context(), uuid, clean=False)
    settle(manager)
    assert fake_driver.vms[uuid].history[-1] == "hard_shutdown"


def test_hard_reboot_of_stopped_instance_starts_it(manager, agent_db):
    uuid = build(manager)
    manager.stop_instance(new_context(), uuid)
    settle(manager)
    with pytest.raises(exceptions.InstanceInvalidState):
        manager.reboot_instance(new_context(), uuid, "SOFT")
    manager.reboot_instance(new_context(), uuid, "HARD")
    settle(manager)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["power_state"]) == (states.ACTIVE, power_state.RUNNING)


# --------------------------------------------------------------------------- refusals

def test_request_during_operation_is_refused_busy(manager, fake_driver, agent_db, notifier):
    gate = fake_driver.hold("spawn")
    body = spec()
    manager.build_instance(new_context(), body)
    assert gate.wait_entered()
    for call in (
        lambda c: manager.stop_instance(c, body["uuid"]),
        lambda c: manager.start_instance(c, body["uuid"]),
        lambda c: manager.reboot_instance(c, body["uuid"], "HARD"),
        lambda c: manager.terminate_instance(c, body["uuid"]),
    ):
        with pytest.raises(exceptions.InstanceBusy) as info:
            call(new_context())
        assert info.value.code == "INSTANCE_BUSY"
        assert info.value.params == [body["uuid"], states.SPAWNING]
    assert "instance.power_off.error" in notifier.event_types()
    assert notifier.data("instance.power_off.error")["fault"]["code"] == "INSTANCE_BUSY"
    gate.release()
    settle(manager)
    assert agent_db.get_instance(body["uuid"])["vm_state"] == states.ACTIVE
    refused = [a for a in agent_db.list_actions(body["uuid"]) if a["result"] == "error"]
    assert [a["action"] for a in refused] == ["stop", "start", "reboot", "delete"]
    assert fake_driver.calls == [("spawn", body["uuid"])]


def test_busy_is_refused_for_each_transitional_state(manager, fake_driver):
    uuid = build(manager)
    gate = fake_driver.hold("power_off")
    manager.stop_instance(new_context(), uuid)
    assert gate.wait_entered()
    with pytest.raises(exceptions.InstanceBusy) as info:
        manager.reboot_instance(new_context(), uuid, "SOFT")
    assert info.value.params == [uuid, states.POWERING_OFF]
    gate.release()
    settle(manager)


def test_concurrent_requests_exactly_one_accepted(manager, fake_driver):
    uuid = build(manager)
    gate = fake_driver.hold("power_off")
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def attempt():
        barrier.wait()
        try:
            manager.stop_instance(new_context(), uuid)
            outcomes.append("accepted")
        except exceptions.ComputeAgentError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert outcomes.count("accepted") == 1
    assert set(outcomes) - {"accepted"} <= {"INSTANCE_BUSY", "INSTANCE_INVALID_STATE"}
    gate.release()
    settle(manager)
    assert fake_driver.calls.count(("power_off", uuid)) == 1


def test_guarded_update_refuses_when_another_writer_won(manager, agent_db):
    """A second agent (another process) moved the instance first: the
    compare-and-set update makes this one refuse instead of clobbering."""
    uuid = build(manager)
    real_get = agent_db.get_instance

    def stale_get(u, internal=False):
        row = real_get(u, internal=internal)
        # Another writer takes the instance between our read and our update.
        agent_db.update_instance(u, {"task_state": states.REBOOTING}, expected_task_state=None)
        agent_db.get_instance = real_get
        return row

    agent_db.get_instance = stale_get
    with pytest.raises(exceptions.InstanceBusy) as info:
        manager.stop_instance(new_context(), uuid)
    assert info.value.params == [uuid, states.REBOOTING]


@pytest.mark.parametrize("op, kwargs, vm_state", [
    ("start_instance", {}, states.ACTIVE),
    ("reboot_instance", {"reboot_type": "SOFT"}, states.STOPPED),
])
def test_wrong_state_is_refused(manager, op, kwargs, vm_state):
    uuid = build(manager)
    if vm_state == states.STOPPED:
        manager.stop_instance(new_context(), uuid)
        settle(manager)
    with pytest.raises(exceptions.InstanceInvalidState) as info:
        getattr(manager, op)(new_context(), uuid, **kwargs)
    assert info.value.params[:3] == [uuid, "vm_state", vm_state]


def test_stop_of_stopped_instance_is_invalid_state(manager):
    uuid = build(manager)
    manager.stop_instance(new_context(), uuid)
    settle(manager)
    with pytest.raises(exceptions.InstanceInvalidState) as info:
        manager.stop_instance(new_context(), uuid)
    assert info.value.code == "INSTANCE_INVALID_STATE"
    assert info.value.params[2] == states.STOPPED


@pytest.mark.parametrize("op", ["start_instance", "stop_instance", "terminate_instance",
                                "get_instance", "cancel_operation"])
def test_unknown_instance_is_not_found(manager, notifier, op):
    missing = str(uuidlib.uuid4())
    with pytest.raises(exceptions.InstanceNotFound) as info:
        getattr(manager, op)(new_context(), missing)
    assert info.value.code == "INSTANCE_NOT_FOUND"
    assert info.value.params == [missing]


@pytest.mark.parametrize("value", ["nope", 42, None])
def test_malformed_uuid_is_invalid_input(manager, value):
    with pytest.raises(exceptions.InvalidInput) as info:
        manager.stop_instance(new_context(), value)
    assert info.value.params[0] == "instance_uuid"


def test_bad_reboot_type_and_clean_flag(manager):
    uuid = build(manager)
    with pytest.raises(exceptions.InvalidInput) as info:
        manager.reboot_instance(new_context(), uuid, "MEDIUM")
    assert info.value.params[0] == "reboot_type"
    with pytest.raises(exceptions.InvalidInput) as info:
        manager.stop_instance(new_context(), uuid, clean="yes")
    assert info.value.params[0] == "clean"


def test_instance_of_another_host_is_refused(manager, agent_db):
    uuid = build(manager)
    agent_db.update_instance(uuid, {"host": "elsewhere"})
    with pytest.raises(exceptions.ComputeAgentError) as info:
        manager.stop_instance(new_context(), uuid)
    assert info.value.code == "INSTANCE_WRONG_HOST"
    assert info.value.params == [uuid, "elsewhere", "test-host"]


# --------------------------------------------------------------------------- failures

def test_failed_stop_settles_from_hypervisor_with_fault(manager, fake_driver, agent_db,
                                                       notifier):
    uuid = build(manager)
    fake_driver.inject_failure("power_off", exceptions.HypervisorError(
        "OpaqueRef:vm", "halted", "running", code="VM_BAD_POWER_STATE"))
    manager.stop_instance(new_context(), uuid)
    settle(manager)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["task_state"]) == (states.ACTIVE, None)
    assert inst["fault"] == {
        "code": "VM_BAD_POWER_STATE",
        "params": ["OpaqueRef:vm", "halted", "running"],
        "message": "dom0 reported VM_BAD_POWER_STATE ['OpaqueRef:vm', 'halted', 'running']",
    }
    assert notifier.data("instance.power_off.error")["fault"]["code"] == "VM_BAD_POWER_STATE"


def test_failed_reboot_with_vm_gone_ends_in_error(manager, fake_driver, agent_db):
    uuid = build(manager)
    fake_driver.vms.pop(uuid)
    manager.reboot_instance(new_context(), uuid, "HARD")
    settle(manager)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["power_state"]) == (states.ERROR, power_state.NOSTATE)
    assert inst["fault"]["code"] == "INSTANCE_NOT_FOUND"


def test_dom0_unreachable_during_start_keeps_state_and_records_fault(manager, fake_driver,
                                                                    agent_db):
    uuid = build(manager)
    manager.stop_instance(new_context(), uuid)
    settle(manager)
    unreachable = exceptions.HypervisorUnavailable("http://dom0", "connection refused")
    fake_driver.inject_failure("power_on", unreachable)
    fake_driver.get_info = lambda inst: (_ for _ in ()).throw(unreachable)
    manager.start_instance(new_context(), uuid)
    settle(manager)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["task_state"]) == (states.STOPPED, None)
    assert inst["fault"]["code"] == "HYPERVISOR_UNAVAILABLE"
    assert inst["fault"]["params"] == ["http://dom0", "connection refused"]


def test_failed_terminate_ends_in_error_and_can_be_retried(manager, fake_driver, agent_db):
    uuid = build(manager)
    fake_driver.inject_failure("destroy", exceptions.HypervisorError(code="SR_BACKEND_FAILURE"))
    manager.terminate_instance(new_context(), uuid)
    settle(manager)
    assert agent_db.get_instance(uuid)["vm_state"] == states.ERROR
    manager.terminate_instance(new_context(), uuid)
    settle(manager)
    assert agent_db.get_instance(uuid)["vm_state"] == states.DELETED


def test_operation_timeout_is_a_fault(manager, fake_driver, agent_db, override):
    override("power_timeout", 1, group="tasks")
    uuid = build(manager)
    fake_driver.set_delay("power_off", 30)
    manager.stop_instance(new_context(), uuid)
    settle(manager)
    inst = agent_db.get_instance(uuid)
    assert inst["fault"]["code"] == "OPERATION_TIMED_OUT"
    assert inst["task_state"] is None


# --------------------------------------------------------------------------- concurrency

def test_builds_are_bounded_by_max_concurrent_builds(agent_conf, override, agent_db):
    override("max_concurrent_builds", 2)
    driver = FakeDriver()
    mgr = ComputeManager(agent_conf, agent_db, driver=driver, notifier=RecordingNotifier(),
                         host="test-host")
    gate = driver.hold("spawn")
    uuids = []
    for _ in range(5):
        body = spec()
        uuids.append(body["uuid"])
        mgr.build_instance(new_context(), body)
    assert gate.wait_entered() and gate.wait_entered()
    # Two builds are in the driver; the other three wait for a slot.
    assert not gate.wait_entered(timeout=0.3)
    assert len(driver.calls) == 2
    assert mgr.get_host_status(new_context())["builds"] == {"max": 2, "running": 2}
    assert all(agent_db.get_instance(u)["task_state"] == states.SPAWNING for u in uuids)
    gate.release()
    assert mgr.wait_for_operations(WAIT)
    assert len(driver.calls) == 5
    assert all(agent_db.get_instance(u)["vm_state"] == states.ACTIVE for u in uuids)


# --------------------------------------------------------------------------- cancel (1.1)

def test_cancel_without_operation_cancels_nothing(manager):
    uuid = build(manager)
    assert manager.cancel_operation(new_context(), uuid) == {
        "instance_uuid": uuid, "task_state": None, "cancelled": False}


def test_cancel_running_operation_settles_consistently(manager, fake_driver, agent_db,
                                                       notifier):
    uuid = build(manager)
    gate = fake_driver.hold("power_off")
    manager.stop_instance(new_context(), uuid)
    assert gate.wait_entered()
    result = manager.cancel_operation(new_context(), uuid)
    assert result == {"instance_uuid": uuid, "task_state": states.POWERING_OFF,
                      "cancelled": True}
    settle(manager)
    inst = agent_db.get_instance(uuid)
    # The VM never stopped, so the instance is still active; the fault says why.
    assert (inst["vm_state"], inst["task_state"]) == (states.ACTIVE, None)
    assert inst["fault"]["code"] == "OPERATION_CANCELLED"
    assert "instance.cancel.end" in notifier.event_types()
    gate.release()


def test_cancel_queued_build_never_reaches_the_driver(agent_conf, override, agent_db):
    override("max_concurrent_builds", 1)
    driver = FakeDriver()
    mgr = ComputeManager(agent_conf, agent_db, driver=driver, notifier=RecordingNotifier(),
                         host="test-host")
    gate = driver.hold("spawn")
    first, second = spec(), spec()
    mgr.build_instance(new_context(), first)
    assert gate.wait_entered()
    mgr.build_instance(new_context(), second)
    assert mgr.cancel_operation(new_context(), second["uuid"])["cancelled"] is True
    gate.release()
    assert mgr.wait_for_operations(WAIT)
    inst = agent_db.get_instance(second["uuid"])
    assert inst["vm_state"] == states.ERROR
    assert inst["fault"]["code"] == "OPERATION_CANCELLED"
    assert ("spawn", second["uuid"]) not in driver.calls


def test_cancel_with_driver_that_cannot(manager, fake_driver):
    uuid = build(manager)
    gate = fake_driver.hold("power_off")
    manager.stop_instance(new_context(), uuid)
    assert gate.wait_entered()

    def cannot(_uuid):
        raise NotImplementedError

    fake_driver.cancel = cannot
    with pytest.raises(exceptions.ComputeAgentError) as info:
        manager.cancel_operation(new_context(), uuid)
    assert info.value.code == "OPERATION_NOT_SUPPORTED"
    gate.release()


# --------------------------------------------------------------------------- shutdown

def test_shutdown_hands_back_queued_builds_and_finishes_running(agent_conf, override,
                                                               agent_db):
    override("max_concurrent_builds", 1)
    driver = FakeDriver()
    mgr = ComputeManager(agent_conf, agent_db, driver=driver, notifier=RecordingNotifier(),
                         host="test-host")
    gate = driver.hold("spawn")
    running, queued = spec(), spec()
    mgr.build_instance(new_context(), running)
    assert gate.wait_entered()
    mgr.build_instance(new_context(), queued)
    releaser = threading.Timer(0.5, gate.release)
    releaser.start()
    left = mgr.shutdown(timeout=WAIT)
    releaser.join()
    assert left == []
    assert agent_db.get_instance(running["uuid"])["vm_state"] == states.ACTIVE
    handed_back = agent_db.get_instance(queued["uuid"])
    assert handed_back["vm_state"] == states.ERROR
    assert handed_back["fault"]["code"] == "BUILD_ABORTED"
    assert ("spawn", queued["uuid"]) not in driver.calls
    assert driver.cleaned_up
    with pytest.raises(exceptions.ComputeAgentError) as info:
        mgr.build_instance(new_context(), spec())
    assert info.value.code == "SERVICE_STOPPING"


def test_shutdown_deadline_reports_operations_still_running(agent_conf, agent_db):
    driver = FakeDriver()
    mgr = ComputeManager(agent_conf, agent_db, driver=driver, notifier=RecordingNotifier(),
                         host="test-host")
    gate = driver.hold("spawn")
    body = spec()
    mgr.build_instance(new_context(), body)
    assert gate.wait_entered()
    left = mgr.shutdown(timeout=0.2)
    assert left == [f"build-{body['uuid']}"]
    # Its dom0 task is recorded for the next start to resolve.
    pending = agent_db.list_tracked_tasks(agent_host="test-host", status="pending")
    assert [t["instance_uuid"] for t in pending] == [body["uuid"]]
    gate.release()
    assert mgr.wait_for_operations(WAIT)


# --------------------------------------------------------------------------- periodic

def test_report_host_writes_compute_node_and_heartbeat(manager, agent_db, agent_conf):
    build(manager, flavor={"vcpus": 2, "memory_mb": 1024, "root_gb": 10})
    manager.report_host(new_context())
    node = [n for n in agent_db.list_compute_nodes() if n["host"] == "test-host"][0]
    assert node["memory_mb_used"] == 1024
    assert node["free_memory_mb"] == node["memory_mb"] - 1024
    assert node["vcpus_used"] == 2
    assert node["running_vms"] == 1
    services = agent_db.list_services(agent_conf.service_down_time)
    assert [(s["host"], s["binary"], s["alive"]) for s in services] == [
        ("test-host", "compute-agent", True)]
    assert services[0]["report_count"] >= 2  # init_host reported once already


def test_host_status(manager):
    uuid = build(manager)
    status = manager.get_host_status(new_context())
    assert status["host"] == "test-host"
    assert status["hypervisor_available"] is True
    assert status["resources"]["running_vms"] == 1
    # What the driver can do, and what the hypervisor holds for this agent.
    assert status["capabilities"] == {
        "driver": "FakeDriver",
        "operations": ["spawn", "power_on", "power_off", "reboot", "destroy", "pause",
                       "unpause", "suspend", "resume", "rescue", "unrescue", "resize",
                       "confirm_resize", "revert_resize", "snapshot", "live_migrate"]}
    assert status["hypervisor_instances"] == {uuid: power_state.RUNNING}
    assert status["instances"] == {"active": 1}
    assert status["service"]["alive"] is True
    assert status["pool"]["role"] == "coordinator"
    assert [h["name"] for h in status["pool"]["hosts"]] == ["test-host"]
    assert status["live_migrations"] == {"max": 1, "running": 0, "queued": 0}
    assert status["maintenance"] == {"state": "off"}


def test_host_status_when_hypervisor_unreachable(manager, fake_driver):
    def down():
        raise exceptions.HypervisorUnavailable("http://dom0", "timed out")

    fake_driver.get_host_resources = down
    status = manager.get_host_status(new_context())
    assert status["hypervisor_available"] is False
    assert status["error"]["code"] == "HYPERVISOR_UNAVAILABLE"
    assert status["resources"]["host"] == "test-host"  # the last report


def test_guest_shutting_down_on_its_own_is_recorded(manager, fake_driver, agent_db, notifier):
    uuid = build(manager)
    fake_driver.guest_event(uuid, power_state.SHUTDOWN, "halted")
    assert manager.power_sync.wait_idle(WAIT)  # events are applied by power_sync's worker
    inst = agent_db.get_instance(uuid, internal=True)
    assert (inst["vm_state"], inst["power_state"]) == (states.STOPPED, power_state.SHUTDOWN)
    assert inst["shutdown_reason"] == "halted"
    update = notifier.data("instance.power_state.update")
    assert update["old_power_state"] == power_state.RUNNING
    assert update["instance"]["vm_state"] == states.STOPPED


def test_guest_crash_is_error_with_fault(manager, fake_driver, agent_db):
    uuid = build(manager)
    fake_driver.guest_event(uuid, power_state.CRASHED, "crashed")
    assert manager.power_sync.wait_idle(WAIT)
    inst = agent_db.get_instance(uuid)
    assert inst["vm_state"] == states.ERROR
    assert inst["fault"]["code"] == "GUEST_CRASHED"


def test_power_sync_reconciles_and_skips_busy_instances(manager, fake_driver, agent_db):
    quiet = build(manager)
    gone = build(manager)
    busy = build(manager)
    fake_driver.vms[quiet].power_state = power_state.SHUTDOWN  # no event sent
    fake_driver.vms.pop(gone)
    agent_db.update_instance(busy, {"task_state": states.REBOOTING})
    fake_driver.vms[busy].power_state = power_state.SHUTDOWN
    assert manager.sync_power_states(new_context()) == 2
    assert agent_db.get_instance(quiet)["vm_state"] == states.STOPPED
    missing = agent_db.get_instance(gone)
    assert missing["vm_state"] == states.ERROR
    assert missing["fault"]["code"] == "VM_MISSING"
    assert agent_db.get_instance(busy)["power_state"] == power_state.RUNNING
    assert manager.sync_power_states(new_context()) == 0


def test_ping(manager, agent_conf):
    assert manager.ping(new_context()) == {
        "host": "test-host", "version": RPC_API_VERSION, "backend": agent_conf.concurrency_backend,
        "driver": "FakeDriver"}


def test_busy_instances_cover_accept_to_outcome(manager, fake_driver):
    uuid = build(manager)
    assert manager.busy_instances() == set()
    gate = fake_driver.hold("power_off")
    manager.stop_instance(new_context(), uuid)
    assert manager.busy_instances() == {uuid}
    assert gate.wait_entered()
    gate.release()
    settle(manager)
    assert manager.busy_instances() == set()
    with pytest.raises(exceptions.InstanceInvalidState):
        manager.stop_instance(new_context(), uuid)
    assert manager.busy_instances() == set()
