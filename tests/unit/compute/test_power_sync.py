"""Event-driven power state and the periodic reconciliation: real SQLite,
the fake driver's guest events."""

from __future__ import annotations

import datetime as dt
import uuid as uuidlib

import pytest

from compute_agent import exceptions
from compute_agent.compute import states
from compute_agent.compute.power_sync import EVENT_TYPE, PowerStateSync, target_vm_state
from compute_agent.context import get_admin_context
from compute_agent.db.types import utcnow
from compute_agent.driver import power_state
from compute_agent.driver.base import InstanceInfo
from compute_agent.driver.fake import FakeDriver

HOST = "test-host"
WAIT = 10


@pytest.fixture
def driver() -> FakeDriver:
    d = FakeDriver()
    d.init_host(HOST)
    return d


@pytest.fixture
def sync(agent_db, driver, notifier):
    ps = PowerStateSync(agent_db, driver, notifier, HOST)
    driver.set_power_state_listener(ps.on_event)
    yield ps
    ps.stop()


def instance(db, vm_state=states.ACTIVE, power=power_state.RUNNING, task_state=None,
             host=HOST):
    uuid = str(uuidlib.uuid4())
    db.create_instance({"uuid": uuid, "name": "vm", "host": host, "vm_state": vm_state,
                        "task_state": task_state, "power_state": power})
    return uuid


def settle(sync):
    assert sync.wait_idle(WAIT)


@pytest.mark.parametrize("vm_state, power, expected", [
    (states.ACTIVE, power_state.SHUTDOWN, states.STOPPED),
    (states.ACTIVE, power_state.CRASHED, states.ERROR),
    (states.STOPPED, power_state.CRASHED, states.ERROR),
    (states.ERROR, power_state.CRASHED, states.ERROR),
    (states.STOPPED, power_state.RUNNING, states.ACTIVE),
    (states.ERROR, power_state.RUNNING, states.ACTIVE),
    (states.PAUSED, power_state.RUNNING, states.ACTIVE),
    (states.ACTIVE, power_state.PAUSED, states.PAUSED),
    (states.ACTIVE, power_state.SUSPENDED, states.SUSPENDED),
    (states.RESCUED, power_state.RUNNING, states.RESCUED),
    (states.RESCUED, power_state.SHUTDOWN, states.RESCUED),
    (states.ERROR, power_state.SHUTDOWN, states.ERROR),
    (states.STOPPED, power_state.PAUSED, states.STOPPED),
])
def test_rules(vm_state, power, expected):
    assert target_vm_state(vm_state, power) == expected


def test_guest_shutdown_stops_the_instance(sync, driver, agent_db, notifier):
    uuid = instance(agent_db)
    driver.add_vm(uuid)
    driver.guest_event(uuid, power_state.SHUTDOWN, "halted")
    settle(sync)
    inst = agent_db.get_instance(uuid, internal=True)
    assert (inst["vm_state"], inst["power_state"], inst["shutdown_reason"]) == (
        states.STOPPED, power_state.SHUTDOWN, "halted")
    assert inst["fault"] is None
    data = notifier.data(EVENT_TYPE)
    assert (data["old_vm_state"], data["instance"]["vm_state"]) == (states.ACTIVE,
                                                                   states.STOPPED)
    assert (data["old_power_state"], data["instance"]["power_state"]) == (1, 4)
    assert data["reason"] == "halted"
    assert data["instance"]["uuid"] == uuid and "shutdown_reason" not in data["instance"]


def test_guest_crash_is_error_with_fault(sync, driver, agent_db, notifier):
    uuid = instance(agent_db)
    driver.add_vm(uuid)
    driver.guest_event(uuid, power_state.CRASHED, "crashed")
    settle(sync)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["power_state"]) == (states.ERROR, power_state.CRASHED)
    assert inst["fault"]["code"] == "GUEST_CRASHED"
    assert inst["fault"]["params"] == [uuid, "crashed"]
    assert notifier.data(EVENT_TYPE)["instance"]["fault"]["code"] == "GUEST_CRASHED"


def test_started_outside_the_agent_is_active(sync, driver, agent_db):
    uuid = instance(agent_db, states.STOPPED, power_state.SHUTDOWN)
    driver.add_vm(uuid, power_state.SHUTDOWN)
    driver.guest_event(uuid, power_state.RUNNING, "halted")
    settle(sync)
    assert agent_db.get_instance(uuid)["vm_state"] == states.ACTIVE


def test_guest_reboot_on_its_own_is_reported(sync, agent_db, notifier):
    uuid = instance(agent_db)
    first = InstanceInfo(power_state.RUNNING, "OpaqueRef:v", "rebooted",
                         {"last_shutdown_time": "20260101T10:00:00Z"})
    sync.on_event(uuid, first)  # the first reboot: the reason is new
    settle(sync)
    assert agent_db.get_instance(uuid, internal=True)["shutdown_reason"] == "rebooted"
    assert notifier.event_types() == [EVENT_TYPE]
    sync.on_event(uuid, first)  # the same record again: nothing new
    settle(sync)
    assert notifier.event_types() == [EVENT_TYPE]
    second = InstanceInfo(power_state.RUNNING, "OpaqueRef:v", "rebooted",
                          {"last_shutdown_time": "20260101T10:05:00Z"})
    sync.on_event(uuid, second)  # same reason, new time: a second reboot
    settle(sync)
    assert notifier.event_types() == [EVENT_TYPE, EVENT_TYPE]
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["power_state"]) == (states.ACTIVE, power_state.RUNNING)


def test_instance_with_an_operation_in_progress_is_left_to_it(sync, driver, agent_db,
                                                              notifier):
    uuid = instance(agent_db, task_state=states.POWERING_OFF)
    driver.add_vm(uuid)
    driver.guest_event(uuid, power_state.SHUTDOWN, "halted")
    settle(sync)
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["power_state"]) == (states.ACTIVE, power_state.RUNNING)
    assert notifier.sent == []


@pytest.mark.parametrize("vm_state", [states.BUILDING, states.DELETED])
def test_building_and_deleted_are_untouched(sync, driver, agent_db, vm_state):
    uuid = instance(agent_db, vm_state, power_state.NOSTATE)
    driver.add_vm(uuid)
    driver.guest_event(uuid, power_state.SHUTDOWN, "halted")
    settle(sync)
    assert agent_db.get_instance(uuid)["vm_state"] == vm_state


def test_other_hosts_and_unknown_instances_are_ignored(sync, agent_db, notifier):
    other = instance(agent_db, host="elsewhere")
    sync.on_event(other, InstanceInfo(power_state.SHUTDOWN))
    sync.on_event(str(uuidlib.uuid4()), InstanceInfo(power_state.SHUTDOWN))
    settle(sync)
    assert agent_db.get_instance(other)["vm_state"] == states.ACTIVE
    assert notifier.sent == []


def test_event_older_than_an_operation_settling_is_dropped(sync, agent_db, notifier):
    uuid = instance(agent_db)
    stale_time = utcnow() - dt.timedelta(seconds=5)
    # An operation settled the instance after the event arrived.
    agent_db.update_instance(uuid, {"vm_state": states.ACTIVE})
    sync._apply_event(get_admin_context(), uuid, InstanceInfo(power_state.SHUTDOWN),
                      stale_time)
    assert agent_db.get_instance(uuid)["vm_state"] == states.ACTIVE
    assert notifier.sent == []


def test_quick_successive_events_all_apply(sync, agent_db):
    uuid = instance(agent_db)
    sync.on_event(uuid, InstanceInfo(power_state.SHUTDOWN, None, "halted"))
    settle(sync)
    # Our own write is newer than the next event's arrival only if it were
    # stale; an event right after ours must still apply.
    sync.on_event(uuid, InstanceInfo(power_state.RUNNING, None, "halted"))
    settle(sync)
    assert agent_db.get_instance(uuid)["vm_state"] == states.ACTIVE


def test_events_are_coalesced_to_the_newest(agent_db, driver, notifier):
    ps = PowerStateSync(agent_db, driver, notifier, HOST)
    uuid = instance(agent_db)
    with ps.locks.hold(uuid):  # the worker blocks on the first event
        ps.on_event(uuid, InstanceInfo(power_state.SHUTDOWN, None, "halted"))
        ps.on_event(uuid, InstanceInfo(power_state.PAUSED))
        ps.on_event(uuid, InstanceInfo(power_state.CRASHED, None, "crashed"))
    assert ps.wait_idle(WAIT)
    ps.stop()
    inst = agent_db.get_instance(uuid)
    assert (inst["vm_state"], inst["power_state"]) == (states.ERROR, power_state.CRASHED)


def test_sync_all_reconciles(sync, driver, agent_db, notifier):
    stopped_by_guest = instance(agent_db)
    driver.add_vm(stopped_by_guest, power_state.SHUTDOWN)
    unchanged = instance(agent_db)
    driver.add_vm(unchanged)
    missing = instance(agent_db)
    busy = instance(agent_db, task_state=states.REBOOTING)
    driver.add_vm(busy, power_state.SHUTDOWN)
    assert sync.sync_all(get_admin_context()) == 2
    assert agent_db.get_instance(stopped_by_guest)["vm_state"] == states.STOPPED
    assert agent_db.get_instance(unchanged)["vm_state"] == states.ACTIVE
    gone = agent_db.get_instance(missing)
    assert (gone["vm_state"], gone["power_state"]) == (states.ERROR, power_state.NOSTATE)
    assert gone["fault"]["code"] == "VM_MISSING"
    assert agent_db.get_instance(busy)["power_state"] == power_state.RUNNING
    # A second pass finds nothing new (no repeated VM_MISSING faults).
    assert sync.sync_all(get_admin_context()) == 0
    assert len(agent_db.get_instance_faults(missing)) == 1


def test_sync_all_stops_when_dom0_is_unreachable(sync, driver, agent_db):
    uuid = instance(agent_db)
    driver.add_vm(uuid, power_state.SHUTDOWN)
    original = driver.get_info

    def unreachable(inst):
        raise exceptions.HypervisorUnavailable("fake://dom0", "down")

    driver.get_info = unreachable
    assert sync.sync_all(get_admin_context()) == 0
    driver.get_info = original
    assert agent_db.get_instance(uuid)["vm_state"] == states.ACTIVE


def test_stop_drops_later_events(agent_db, driver, notifier):
    ps = PowerStateSync(agent_db, driver, notifier, HOST)
    ps.stop()
    uuid = instance(agent_db)
    ps.on_event(uuid, InstanceInfo(power_state.SHUTDOWN))
    assert agent_db.get_instance(uuid)["vm_state"] == states.ACTIVE
