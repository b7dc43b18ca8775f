"""xapi tasks on xapisim over real HTTP: Async.* calls, success results,
failures, cancellation, progress, task.create/destroy and garbage
collection."""

from __future__ import annotations

import time
import xmlrpc.client

import pytest
import XenAPI

from xapisim.server import Simulator

FINAL = ("success", "failure", "cancelled")


def template(xapi) -> str:
    tpls = xapi.xenapi.VM.get_all_records_where('field "is_a_template" = "true"')
    return sorted(tpls, key=lambda r: tpls[r]["name_label"])[0]


def wait_task(xapi, task: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = xapi.xenapi.task.get_record(task)
        if rec["status"] in FINAL:
            return rec
        time.sleep(0.01)
    raise AssertionError(f"task {task} did not finish: {rec}")


def decode_result(result: str):
    (value,), _ = xmlrpc.client.loads(
        f"<methodResponse><params><param>{result}</param></params></methodResponse>")
    return value


def test_async_returns_a_pending_task_at_once(sim, xapi):
    sim.faults.set_duration("VM.clone", 1.0)
    task = xapi.xenapi.Async.VM.clone(template(xapi), "async clone")
    rec = xapi.xenapi.task.get_record(task)  # the call came back before the work ended
    assert task.startswith("OpaqueRef:")
    assert rec["status"] == "pending" and rec["allowed_operations"] == ["cancel"]
    assert rec["name_label"] == "Async.VM.clone"
    assert rec["resident_on"] == xapi.xenapi.host.get_all()[0]
    assert isinstance(rec["created"], xmlrpc.client.DateTime)
    assert wait_task(xapi, task)["status"] == "success"


def test_success_carries_the_xmlrpc_encoded_result(sim, xapi):
    task = xapi.xenapi.Async.VM.clone(template(xapi), "the clone")
    rec = wait_task(xapi, task)
    assert rec["status"] == "success" and float(rec["progress"]) == 1.0
    assert rec["error_info"] == []
    vm = decode_result(rec["result"])
    assert rec["result"] == f"<value>{vm}</value>"  # a ref travels as a plain <value>
    assert xapi.xenapi.VM.get_name_label(vm) == "the clone"
    assert rec["finished"].value >= rec["created"].value


@pytest.mark.parametrize("method, args, expected", [
    ("pool.get_all", (), lambda x: x.xenapi.pool.get_all()),
    ("VM.get_power_state", ("TEMPLATE",), lambda x: "Halted"),
    ("VM.get_memory_static_max", ("TEMPLATE",),
     lambda x: x.xenapi.VM.get_memory_static_max(template(x))),
    ("VM.get_other_config", ("TEMPLATE",), lambda x: x.xenapi.VM.get_other_config(template(x))),
])
def test_results_of_several_types_decode_to_the_sync_answer(sim, xapi, method, args, expected):
    args = tuple(template(xapi) if a == "TEMPLATE" else a for a in args)
    cls, name = method.split(".")
    task = getattr(getattr(xapi.xenapi.Async, cls), name)(*args)
    rec = wait_task(xapi, task)
    assert rec["status"] == "success", rec
    assert decode_result(rec["result"]) == expected(xapi)


def test_void_results_are_empty(sim, xapi):
    pool = xapi.xenapi.pool.get_all()[0]
    rec = wait_task(xapi, xapi.xenapi.Async.pool.set_name_description(pool, "async"))
    assert rec["status"] == "success" and rec["result"] == ""
    assert xapi.xenapi.pool.get_name_description(pool) == "async"


def test_failure_carries_error_info(sim, xapi):
    tpl = template(xapi)
    rec = wait_task(xapi, xapi.xenapi.Async.VM.get_record("OpaqueRef:NULL"))
    assert rec["status"] == "failure"
    assert rec["error_info"] == ["HANDLE_INVALID", "VM", "OpaqueRef:NULL"]
    assert rec["result"] == ""
    rec = wait_task(xapi, xapi.xenapi.Async.VM.start(tpl, False, False))
    assert rec["status"] == "failure"
    assert rec["error_info"][0] == "VM_IS_TEMPLATE" and rec["error_info"][1] == tpl


def test_cancel_ends_cancelled_with_task_cancelled(sim, xapi):
    sim.faults.set_duration("VM.clone", 5.0)
    before = set(xapi.xenapi.VM.get_all())
    task = xapi.xenapi.Async.VM.clone(template(xapi), "never")
    xapi.xenapi.task.cancel(task)
    rec = wait_task(xapi, task, timeout=10)
    assert rec["status"] == "cancelled"
    assert rec["error_info"] == ["TASK_CANCELLED", task]
    assert set(xapi.xenapi.VM.get_all()) == before  # stopped before doing anything
    with pytest.raises(XenAPI.Failure) as e:  # a finished task cannot be cancelled
        xapi.xenapi.task.cancel(task)
    assert e.value.details[0] == "OPERATION_NOT_ALLOWED"


def test_progress_rises_to_one(sim, xapi):
    sim.faults.set_duration("VM.clone", 1.0)
    task = xapi.xenapi.Async.VM.clone(template(xapi), "progress")
    seen = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rec = xapi.xenapi.task.get_record(task)
        seen.append(float(rec["progress"]))
        if rec["status"] in FINAL:
            break
        time.sleep(0.05)
    assert rec["status"] == "success"
    assert seen == sorted(seen), seen
    assert seen[-1] == 1.0
    assert len({p for p in seen if 0.0 < p < 1.0}) >= 3, seen


def test_sync_calls_take_the_same_time_without_a_task(sim, xapi):
    sim.faults.set_duration("VM.clone", 0.3)
    tasks = set(xapi.xenapi.task.get_all())
    start = time.monotonic()
    vm = xapi.xenapi.VM.clone(template(xapi), "sync")
    assert time.monotonic() - start >= 0.3
    assert xapi.xenapi.VM.get_name_label(vm) == "sync"
    assert set(xapi.xenapi.task.get_all()) == tasks


def test_task_create_cancel_and_destroy(sim, xapi):
    task = xapi.xenapi.task.create("client task", "made by a client")
    rec = xapi.xenapi.task.get_record(task)
    assert (rec["name_label"], rec["name_description"], rec["status"]) == (
        "client task", "made by a client", "pending")
    assert task in xapi.xenapi.task.get_all()
    assert xapi.xenapi.task.get_by_uuid(rec["uuid"]) == task
    xapi.xenapi.task.cancel(task)
    rec = wait_task(xapi, task)
    assert rec["status"] == "cancelled" and rec["error_info"] == ["TASK_CANCELLED", task]
    xapi.xenapi.task.destroy(task)
    assert task not in xapi.xenapi.task.get_all()
    with pytest.raises(XenAPI.Failure) as e:
        xapi.xenapi.task.get_record(task)
    assert e.value.details == ["HANDLE_INVALID", "task", task]


def test_destroy_on_a_pending_task_marks_it_until_it_completes(sim, xapi):
    """As xapi's Xapi_task.destroy: a pending task is only marked
    (current_operations task -> destroy), keeps running, reports its
    outcome, and the next garbage collection pass removes it."""
    from xapisim.control_client import SimControl

    task = xapi.xenapi.task.create("held", "destroyed while pending")
    xapi.xenapi.task.destroy(task)
    rec = xapi.xenapi.task.get_record(task)
    assert rec["status"] == "pending"
    assert rec["current_operations"] == {"task": "destroy"}
    xapi.xenapi.task.cancel(task)
    rec = wait_task(xapi, task)
    assert rec["status"] == "cancelled" and rec["error_info"] == ["TASK_CANCELLED", task]
    done = xapi.xenapi.Async.pool.get_all()  # finished, unmarked: stays
    wait_task(xapi, done)
    assert SimControl(sim.url).task_gc()["destroyed"] == 1
    assert task not in xapi.xenapi.task.get_all()
    assert xapi.xenapi.task.get_status(done) == "success"


def test_an_async_call_destroyed_while_running_still_reports_its_result(sim, xapi):
    sim.faults.set_duration("VM.clone", 0.5)
    task = xapi.xenapi.Async.VM.clone(template(xapi), "clone of a destroyed task")
    xapi.xenapi.task.destroy(task)
    assert xapi.xenapi.task.get_status(task) == "pending"
    rec = wait_task(xapi, task)
    assert rec["status"] == "success"
    vm = decode_result(rec["result"])
    assert xapi.xenapi.VM.get_name_label(vm) == "clone of a destroyed task"


def test_finished_tasks_are_garbage_collected():
    s = Simulator(task_gc_age=0.1).start()
    try:
        sdk = XenAPI.Session(s.url)
        sdk.xenapi.login_with_password("root", "password", "2.0", "t")
        done = sdk.xenapi.Async.pool.get_all()
        wait_task(sdk, done)
        pending = sdk.xenapi.task.create("still running", "")
        deadline = time.monotonic() + 30  # the simulator collects every few seconds
        while done in sdk.xenapi.task.get_all() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert done not in sdk.xenapi.task.get_all()
        assert sdk.xenapi.task.get_status(pending) == "pending"  # unfinished: kept
        sdk.xenapi.session.logout()
    finally:
        s.stop()


def test_tasks_do_not_survive_a_restart(sim, xapi):
    task = xapi.xenapi.task.create("before restart", "")
    sim.restart_xapi()
    with pytest.raises(XenAPI.Failure) as e:
        xapi.xenapi.task.get_record(task)  # the SDK logs in again first
    assert e.value.details == ["HANDLE_INVALID", "task", task]
