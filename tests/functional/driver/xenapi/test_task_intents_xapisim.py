"""Principle 3 without holes (issue 15 part 4), through the XenAPI driver on
the simulator over HTTP with the manager's TrackedTaskListener on SQLite:

- a task's intent is recorded before its Async call and bound to its ref
  right after, so no row is ever missing while a task runs;
- a task whose ref cannot be recorded is cancelled and the operation fails
  with TASK_NOT_RECORDED; an intent that cannot be recorded makes no call;
- an agent that died between the call and the record leaves an intent row
  that recovery (reattach_task) resolves to the task it started.
"""

from __future__ import annotations

import threading
import time

import pytest
from xenapi_fixtures import make_instance, no_tasks_left, op_for, wait_until

from compute_agent import exceptions
from compute_agent.compute.task_listener import TrackedTaskListener
from compute_agent.db.api import Database
from compute_agent.driver import task_status


@pytest.fixture
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path}/agent.sqlite")
    from compute_agent.db import migration

    migration.upgrade(database.engine)
    yield database
    database.dispose()


class FlakyListener(TrackedTaskListener):
    """The real listener, with writes that fail when told to."""

    fail_intent = False
    fail_bind = False
    die_after_call = False

    def task_intent(self, op, method):
        if self.fail_intent:
            raise exceptions.TaskNotRecorded(op.name, op.instance_uuid)
        return super().task_intent(op, method)

    def task_started(self, op, task_ref, task_uuid, dom0_host, intent=None):
        if self.die_after_call:
            # The agent "dies" here (it hangs until the test ends, as a
            # killed process would never go on): the intent row stays, the
            # ref is never bound.
            self.hung.set()
            self.release.wait(60)
            raise exceptions.TaskNotRecorded(op.name, op.instance_uuid)
        if self.fail_bind:
            raise exceptions.TaskNotRecorded(op.name, op.instance_uuid)
        super().task_started(op, task_ref, task_uuid, dom0_host, intent=intent)


@pytest.fixture
def flaky(db):
    listener = FlakyListener(db, "agent-h15", retry_delays=(0.01,))
    listener.hung, listener.release = threading.Event(), threading.Event()
    yield listener
    listener.release.set()


def rows(db):
    return db.list_tracked_tasks(status=None)


def test_every_task_was_an_intent_first_and_is_bound_to_its_ref(sim, make_driver, db, xapi):
    driver = make_driver(sim.url, listener=TrackedTaskListener(db, "agent-h15"))
    inst = make_instance()
    driver.spawn(op_for(inst, "spawn"), inst)
    recorded = rows(db)
    assert recorded, "no task was recorded"
    for row in recorded:
        assert row["ref"].startswith("OpaqueRef:"), row  # every intent was bound
        assert row["extra"]["intent"] and row["status"] == "success"
    no_tasks_left(xapi)


def test_a_task_that_cannot_be_recorded_is_cancelled(sim, make_driver, db, flaky, xapi):
    driver = make_driver(sim.url, listener=flaky)
    inst = make_instance()
    driver.spawn(op_for(inst, "spawn"), inst)
    flaky.fail_bind = True
    with pytest.raises(exceptions.TaskNotRecorded) as info:
        driver.power_off(op_for(inst, "power_off"), inst, clean=False)
    assert info.value.code == "TASK_NOT_RECORDED"
    # The task was cancelled (or had ended) and nothing runs on untracked.
    wait_until(lambda: all(xapi.xenapi.task.get_status(t) != "pending"
                           for t in xapi.xenapi.task.get_all()), timeout=10)


def test_no_call_is_made_when_its_intent_cannot_be_recorded(sim, make_driver, db, flaky,
                                                            xapi):
    driver = make_driver(sim.url, listener=flaky)
    inst = make_instance()
    driver.spawn(op_for(inst, "spawn"), inst)
    flaky.fail_intent = True
    with pytest.raises(exceptions.TaskNotRecorded):
        driver.power_off(op_for(inst, "power_off"), inst, clean=False)
    # The VM still runs: the shutdown was never sent.
    assert driver.get_info(inst).power_state == 1


def test_recovery_finds_the_task_of_an_intent_never_bound(sim, make_driver, db, flaky, xapi):
    driver = make_driver(sim.url, listener=flaky)
    inst = make_instance()
    driver.spawn(op_for(inst, "spawn"), inst)
    flaky.die_after_call = True
    threading.Thread(target=lambda: pytest.raises(
        exceptions.TaskNotRecorded, driver.power_off, op_for(inst, "power_off"), inst,
        clean=False), daemon=True).start()
    assert flaky.hung.wait(10)
    pending = [r for r in rows(db) if r["status"] == "pending"]
    assert len(pending) == 1 and pending[0]["ref"].startswith("intent:VM.hard_shutdown:")
    intent = pending[0]["ref"]
    # A restarted agent: a new driver, recovery re-attaches by the intent.
    restarted = make_driver(sim.url, listener=TrackedTaskListener(db, "agent-h15"))
    op = op_for(inst, "power_off", timeout=30)
    state = restarted.reattach_task(op, intent, 30)
    assert state.status == task_status.SUCCESS, state
    row = [r for r in rows(db) if r["operation"] == "power_off"][-1]
    assert row["ref"].startswith("OpaqueRef:") and row["status"] == "success"
    assert restarted.get_info(inst).power_state == 4


def test_an_intent_whose_call_never_reached_dom0_is_lost(sim, make_driver, db):
    listener = TrackedTaskListener(db, "agent-h15")
    driver = make_driver(sim.url, listener=listener)
    inst = make_instance()
    op = op_for(inst, "power_on", timeout=30)
    intent = listener.task_intent(op, "VM.start")
    time.sleep(0.01)
    state = driver.reattach_task(op, intent, 30)
    assert state.status == task_status.LOST
    assert db.get_tracked_task(intent)["status"] == "failure"


class TransferRecordFails(TrackedTaskListener):
    """The real listener whose record of a transfer task (task.create, no
    intent: the config drive's import) fails."""

    def task_started(self, op, task_ref, task_uuid, dom0_host, intent=None):
        if intent is None:
            raise exceptions.TaskNotRecorded(op.name, op.instance_uuid)
        super().task_started(op, task_ref, task_uuid, dom0_host, intent=intent)


def config_drive_vdis(xapi):
    return [r for r in xapi.xenapi.VDI.get_all_records().values()
            if r["other_config"].get("compute_agent_disk") == "config-drive"]


def test_the_config_drive_import_is_recorded_before_its_bytes_move(sim, make_driver, db,
                                                                    xapi):
    driver = make_driver(sim.url, listener=TrackedTaskListener(db, "agent-h15"))
    inst = {**make_instance(), "config_drive": True, "user_data": "#cloud-config\n"}
    driver.spawn(op_for(inst, "spawn"), inst)
    transfers = [r for r in rows(db) if not (r["extra"] or {}).get("intent")]
    assert len(transfers) == 1 and transfers[0]["status"] == "success", rows(db)
    assert transfers[0]["ref"].startswith("OpaqueRef:")
    assert len(config_drive_vdis(xapi)) == 1
    no_tasks_left(xapi)


def test_a_config_drive_import_that_cannot_be_recorded_never_starts(sim, make_driver, db,
                                                                    xapi):
    driver = make_driver(sim.url, listener=TransferRecordFails(db, "agent-h15",
                                                               retry_delays=(0.01,)))
    inst = {**make_instance(), "config_drive": True}
    with pytest.raises(exceptions.TaskNotRecorded):
        driver.spawn(op_for(inst, "spawn"), inst)
    # The unrecorded task was cancelled, not left pending; the build's VM and
    # disks (the half-made config drive VDI too) were removed. (One read of
    # all records: a task may be destroyed between get_all and a get_status.)
    wait_until(lambda: all(r["status"] != "pending"
                           for r in xapi.xenapi.task.get_all_records().values()), timeout=10)
    assert config_drive_vdis(xapi) == []


def test_a_transfer_whose_agent_died_is_cancelled_not_awaited_to_its_deadline(
        sim, make_driver, db, xapi):
    # What a killed agent leaves between recording a transfer's task and
    # sending its request: a task.create'd task, recorded, that no handler
    # will ever end (the bytes were to go through the dead process).
    listener = TrackedTaskListener(db, "agent-h15")
    inst = make_instance()
    op = op_for(inst, "snapshot", timeout=600)
    ref = xapi.xenapi.task.create("Export a snapshot", f"snapshot of {inst['uuid']}")
    listener.task_started(op, ref, xapi.xenapi.task.get_uuid(ref), "127.0.0.1")
    # A restarted agent re-attaches: the 600 s deadline is not what it waits.
    restarted = make_driver(sim.url, listener=TrackedTaskListener(db, "agent-h15"))
    result: list = []
    worker = threading.Thread(target=lambda: result.append(
        restarted.reattach_task(op, ref, 600)), daemon=True)
    worker.start()
    worker.join(60)
    assert result, "recovery waited on a transfer nobody carries"
    assert result[0].status == task_status.CANCELLED, result[0]
    assert db.get_tracked_task(ref)["status"] == "cancelled"
