"""The simulator's control API (/_sim/) through xapisim.control_client over
real HTTP, observed with the official SDK: injected failures, dropped and
hung calls, latency, task durations and time scale, guest events, xapi
restarts, host failures, the state summary and bad requests."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
import xmlrpc.client

import pytest
import XenAPI
from simvm import GiB, failure, make_vm, wait_task

from xapisim.control_client import ControlError, SimControl


@pytest.fixture
def ctl(sim) -> SimControl:
    return SimControl(sim.url)


@pytest.fixture
def x(xapi):
    return xapi.xenapi


def started_vm(x, name: str = "vm", **extra) -> str:
    vm = make_vm(x, name, memory=GiB // 2, **extra)
    x.VM.start(vm, False, False)
    return vm


def test_state_summary(sim, ctl, x):
    started_vm(x)
    make_vm(x, "off")
    state = ctl.state()
    assert state["ok"] and state["url"] == sim.url and state["master"] == sim.master_ref
    (host,) = state["hosts"]
    assert host["master"] and not host["failed"] and host["live"]
    assert host["dom0_root"].startswith(str(sim.state_dir))
    assert host["xapi_socket"] == str(sim.local_socket_path(sim.master_ref))
    assert state["vms"] == {"Running": 1, "Halted": 1}
    assert state["sessions"] == 1
    assert state["faults"]["default_duration"] == 0.05
    assert SimControl(sim.url)._request("GET", "")["post"]


def test_fail_the_next_calls_of_a_message(ctl, x):
    vm = make_vm(x, "v")
    ctl.fail("VM.start", ["HOST_NOT_ENOUGH_FREE_MEMORY", "1024", "512"], count=2)
    assert ctl.state()["faults"]["rules"]["VM.start"][0]["count"] == 2
    for _ in range(2):
        assert failure(x.VM.start, vm, False, False) == [
            "HOST_NOT_ENOUGH_FREE_MEMORY", "1024", "512"]
    x.VM.start(vm, False, False)
    assert x.VM.get_power_state(vm) == "Running"
    # the same error reaches an Async caller through its task
    x.VM.hard_shutdown(vm)
    ctl.fail("Async.VM.start", ["SR_BACKEND_FAILURE_46", "", "busy", ""])
    assert failure(x.Async.VM.start, vm, False, False)[0] == "SR_BACKEND_FAILURE_46"


def test_wildcard_failure_hits_any_call(ctl, x):
    ctl.fail("*", ["INTERNAL_ERROR", "chaos"])
    assert failure(x.pool.get_all) == ["INTERNAL_ERROR", "chaos"]
    assert x.pool.get_all()


def test_dropped_and_hung_calls(sim, ctl, x, xapi):
    # xmlrpc.client quietly resends a request once when the connection drops
    ctl.drop("host.get_all")
    assert x.host.get_all()
    ctl.drop("host.get_all", count=2)
    with pytest.raises(OSError):
        x.host.get_all()
    assert x.host.get_all()
    ctl.hang("host.get_all", seconds=0.5, count=2)
    proxy = xmlrpc.client.ServerProxy(sim.url)
    start = time.monotonic()
    with pytest.raises(OSError):
        proxy.host.get_all(xapi._session)
    assert time.monotonic() - start >= 1.0  # hung twice: the first try and the resend
    assert x.host.get_all()


def test_latency_duration_and_time_scale(ctl, x):
    ctl.set_latency("pool.get_all", 0.3)
    start = time.monotonic()
    x.pool.get_all()
    assert time.monotonic() - start >= 0.3
    vm = make_vm(x, "slow")
    ctl.set_duration("VM.start", 0.6)
    start = time.monotonic()
    task = x.Async.VM.start(vm, False, False)
    assert x.task.get_status(task) == "pending"
    assert wait_task(x, task) == "success"
    assert time.monotonic() - start >= 0.6
    x.VM.hard_shutdown(vm)
    ctl.set_duration("VM.start", 20)
    ctl.set_time_scale(0.05)  # 20 s become 1 s
    start = time.monotonic()
    assert wait_task(x, x.Async.VM.start(vm, False, False)) == "success"
    assert 1.0 <= time.monotonic() - start < 10
    ctl.clear()
    faults = ctl.state()["faults"]
    assert (faults["latencies"], faults["durations"], faults["time_scale"]) == ({}, {}, 1.0)


def test_guest_events(ctl, x):
    vm = started_vm(x, "guest", actions_after_crash="destroy")
    reply = ctl.crash_vm(x.VM.get_uuid(vm))
    assert reply == {"ok": True, "vm": vm, "power_state": "Halted"}
    assert x.VM.get_power_state(vm) == "Halted"
    assert x.VM.get_other_config(vm)["last_shutdown_reason"] == "crashed"
    x.VM.start(vm, False, False)
    assert ctl.guest_reboot("guest")["power_state"] == "Running"
    assert x.VM.get_other_config(vm)["last_shutdown_reason"] == "rebooted"
    assert ctl.guest_shutdown(vm)["power_state"] == "Halted"
    assert x.VM.get_other_config(vm)["last_shutdown_initiator"] == "internal"
    with pytest.raises(ControlError) as err:
        ctl.crash_vm(vm)
    assert err.value.status == 409
    assert err.value.error == ["VM_BAD_POWER_STATE", vm, "running", "halted"]


def test_restart_xapi_ends_sessions_and_long_polls(sim, ctl, x, xapi):
    vm = make_vm(x, "kept")
    proxy = xmlrpc.client.ServerProxy(sim.url)
    token = proxy.event.__getattr__("from")(xapi._session, ["vm"], "", 0.0)["Value"]["token"]
    outcome = []

    def poll() -> None:
        start = time.monotonic()
        try:
            xmlrpc.client.ServerProxy(sim.url).event.__getattr__("from")(
                xapi._session, ["task"], token, 30.0)
            outcome.append(("answered", time.monotonic() - start))
        except OSError:
            outcome.append(("dropped", time.monotonic() - start))

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.3)
    assert ctl.restart_xapi() == {"ok": True}
    t.join(10)
    assert outcome and outcome[0][1] < 10
    assert proxy.pool.get_all(xapi._session)["ErrorDescription"] == [
        "SESSION_INVALID", xapi._session]
    fresh = XenAPI.Session(sim.url)
    fresh.xenapi.login_with_password("root", "password", "2.0", "t")
    assert fresh.xenapi.VM.get_name_label(vm) == "kept"  # objects survive
    fresh.xenapi.session.logout()


def test_host_failure_takes_its_vms_down(sim, ctl, x):
    vm = started_vm(x, "victim")
    reply = ctl.fail_host("host1")
    assert reply["vms_down"] == [vm]
    # the only host is down: the XenAPI port drops, the control API still answers
    with pytest.raises(OSError):
        xmlrpc.client.ServerProxy(sim.url).pool.get_all("x")
    assert ctl.state()["hosts"][0]["failed"]
    ctl.recover_host(sim.master_ref)
    fresh = XenAPI.Session(sim.url)
    fresh.xenapi.login_with_password("root", "password", "2.0", "t")
    assert fresh.xenapi.VM.get_power_state(vm) == "Halted"
    fresh.xenapi.session.logout()


def test_http_paths_take_faults_too(sim, ctl, xapi, x):
    ctl.fail("GET /rrd_updates", ["INTERNAL_ERROR", "rrdd down"])
    u = urllib.parse.urlsplit(sim.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("GET", f"/rrd_updates?start=0&session_id={xapi._session}")
    resp = conn.getresponse()
    assert resp.status == 500 and json.loads(resp.read()) == ["INTERNAL_ERROR", "rrdd down"]
    conn.close()


def test_bad_requests(sim, ctl):
    cases = [
        (lambda: ctl.post("nonsense"), 404),
        (lambda: ctl.post("fail", method="VM.start"), 400),
        (lambda: ctl.post("fail", method="VM.start", error=["X"], count=0), 400),
        (lambda: ctl.post("latency", method="VM.start", seconds=-1), 400),
        (lambda: ctl.crash_vm("no-such-vm"), 404),
        (lambda: ctl.post("host/fail"), 400),
        (lambda: ctl._request("GET", "nothing"), 404),
    ]
    for call, status in cases:
        with pytest.raises(ControlError) as err:
            call()
        assert err.value.status == status
    u = urllib.parse.urlsplit(sim.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("POST", "/_sim/fail", body=b"{not json")
    resp = conn.getresponse()
    assert resp.status == 400 and "JSON" in json.loads(resp.read())["error"]
    conn.close()
