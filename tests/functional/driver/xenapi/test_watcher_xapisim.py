"""The TaskWatcher against a real simulator over HTTP: one event stream for
many operations, and each failure mode of the stream, injected through the
simulator's control API."""

from __future__ import annotations

import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

import pytest
from xenapi_fixtures import (
    PASSWORD,
    USER,
    login,
    logout,
    make_instance,
    no_tasks_left,
    op_for,
    wait_until,
)

from compute_agent import exceptions
from compute_agent.driver import power_state
from compute_agent.driver.base import Operation
from compute_agent.driver.xenapi import ownership, vm_ops
from compute_agent.driver.xenapi.session import ConnectionSettings, SessionPool
from compute_agent.driver.xenapi.watcher import TaskWatcher
from xapisim.server import Simulator


def halted_vms(xapi, host: str, n: int) -> list[str]:
    """n small halted VMs marked as ``host``'s, made through the SDK."""
    refs = []
    for _ in range(n):
        inst = make_instance(memory_mb=128, vcpus=1)
        refs.append(xapi.xenapi.VM.create(vm_ops.scratch_vm_record(inst, host)))
    return refs


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


@pytest.fixture
def pool(sim):
    p = SessionPool(ConnectionSettings(sim.url, USER, PASSWORD, login_timeout=5), 3)
    yield p
    p.close()


@pytest.fixture
def watcher(pool):
    w = TaskWatcher(pool, poll_timeout=5.0).start()
    assert w.wait_synced(5)
    yield w
    w.close()


# -- one stream for many operations -------------------------------------------------------


def test_concurrent_operations_share_one_stream(ctl, driver, xapi):
    vms = halted_vms(xapi, driver.host, 20)
    ctl.set_duration("VM.start", 0.5)
    watcher = driver.watcher
    calls_before = dict(watcher.stats.__dict__)
    t0 = time.monotonic()
    threads = [
        in_thread(lambda vm=vm: driver.runner.run(
            Operation(vm, "power_on", "req"), "VM.start", vm, False, False))
        for vm in vms
    ]
    for t, _ in threads:
        t.join(15)
    wall = time.monotonic() - t0
    assert [out.get("error") for _, out in threads] == [None] * 20
    assert all(xapi.xenapi.VM.get_power_state(vm) == "Running" for vm in vms)
    assert wall < 5.0
    assert watcher.stats.connections == calls_before["connections"] == 1
    assert watcher.stats.direct_reads == calls_before["direct_reads"]
    # A handful of long-polls served all twenty.
    assert watcher.stats.event_from_calls - calls_before["event_from_calls"] < 100
    no_tasks_left(xapi)


def test_task_finished_before_registration(watcher, xapi):
    pool_ref = xapi.xenapi.pool.get_all()[0]
    task = xapi.xenapi.Async.pool.get_name_label(pool_ref)
    wait_until(lambda: (watcher.task_record(task) or {}).get("status") == "success")
    wt = watcher.track(task)
    assert wt.future.done()
    outcome = wt.wait(0, lambda p: None)
    assert outcome.status == "success" and outcome.result == "xapi-sim pool"
    assert watcher.stats.direct_reads == 0
    wt.forget()


def test_task_destroyed_while_pending_still_reports_its_outcome(watcher, xapi):
    # xapi only marks a pending task on task.destroy: it runs on and its
    # waiter gets the real outcome, not a loss
    task = xapi.xenapi.task.create("held", "nobody runs it")
    wt = watcher.track(task)
    t, out = in_thread(lambda: wt.wait(10, lambda p: None))
    time.sleep(0.2)
    xapi.xenapi.task.destroy(task)
    time.sleep(0.2)
    assert t.is_alive()  # still pending: nothing to report yet
    xapi.xenapi.task.cancel(task)
    t.join(5)
    assert out["result"].status == "cancelled"


def test_task_vanished_while_pending_is_lost(sim, watcher, xapi):
    # what makes a pending task vanish in xapi: a restart of xapi
    from xapisim.control_client import SimControl

    task = xapi.xenapi.task.create("held", "nobody runs it")
    wt = watcher.track(task)
    t, out = in_thread(lambda: wt.wait(10, lambda p: None))
    time.sleep(0.2)
    SimControl(sim.url).restart_xapi()
    t.join(8)
    assert out["result"].status == "lost"
    assert out["result"].error().code == "TASK_LOST"


def test_task_vanished_unseen_is_lost(watcher, xapi):
    # Created and destroyed before anyone followed it: the stream may never
    # show it; the waiter finds out by reading it directly.
    tasks = []
    for _ in range(2):
        task = xapi.xenapi.task.create("fleeting", "")
        xapi.xenapi.task.cancel(task)  # finished, so destroy removes it at once
        xapi.xenapi.task.destroy(task)
        tasks.append(task)
    for task in tasks:
        wt = watcher.track(task)
        t0 = time.monotonic()
        outcome = wt.wait(10, lambda p: None)
        assert outcome.status == "lost"
        assert time.monotonic() - t0 < 3
        wt.forget()


def test_progress_is_reported(ctl, driver, xapi, listener):
    ctl.set_duration("VM.start", 1.0)
    vm = halted_vms(xapi, driver.host, 1)[0]
    driver.runner.run(Operation(vm, "power_on", "req"), "VM.start", vm, False, False)
    progress = [p[2] for p in listener.of("progress")]
    assert len(progress) >= 3 and progress == sorted(progress)
    assert 0 < progress[len(progress) // 2] < 1


# -- failures of the stream ------------------------------------------------------------------


def test_xapi_restart_loses_running_task_and_resyncs(ctl, driver, xapi, sim):
    reconnects = []
    driver.set_reconnect_listener(lambda: reconnects.append(time.monotonic()))
    inst = make_instance()
    driver.spawn(op_for(inst, "spawn"), inst)
    driver.power_off(op_for(inst, "power_off"), inst, clean=False)
    ctl.set_duration("VM.start", 30.0)
    resyncs = driver.watcher.stats.resyncs
    t, out = in_thread(lambda: driver.power_on(op_for(inst, "power_on"), inst))
    wait_until(lambda: xapi.xenapi.task.get_all())
    t0 = time.monotonic()
    ctl.restart_xapi()
    t.join(10)
    assert not t.is_alive()
    assert isinstance(out.get("error"), exceptions.HypervisorError)
    assert out["error"].code == "TASK_LOST"
    assert time.monotonic() - t0 < 5
    wait_until(lambda: driver.watcher.healthy and driver.watcher.stats.resyncs > resyncs)
    wait_until(lambda: reconnects, timeout=5)
    ctl.set_duration("VM.start", 0.05)
    driver.power_on(op_for(inst, "power_on"), inst)
    assert driver.get_info(inst).power_state == power_state.RUNNING


def test_events_lost_resyncs_and_waiters_still_resolve(ctl, driver, xapi):
    vm = halted_vms(xapi, driver.host, 1)[0]
    ctl.set_duration("VM.start", 0.8)
    resyncs = driver.watcher.stats.resyncs
    ctl.fail("event.from", ["EVENTS_LOST"])
    driver.runner.run(Operation(vm, "power_on", "req"), "VM.start", vm, False, False)
    assert xapi.xenapi.VM.get_power_state(vm) == "Running"
    assert driver.watcher.stats.resyncs == resyncs + 1


def test_session_invalid_in_stream_logs_in_again(ctl, driver, xapi):
    reconnects = []
    driver.set_reconnect_listener(lambda: reconnects.append(1))
    vm = halted_vms(xapi, driver.host, 1)[0]
    ctl.set_duration("VM.start", 0.8)
    logins = driver.pool.stats.logins
    ctl.fail("event.from", ["SESSION_INVALID", "OpaqueRef:whatever"])
    driver.runner.run(Operation(vm, "power_on", "req"), "VM.start", vm, False, False)
    assert xapi.xenapi.VM.get_power_state(vm) == "Running"
    assert driver.pool.stats.logins > logins
    wait_until(lambda: reconnects)


def test_connection_drops_back_off_and_reconnect(ctl, driver, xapi):
    vm = halted_vms(xapi, driver.host, 1)[0]
    ctl.set_duration("VM.start", 0.5)
    stats = driver.watcher.stats
    failures, connections = stats.failures, stats.connections
    ctl.drop("event.from", count=4)
    driver.runner.run(Operation(vm, "power_on", "req"), "VM.start", vm, False, False)
    assert xapi.xenapi.VM.get_power_state(vm) == "Running"
    assert stats.failures > failures
    assert stats.connections > connections


def test_stalled_stream_recovers(ctl, driver, xapi):
    vm = halted_vms(xapi, driver.host, 1)[0]
    ctl.set_duration("VM.start", 0.3)
    failures = driver.watcher.stats.failures
    # Two: xmlrpc.client silently retries a dropped keep-alive call once.
    ctl.hang("event.from", seconds=1.5, count=2)
    # Let the watcher's current poll return so that the next one hangs.
    xapi.xenapi.VM.add_to_other_config(vm, "poke", "1")
    t0 = time.monotonic()
    driver.runner.run(Operation(vm, "power_on", "req"), "VM.start", vm, False, False)
    # Seen by reading the task directly, as the stream did not show it.
    assert time.monotonic() - t0 < 3
    assert xapi.xenapi.VM.get_power_state(vm) == "Running"
    # The stream itself times out of the hang and reconnects.
    wait_until(lambda: driver.watcher.stats.failures > failures, timeout=8)
    wait_until(lambda: driver.watcher.healthy, timeout=8)


def test_coordinator_change_is_followed(make_driver):
    sim = Simulator(hosts=2, task_duration=0.05).start()
    try:
        driver = make_driver(sim.urls[0])
        reconnects = []
        driver.set_reconnect_listener(lambda: reconnects.append(1))
        inst = make_instance()
        driver.spawn(op_for(inst, "spawn"), inst)
        admin = login(sim.urls[0])
        new_master = next(r for r, h in admin.xenapi.host.get_all_records().items()
                          if h["address"] == "127.0.0.2")
        admin.xenapi.pool.designate_new_master(new_master)
        # Everything goes on against the new coordinator.
        driver.power_off(op_for(inst, "power_off"), inst, clean=False)
        assert driver.pool.url == sim.urls[1]
        assert driver.get_info(inst).power_state == power_state.SHUTDOWN
        wait_until(lambda: driver.watcher.healthy and reconnects, timeout=10)
        driver.power_on(op_for(inst, "power_on"), inst)
        driver.destroy(op_for(inst, "destroy"), inst)
        logout(admin)
    finally:
        sim.stop()


# -- polling fallback ---------------------------------------------------------------------


def test_polling_mode_by_config(sim, make_driver, listener, xapi):
    driver = make_driver(sim.url, listener=listener, tasks={"watcher_mode": "polling",
                                                            "poll_interval": 0.1})
    assert driver.watcher is None
    inst = make_instance()
    driver.spawn(op_for(inst, "spawn"), inst)
    driver.reboot(op_for(inst, "reboot"), inst, "HARD")
    driver.destroy(op_for(inst, "destroy"), inst)
    assert all(f[2] == "success" for f in listener.of("finished"))
    no_tasks_left(xapi)


# -- VM power state events -----------------------------------------------------------------


def test_power_state_changes_reach_the_listener(ctl, driver, xapi):
    events: list[tuple[str, Any, float]] = []
    driver.set_power_state_listener(lambda u, info: events.append((u, info, time.monotonic())))
    inst = make_instance()
    driver.spawn(op_for(inst, "spawn"), inst)
    ref, vm = next((r, v) for r, v in xapi.xenapi.VM.get_all_records().items()
                   if ownership.instance_of(v) == inst["uuid"])

    def after(action: Callable[[], Any], expect: int, reason: str):
        n = len(events)
        t0 = time.monotonic()
        action()
        ev = wait_until(lambda: [e for e in events[n:] if e[1].power_state == expect
                                 and e[1].shutdown_reason == reason], timeout=2)
        assert ev[0][0] == inst["uuid"] and ev[0][2] - t0 < 1.0
        return ev[0][1]

    crashed = after(lambda: ctl.crash_vm(vm["uuid"]), power_state.CRASHED, "crashed")
    assert crashed.vm_ref == ref
    driver.power_on(op_for(inst, "power_on"), inst)
    rebooted = after(lambda: ctl.guest_reboot(vm["uuid"]), power_state.RUNNING, "rebooted")
    assert rebooted.extra["last_shutdown_time"]
    second = after(lambda: ctl.guest_reboot(vm["uuid"]), power_state.RUNNING, "rebooted")
    assert (second.extra["domid"], second.extra["last_shutdown_time"]) != (
        rebooted.extra["domid"], rebooted.extra["last_shutdown_time"])
    after(lambda: ctl.guest_shutdown(vm["uuid"]), power_state.SHUTDOWN, "halted")
    # Other agents' VMs are not reported.
    n = len(events)
    foreign = halted_vms(xapi, "another-agent", 1)[0]
    xapi.xenapi.VM.start(foreign, False, False)
    time.sleep(0.3)
    assert [e for e in events[n:] if e[1].vm_ref == foreign] == []
    driver.destroy(op_for(inst, "destroy"), inst)


# -- re-attaching to tasks of an earlier run -------------------------------------------------


def test_reattach_task(ctl, driver, xapi, listener):
    vm = halted_vms(xapi, driver.host, 1)[0]
    ctl.set_duration("VM.start", 0.5)
    task = xapi.xenapi.Async.VM.start(vm, False, False)  # "an earlier run" started it
    op = Operation(str(uuidlib.uuid4()), "power_on", "req-old")
    state = driver.reattach_task(op, task, timeout=10)
    assert state.status == "success" and not state.timed_out and state.progress == 1.0
    assert listener.of("finished")[-1][1:3] == (task, "success")
    assert not listener.of("started")
    wait_until(lambda: task not in xapi.xenapi.task.get_all())

    lost = driver.reattach_task(op, "OpaqueRef:00000000-0000-0000-0000-000000000000", 10)
    assert (lost.status, lost.error[0]) == ("lost", "TASK_LOST")

    xapi.xenapi.VM.hard_shutdown(vm)
    ctl.set_duration("VM.start", 30.0)
    task = xapi.xenapi.Async.VM.start(vm, False, False)
    t0 = time.monotonic()
    late = driver.reattach_task(op, task, timeout=0.3)
    assert late.timed_out and late.status == "cancelled"
    assert time.monotonic() - t0 < 5
    assert xapi.xenapi.VM.get_power_state(vm) == "Halted"


def test_reattached_task_can_be_cancelled(ctl, driver, xapi):
    vm = halted_vms(xapi, driver.host, 1)[0]
    ctl.set_duration("VM.start", 30.0)
    task = xapi.xenapi.Async.VM.start(vm, False, False)
    op = Operation(str(uuidlib.uuid4()), "power_on", "req-old")
    t, out = in_thread(lambda: driver.reattach_task(op, task, timeout=60))
    wait_until(lambda: driver.cancel(op.instance_uuid))
    t.join(10)
    assert out["result"].status == "cancelled" and not out["result"].timed_out


def test_close_logs_out_and_fails_waiters(sim, pool, xapi):
    watcher = TaskWatcher(pool, poll_timeout=30.0).start()
    assert watcher.wait_synced(5)
    task = xapi.xenapi.task.create("held", "")
    wt = watcher.track(task)
    t, out = in_thread(lambda: wt.wait(30, lambda p: None))
    t0 = time.monotonic()
    watcher.close()
    t.join(5)
    assert time.monotonic() - t0 < 3  # the long-poll was interrupted, not awaited
    assert isinstance(out.get("error"), exceptions.HypervisorUnavailable)
    xapi.xenapi.task.destroy(task)
