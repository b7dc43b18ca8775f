"""The TrackedTaskListener (issue 4 part 2): tasks recorded before they are
waited on, progress throttled and mirrored into the instance, the end
always written. Real SQLite."""

from __future__ import annotations

import uuid as uuidlib

import pytest

from compute_agent import exceptions
from compute_agent.compute.task_listener import TrackedTaskListener
from compute_agent.db.types import parse_time
from compute_agent.driver.base import Operation


def setup(db, interval=3600.0, timeout=300.0):
    uuid = str(uuidlib.uuid4())
    db.create_instance({"uuid": uuid, "name": "vm", "host": "h", "vm_state": "building",
                        "task_state": "spawning"})
    op = Operation(uuid, "spawn", "req-1", timeout)
    return TrackedTaskListener(db, "h", interval), op, uuid


def test_started_task_is_recorded_with_its_deadline(agent_db):
    listener, op, uuid = setup(agent_db, timeout=120)
    listener.task_started(op, "OpaqueRef:t", "task-uuid", "dom0")
    row = agent_db.get_tracked_task("OpaqueRef:t")
    assert {k: row[k] for k in ("uuid", "dom0_host", "instance_uuid", "operation",
                                "request_id", "agent_host", "status")} == {
        "uuid": "task-uuid", "dom0_host": "dom0", "instance_uuid": uuid, "operation": "spawn",
        "request_id": "req-1", "agent_host": "h", "status": "pending"}
    span = parse_time(row["deadline"]) - parse_time(row["created_at"])
    assert span.total_seconds() == 120


def test_without_timeout_there_is_no_deadline(agent_db):
    listener, op, _ = setup(agent_db, timeout=None)
    listener.task_started(op, "OpaqueRef:t", "u", "dom0")
    assert agent_db.get_tracked_task("OpaqueRef:t")["deadline"] is None


def test_progress_is_throttled_and_mirrored_into_the_instance(agent_db):
    listener, op, uuid = setup(agent_db, interval=0.0)
    listener.task_started(op, "OpaqueRef:t", "u", "dom0")
    listener.task_progress(op, "OpaqueRef:t", 0.42)
    assert agent_db.get_tracked_task("OpaqueRef:t")["progress"] == 0.42
    assert agent_db.get_instance(uuid)["progress"] == 42
    slow, op2, uuid2 = setup(agent_db, interval=3600.0)
    slow.task_started(op2, "OpaqueRef:s", "u", "dom0")
    for p in (0.1, 0.2, 0.3):
        slow.task_progress(op2, "OpaqueRef:s", p)  # within the interval: not written
    assert agent_db.get_tracked_task("OpaqueRef:s")["progress"] == 0.0
    assert agent_db.get_instance(uuid2)["progress"] == 0


def test_end_is_always_written(agent_db):
    listener, op, _ = setup(agent_db)
    listener.task_started(op, "OpaqueRef:ok", "u", "dom0")
    listener.task_finished(op, "OpaqueRef:ok", "success", "OpaqueRef:vm", None)
    row = agent_db.get_tracked_task("OpaqueRef:ok")
    assert (row["status"], row["progress"], row["result"]) == ("success", 1.0, "OpaqueRef:vm")
    assert row["finished_at"] is not None
    listener.task_started(op, "OpaqueRef:bad", "u", "dom0")
    listener.task_finished(op, "OpaqueRef:bad", "failure", None, ["VM_BAD_POWER_STATE", "x"])
    row = agent_db.get_tracked_task("OpaqueRef:bad")
    assert (row["status"], row["error"]) == ("failure", ["VM_BAD_POWER_STATE", "x"])


def test_progress_and_end_never_raise_and_a_repeated_record_is_one(agent_db):
    listener, op, _ = setup(agent_db)
    # Unknown ref: the update fails inside, the caller sees nothing.
    listener.task_finished(op, "OpaqueRef:unknown", "success", None, None)
    listener.task_progress(op, "OpaqueRef:unknown", 0.5)
    listener.task_started(op, "OpaqueRef:t", "u", "dom0")
    # A retried write that had succeeded: the row is there, that is enough.
    listener.task_started(op, "OpaqueRef:t", "u", "dom0")
    assert agent_db.get_tracked_task("OpaqueRef:t")["status"] == "pending"


class BrokenDatabase:
    """Every write fails, as a database that is down does."""

    def __init__(self, db, failures=10**9):
        self.db, self.failures, self.calls = db, failures, 0

    def __getattr__(self, name):
        real = getattr(self.db, name)
        if name not in ("add_tracked_task", "bind_tracked_task"):
            return real

        def write(*args, **kwargs):
            self.calls += 1
            if self.calls <= self.failures:
                raise ConnectionError("database down")
            return real(*args, **kwargs)

        return write


def test_intent_then_ref_binds_one_row(agent_db):
    listener, op, uuid = setup(agent_db)
    intent = listener.task_intent(op, "VM.start")
    row = agent_db.get_tracked_task(intent)
    assert intent.startswith("intent:VM.start:")
    assert (row["status"], row["instance_uuid"], row["extra"]) == (
        "pending", uuid, {"intent": "VM.start"})
    listener.task_started(op, "OpaqueRef:real", "task-uuid", "dom0", intent=intent)
    assert agent_db.get_tracked_task(intent) is None
    row = agent_db.get_tracked_task("OpaqueRef:real")
    assert (row["uuid"], row["operation"], row["status"]) == ("task-uuid", "spawn", "pending")
    assert listener.task_known("OpaqueRef:real") and not listener.task_known(intent)


def test_a_transient_failure_is_retried(agent_db):
    _, op, _ = setup(agent_db)
    db = BrokenDatabase(agent_db, failures=2)
    listener = TrackedTaskListener(db, "h", retry_delays=(0.01, 0.01, 0.01))
    intent = listener.task_intent(op, "VM.start")
    assert agent_db.get_tracked_task(intent) is not None and db.calls == 3


def test_a_task_that_cannot_be_recorded_raises(agent_db):
    _, op, _ = setup(agent_db)
    listener = TrackedTaskListener(BrokenDatabase(agent_db), "h", retry_delays=(0.01,))
    with pytest.raises(exceptions.TaskNotRecorded) as info:
        listener.task_intent(op, "VM.start")
    assert info.value.params == ["spawn", op.instance_uuid]
    with pytest.raises(exceptions.TaskNotRecorded):
        listener.task_started(op, "OpaqueRef:x", "u", "dom0")
