"""The fake driver honours the driver contract and its test hooks."""

from __future__ import annotations

import threading

import pytest

from compute_agent import exceptions
from compute_agent.driver import load_driver, power_state
from compute_agent.driver.base import HOST_RESOURCE_KEYS, ComputeDriver, Operation
from compute_agent.driver.fake import FakeDriver

UUID = "5f1c8b5e-6d2b-4f0a-9a57-0c9d3a1f7e21"


class Listener:
    def __init__(self):
        self.events = []

    def task_started(self, op, ref, task_uuid, dom0):
        self.events.append(("started", op.name, ref))

    def task_progress(self, op, ref, progress):
        self.events.append(("progress", op.name, progress))

    def task_finished(self, op, ref, status, result, error):
        self.events.append(("finished", op.name, status, error))


def inst(**meta):
    return {"uuid": UUID, "name": "vm", "flavor": {"vcpus": 2, "memory_mb": 1024, "root_gb": 3},
            "image": {"id": None, "url": None, "disk_format": None}, "networks": [],
            "metadata": meta}


def op(name, timeout=None):
    return Operation(UUID, name, "req-1", timeout)


def test_load_driver_by_name():
    listener = Listener()
    driver = load_driver("fake", None, listener)
    assert isinstance(driver, FakeDriver) and driver.task_listener is listener
    with pytest.raises(ValueError):
        load_driver("vmware", None)


def test_base_driver_methods_are_abstract():
    base = ComputeDriver()
    with pytest.raises(NotImplementedError):
        base.spawn(op("spawn"), inst())
    with pytest.raises(NotImplementedError):
        base.cancel(UUID)
    base.set_power_state_listener(print)
    assert base.power_state_listener is print


def test_lifecycle_and_task_reporting():
    listener = Listener()
    d = FakeDriver(listener)
    d.init_host("h")
    info = d.spawn(op("spawn"), inst())
    assert info.power_state == power_state.RUNNING and info.vm_ref.startswith("OpaqueRef:")
    assert d.list_instance_uuids() == [UUID]
    d.power_off(op("power_off"), inst())
    assert d.get_info(inst()).power_state == power_state.SHUTDOWN
    d.power_off(op("power_off"), inst())  # already halted: fine
    d.reboot(op("reboot"), inst(), "HARD")
    assert d.get_info(inst()).power_state == power_state.RUNNING
    d.destroy(op("destroy"), inst())
    d.destroy(op("destroy"), inst())  # idempotent
    with pytest.raises(exceptions.InstanceNotFound):
        d.get_info(inst())
    finished = [e for e in listener.events if e[0] == "finished"]
    assert [e[1:3] for e in finished] == [
        ("spawn", "success"), ("power_off", "success"), ("power_off", "success"),
        ("reboot", "success"), ("destroy", "success"), ("destroy", "success")]
    d.cleanup_host()
    assert d.cleaned_up


def test_spawn_twice_reuses_the_vm():
    d = FakeDriver()
    first = d.spawn(op("spawn"), inst())
    second = d.spawn(op("spawn"), inst())
    assert first.vm_ref == second.vm_ref and len(d.vms) == 1


def test_host_resources_have_the_contract_keys():
    d = FakeDriver(memory_mb=4096)
    d.init_host("h")
    d.spawn(op("spawn"), inst())
    res = d.get_host_resources()
    assert set(res) == set(HOST_RESOURCE_KEYS)
    assert (res["memory_mb_used"], res["free_memory_mb"], res["vcpus_used"]) == (1024, 3072, 2)


def test_injected_failure_once_then_success():
    listener = Listener()
    d = FakeDriver(listener)
    d.inject_failure("spawn", exceptions.HypervisorError("x", code="HOST_NOT_ENOUGH_FREE_MEMORY"))
    with pytest.raises(exceptions.HypervisorError) as info:
        d.spawn(op("spawn"), inst())
    assert info.value.code == "HOST_NOT_ENOUGH_FREE_MEMORY"
    assert d.vms == {}
    assert listener.events[-1] == ("finished", "spawn", "failure",
                                   ["HOST_NOT_ENOUGH_FREE_MEMORY", "x"])
    d.spawn(op("spawn"), inst())


def test_failure_from_metadata():
    d = FakeDriver()
    with pytest.raises(exceptions.HypervisorError) as info:
        d.spawn(op("spawn"), inst(**{"fake:fail:spawn": "VM_BAD_POWER_STATE,a,b"}))
    assert (info.value.code, info.value.params) == ("VM_BAD_POWER_STATE", ["a", "b"])


def test_timeout_and_cancel():
    d = FakeDriver()
    d.spawn(op("spawn"), inst())
    d.set_delay("power_off", 30)
    with pytest.raises(exceptions.OperationTimedOut) as info:
        d.power_off(op("power_off", timeout=0.1), inst())
    assert info.value.params == ["power_off", UUID, "0.1"]

    gate = d.hold("power_on")
    d.set_delay("power_off", 0)
    d.power_off(op("power_off"), inst())
    errors = []

    def run():
        try:
            d.power_on(op("power_on"), inst())
        except exceptions.OperationCancelled as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    assert gate.wait_entered()
    assert d.cancel(UUID) is True
    t.join(10)
    assert errors and errors[0].code == "OPERATION_CANCELLED"
    assert d.cancel(UUID) is False
    assert d.get_info(inst()).power_state == power_state.SHUTDOWN


def test_guest_event_calls_listener():
    d = FakeDriver()
    d.spawn(op("spawn"), inst())
    seen = []
    d.set_power_state_listener(lambda uuid, info: seen.append((uuid, info.power_state)))
    d.guest_event(UUID, power_state.CRASHED, "crashed")
    assert seen == [(UUID, power_state.CRASHED)]


def test_bad_reboot_type():
    d = FakeDriver()
    with pytest.raises(exceptions.InvalidInput):
        d.reboot(op("reboot"), inst(), "GENTLE")
