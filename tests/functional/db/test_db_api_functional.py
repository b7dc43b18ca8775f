"""The whole Database API against real SQLite, PostgreSQL and MariaDB."""

import datetime as dt
import threading
import uuid as uuidlib

import pytest
import sqlalchemy as sa

from compute_agent import exceptions
from compute_agent.db import api, errors, models
from compute_agent.db.types import parse_time


def _uuid():
    return str(uuidlib.uuid4())


def _instance(database, **values):
    base = {
        "uuid": _uuid(), "name": "vm-1", "host": "xen-01", "vm_state": "building",
        "task_state": None, "flavor": {"vcpus": 2, "memory_mb": 512, "root_gb": 1},
        "image": {"id": "img", "url": None, "disk_format": "vhd"},
        "networks": [{"network": "mgmt"}], "metadata": {"role": "web"},
    }
    base.update(values)
    return database.create_instance(base)


# -- instances ----------------------------------------------------------------------


def test_create_and_get_instance_dict_shape(database):
    created = _instance(database)
    assert list(created) == list(api.RPC_INSTANCE_KEYS)
    assert created["vm_state"] == "building"
    assert created["task_state"] is None
    assert created["power_state"] == 0 and created["progress"] == 0
    assert created["fault"] is None and created["launched_at"] is None
    assert created["created_at"].endswith("Z")
    assert created["flavor"] == {"vcpus": 2, "memory_mb": 512, "root_gb": 1}
    assert database.get_instance(created["uuid"]) == created

    internal = database.get_instance(created["uuid"], internal=True)
    assert internal["networks"] == [{"network": "mgmt"}]
    assert internal["metadata"] == {"role": "web"}
    assert internal["vm_ref"] is None and internal["deleted_at"] is None
    assert api.instance_to_dict(internal) == created


def test_json_and_timestamps_round_trip_exactly(database):
    launched = dt.datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=dt.UTC)
    meta = {"name": "café ☕ 日本", "nested": {"list": [1, 2.5, None, True]}, "empty": {}}
    created = _instance(database, metadata=meta, launched_at=launched)
    internal = database.get_instance(created["uuid"], internal=True)
    assert internal["metadata"] == meta
    assert internal["launched_at"] == "2025-03-04T05:06:07.123456Z"
    assert parse_time(internal["launched_at"]) == launched


def test_create_duplicate_and_missing(database):
    created = _instance(database)
    with pytest.raises(exceptions.InstanceExists) as err:
        database.create_instance({"uuid": created["uuid"], "name": "again"})
    assert err.value.params == [created["uuid"]]
    missing = _uuid()
    with pytest.raises(exceptions.InstanceNotFound) as err:
        database.get_instance(missing)
    assert err.value.to_dict()["code"] == "INSTANCE_NOT_FOUND"
    with pytest.raises(exceptions.InstanceNotFound):
        database.update_instance(missing, {"progress": 5})
    with pytest.raises(exceptions.InvalidInput):
        database.create_instance({"uuid": _uuid(), "colour": "red"})
    with pytest.raises(exceptions.InvalidInput):
        database.update_instance(created["uuid"], {"colour": "red"})


def test_list_instances_filters_and_deleted(database):
    a = _instance(database, host="xen-01")
    b = _instance(database, host="xen-02")
    c = _instance(database, host="xen-01")
    database.update_instance(c["uuid"], {"vm_state": "deleted"})
    assert [i["uuid"] for i in database.list_instances()] == [a["uuid"], b["uuid"]]
    assert [i["uuid"] for i in database.list_instances(host="xen-01")] == [a["uuid"]]
    everything = database.list_instances(include_deleted=True)
    assert [i["uuid"] for i in everything] == [a["uuid"], b["uuid"], c["uuid"]]
    # A terminated instance stays readable.
    deleted = database.get_instance(c["uuid"], internal=True)
    assert deleted["vm_state"] == "deleted" and deleted["deleted_at"] is not None
    assert all(list(i) == list(api.RPC_INSTANCE_KEYS) for i in everything)
    internal = database.list_instances(host="xen-02", internal=True)
    assert internal[0]["metadata"] == {"role": "web"}


def test_guarded_update_value_none_and_tuple(database):
    uuid = _instance(database)["uuid"]
    out = database.update_instance(uuid, {"task_state": "spawning"}, expected_task_state=None,
                                   expected_vm_state="building")
    assert out["task_state"] == "spawning"
    with pytest.raises(exceptions.UnexpectedTaskState) as err:
        database.update_instance(uuid, {"task_state": "deleting"}, expected_task_state=None)
    assert err.value.params == [uuid, "None", "spawning"]
    out = database.update_instance(
        uuid, {"vm_state": "active", "task_state": None, "power_state": 1, "progress": 100},
        expected_task_state=("powering_on", "spawning"))
    assert (out["vm_state"], out["task_state"], out["power_state"], out["progress"]) == (
        "active", None, 1, 100)
    with pytest.raises(exceptions.InstanceInvalidState) as err:
        database.update_instance(uuid, {"task_state": "powering_off"},
                                 expected_vm_state=["stopped", "error"])
    assert err.value.params == [uuid, "vm_state", "active", "stopped|error"]
    # The refused updates changed nothing.
    assert database.get_instance(uuid)["task_state"] is None
    # An update that writes the same values still counts as a match (MariaDB
    # reports changed rows, not matched ones, unless told otherwise).
    same = database.update_instance(uuid, {"vm_state": "active"}, expected_task_state=None,
                                    expected_vm_state="active")
    assert same["vm_state"] == "active"
    assert same["updated_at"] >= out["updated_at"]


def test_compare_and_set_race_has_exactly_one_winner(database):
    """Threads race the same guarded update: one wins, the others lose with
    UnexpectedTaskState, over many rounds."""
    uuid = _instance(database)["uuid"]
    n_threads, rounds = 4, 15
    for round_no in range(rounds):
        database.update_instance(uuid, {"task_state": None})
        barrier = threading.Barrier(n_threads)
        outcomes: list[str] = []
        lock = threading.Lock()

        def racer(i, barrier=barrier, outcomes=outcomes, lock=lock):
            barrier.wait(timeout=20)
            try:
                database.update_instance(uuid, {"task_state": "rebooting", "progress": i},
                                         expected_task_state=None)
                result = f"won:{i}"
            except exceptions.UnexpectedTaskState as exc:
                assert exc.params[2] == "rebooting"
                result = "lost"
            with lock:
                outcomes.append(result)

        threads = [threading.Thread(target=racer, args=(i,)) for i in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(outcomes) == n_threads, f"round {round_no}: a racer did not finish"
        winners = [o for o in outcomes if o.startswith("won")]
        assert len(winners) == 1, f"round {round_no}: {outcomes}"
        # The stored row is the winner's write, not a mix.
        assert database.get_instance(uuid)["progress"] == int(winners[0].split(":")[1])


def test_many_threads_share_one_database_object(database):
    uuids = [_instance(database)["uuid"] for _ in range(4)]
    failures: list[BaseException] = []

    def worker(uuid):
        try:
            for progress in range(10):
                database.update_instance(uuid, {"progress": progress})
                database.get_instance(uuid)
                database.service_heartbeat(f"host-{uuid}", "compute-agent", "compute")
                database.list_instances()
        except BaseException as exc:  # reported below with the thread's error
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(u,)) for u in uuids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=50)
    assert not failures, failures
    assert all(database.get_instance(u)["progress"] == 9 for u in uuids)
    assert {s["report_count"] for s in database.list_services()} == {10}


# -- faults -------------------------------------------------------------------------


def test_faults(database):
    uuid = _instance(database)["uuid"]
    first = database.add_instance_fault(uuid, "VM_BAD_POWER_STATE",
                                        ["OpaqueRef:vm", "halted", "running"], "bad state")
    assert first["code"] == "VM_BAD_POWER_STATE"
    assert first["params"] == ["OpaqueRef:vm", "halted", "running"]
    assert first["instance_uuid"] == uuid and first["created_at"].endswith("Z")
    database.add_instance_fault(uuid, "HYPERVISOR_UNAVAILABLE", ["https://dom0", 7], "down")
    faults = database.get_instance_faults(uuid)
    assert [f["code"] for f in faults] == ["HYPERVISOR_UNAVAILABLE", "VM_BAD_POWER_STATE"]
    assert faults[0]["params"] == ["https://dom0", "7"]
    expected = {"code": "HYPERVISOR_UNAVAILABLE", "params": ["https://dom0", "7"],
                "message": "down"}
    assert database.get_instance(uuid)["fault"] == expected
    listed = [i for i in database.list_instances() if i["uuid"] == uuid]
    assert listed[0]["fault"] == expected
    with pytest.raises(exceptions.InstanceNotFound):
        database.add_instance_fault(_uuid(), "X", [], "m")


# -- actions and events -------------------------------------------------------------


def test_actions_and_events(database):
    uuid = _instance(database)["uuid"]
    started = database.action_start(uuid, "build_instance", "req-1")
    assert started["action"] == "build_instance" and started["request_id"] == "req-1"
    assert started["finish_time"] is None and started["result"] is None
    assert started["events"] == []
    # A redelivered request is the same action.
    assert database.action_start(uuid, "build_instance", "req-1")["id"] == started["id"]

    ev = database.action_event_start(uuid, "req-1", "compute_spawn")
    assert ev["event"] == "compute_spawn" and ev["finish_time"] is None
    done = database.action_event_finish(uuid, "req-1", "compute_spawn", "error",
                                        traceback="Traceback: boom")
    assert done["id"] == ev["id"] and done["result"] == "error"
    assert done["traceback"] == "Traceback: boom" and done["finish_time"] is not None
    # Finishing an event that never started records it as started now.
    direct = database.action_event_finish(uuid, "req-1", "compute_cleanup", "success")
    assert direct["start_time"] == direct["finish_time"]

    finished = database.action_finish(uuid, "req-1", "error", message="spawn failed")
    assert finished["result"] == "error" and finished["message"] == "spawn failed"
    database.action_start(uuid, "stop_instance", "req-2")

    actions = database.list_actions(uuid)
    assert [a["request_id"] for a in actions] == ["req-1", "req-2"]
    assert [e["event"] for e in actions[0]["events"]] == ["compute_spawn", "compute_cleanup"]
    assert set(actions[0]["events"][0]) == {
        "id", "event", "start_time", "finish_time", "result", "traceback"}
    assert actions[1]["events"] == [] and actions[1]["result"] is None

    with pytest.raises(errors.InstanceActionNotFound):
        database.action_event_start(uuid, "req-unknown", "x")
    with pytest.raises(errors.InstanceActionNotFound):
        database.action_finish(uuid, "req-unknown", "success")
    with pytest.raises(exceptions.InvalidInput):
        database.action_finish(uuid, "req-2", "maybe")
    with pytest.raises(exceptions.InstanceNotFound):
        database.action_start(_uuid(), "build_instance", "req-3")


# -- tracked tasks ------------------------------------------------------------------


def test_tracked_tasks(database):
    uuid = _instance(database)["uuid"]
    base = {"dom0_host": "dom0-a", "instance_uuid": uuid, "operation": "spawn",
            "request_id": "req-1", "agent_host": "xen-01"}
    t1 = database.add_tracked_task({"ref": "OpaqueRef:t1", "uuid": _uuid(), **base})
    assert t1["status"] == "pending" and t1["progress"] == 0.0
    assert t1["created_at"].endswith("Z") and t1["error"] is None
    database.add_tracked_task({"ref": "OpaqueRef:t2", **base, "agent_host": "xen-02"})
    database.add_tracked_task({"ref": "OpaqueRef:t3", **base, "instance_uuid": None})
    with pytest.raises(errors.TrackedTaskExists):
        database.add_tracked_task({"ref": "OpaqueRef:t1"})

    up = database.update_tracked_task("OpaqueRef:t1", {"progress": 0.42})
    assert up["progress"] == pytest.approx(0.42)
    deadline = "2030-01-01T00:00:00.000000Z"
    up = database.update_tracked_task("OpaqueRef:t1", {
        "status": "failure", "error": ["VM_BAD_POWER_STATE", "OpaqueRef:vm", "halted"],
        "finished_at": dt.datetime.now(dt.UTC), "deadline": deadline,
        "extra": {"retries": 1}})
    assert up["error"] == ["VM_BAD_POWER_STATE", "OpaqueRef:vm", "halted"]
    assert up["deadline"] == deadline and up["extra"] == {"retries": 1}
    assert database.get_tracked_task("OpaqueRef:t1") == up
    assert database.get_tracked_task("OpaqueRef:nope") is None
    with pytest.raises(errors.TrackedTaskNotFound):
        database.update_tracked_task("OpaqueRef:nope", {"progress": 1.0})

    refs = lambda tasks: [t["ref"] for t in tasks]  # noqa: E731
    assert refs(database.list_tracked_tasks()) == ["OpaqueRef:t2", "OpaqueRef:t3"]
    assert refs(database.list_tracked_tasks(agent_host="xen-01")) == ["OpaqueRef:t3"]
    assert refs(database.list_tracked_tasks(status=None, instance_uuid=uuid)) == [
        "OpaqueRef:t1", "OpaqueRef:t2"]
    assert refs(database.list_tracked_tasks(status="failure")) == ["OpaqueRef:t1"]


# -- compute nodes and services -----------------------------------------------------


def test_compute_nodes(database):
    resources = {
        "vcpus": 8, "vcpus_used": 2, "memory_mb": "16384", "memory_mb_used": 4096,
        "free_memory_mb": 12288, "local_gb": 500, "local_gb_used": 20,
        "hypervisor_type": "xen", "hypervisor_version": 8002001,
        "hypervisor_hostname": "dom0-a", "running_vms": 2, "cpu_model": "Xeon",
    }
    node = database.upsert_compute_node("xen-01", resources)
    assert node["host"] == "xen-01" and node["memory_mb"] == 16384
    assert node["hypervisor_version"] == "8002001" and node["cpu_model"] == "Xeon"
    again = database.upsert_compute_node("xen-01", {"free_memory_mb": 1024, "running_vms": 3})
    assert again["id"] == node["id"] and again["created_at"] == node["created_at"]
    assert again["free_memory_mb"] == 1024 and again["memory_mb"] == 16384
    assert again["cpu_model"] == "Xeon"
    database.upsert_compute_node("xen-00", {"vcpus": 4})
    assert [n["host"] for n in database.list_compute_nodes()] == ["xen-00", "xen-01"]


def test_concurrent_first_heartbeats_make_one_service(database):
    """Racing first reports of a host make one service and one compute node
    row (on MariaDB the losers of the unique-key race deadlock, and the API
    retries them)."""
    rounds, n_threads = 6, 4
    failures: list[BaseException] = []

    def beat(host, barrier):
        try:
            barrier.wait(timeout=20)
            database.service_heartbeat(host, "compute-agent", "compute")
            database.upsert_compute_node(host, {"vcpus": 4})
        except BaseException as exc:
            failures.append(exc)

    for r in range(rounds):
        barrier = threading.Barrier(n_threads)
        threads = [threading.Thread(target=beat, args=(f"xen-race-{r}", barrier))
                   for _ in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    assert not failures, failures
    services = database.list_services()
    assert len(services) == rounds
    assert {s["report_count"] for s in services} == {n_threads}
    assert len(database.list_compute_nodes()) == rounds


def test_heartbeat_and_alive(database):
    first = database.service_heartbeat("xen-01", "compute-agent", "compute")
    assert first["report_count"] == 1 and first["disabled"] is False
    second = database.service_heartbeat("xen-01", "compute-agent", "compute")
    assert second["report_count"] == 2 and second["id"] == first["id"]
    assert parse_time(second["updated_at"]) >= parse_time(first["updated_at"])
    database.service_heartbeat("xen-02", "compute-agent", "compute")

    # xen-02 last reported five minutes ago.
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    services = models.Service.__table__
    with database.engine.begin() as conn:
        conn.execute(sa.update(services).where(services.c.host == "xen-02")
                     .values(updated_at=stale))
    listed = {s["host"]: s for s in database.list_services(down_time=60)}
    assert listed["xen-01"]["alive"] is True
    assert listed["xen-02"]["alive"] is False
    assert {s["host"]: s["alive"] for s in database.list_services(down_time=600)} == {
        "xen-01": True, "xen-02": True}
    assert set(listed["xen-01"]) == {"id", "host", "binary", "topic", "report_count",
                                     "disabled", "created_at", "updated_at", "alive"}
