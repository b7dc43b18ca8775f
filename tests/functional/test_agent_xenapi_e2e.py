"""End to end: a real agent process with the XenAPI driver against the
simulator over HTTP, real RabbitMQ, and each of SQLite, PostgreSQL and
MariaDB, under both concurrency backends; driven through ComputeAPI.

At the end of each run the simulator's VMs and agent-made VDIs match the
database, VM for VM: nothing leaked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid as uuidlib
from pathlib import Path

import oslo_messaging
import pytest
import XenAPI
from oslo_config import cfg

from compute_agent import exceptions
from compute_agent.conf import default as default_opts
from compute_agent.db.api import Database
from compute_agent.driver.xenapi import ownership
from compute_agent.rpc import transport as rpc_transport
from compute_agent.rpc.rpcapi import ComputeAPI
from tests.functional.db_fixtures import make_migrated_database_url
from xapisim.server import Simulator

RABBIT = os.environ.get("CA_TEST_RABBIT_URL", "rabbit://guest:guest@127.0.0.1:5672/")
BIN = Path(sys.executable).parent
SETTLE_S = 30
XAPI_POWER = {"Running": 1, "Halted": 4, "Paused": 3, "Suspended": 7}

pytestmark = pytest.mark.timeout(180)

COMBINATIONS = [("sqlite", "threading"), ("sqlite", "eventlet"),
                ("postgresql", "eventlet"), ("mysql", "threading")]


@pytest.fixture(scope="module")
def sim():
    simulator = Simulator(hosts=1, task_duration=0.2)
    simulator.start()
    yield simulator
    simulator.stop()


def sim_control(sim, path, body):
    req = urllib.request.Request(f"{sim.url}/_sim/{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def dom0_view(sim, host):
    """instance uuid -> power state of this agent's VMs, and instance uuids
    of its VDIs, read over XenAPI like any client."""
    session = XenAPI.Session(sim.url)
    session.xenapi.login_with_password("root", "password", "1.0", "e2e-test")
    try:
        vms = {}
        for rec in session.xenapi.VM.get_all_records().values():
            if not rec["is_a_template"] and ownership.owned_by(rec, host):
                vms[ownership.instance_of(rec)] = XAPI_POWER.get(rec["power_state"], 0)
        vdis = sorted(ownership.instance_of(rec)
                      for rec in session.xenapi.VDI.get_all_records().values()
                      if ownership.owned_by(rec, host))
    finally:
        session.xenapi.session.logout()
    return vms, vdis


def vm_ref_of(sim, instance_uuid):
    session = XenAPI.Session(sim.url)
    session.xenapi.login_with_password("root", "password", "1.0", "e2e-test")
    try:
        for ref, rec in session.xenapi.VM.get_all_records().items():
            if ownership.instance_of(rec) == instance_uuid and not rec["is_a_template"]:
                return ref
    finally:
        session.xenapi.session.logout()
    raise AssertionError(f"no VM for {instance_uuid}")


@pytest.fixture(params=COMBINATIONS, ids=[f"{d}-{b}" for d, b in COMBINATIONS])
def agent(request, sim, tmp_path):
    db_backend, backend = request.param
    url, drop_db = make_migrated_database_url(db_backend)
    tag = uuidlib.uuid4().hex[:10]
    host = f"ca-e2e-{tag}"
    exchange, topic = f"ca_e2e_{tag}", f"ca_e2e_compute_{tag}"
    config = tmp_path / "agent.conf"
    config.write_text(f"""[DEFAULT]
host = {host}
compute_driver = xenapi
concurrency_backend = {backend}
transport_url = {RABBIT}
control_exchange = {exchange}
compute_topic = {topic}
report_interval = 1
graceful_shutdown_timeout = 20
log_file = {tmp_path}/agent.log
[database]
connection = {url}
[xenserver]
connection_url = {sim.url}
connection_username = root
connection_password = password
""")
    proc = subprocess.Popen([str(BIN / "compute-agent"), "--config-file", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    conf = cfg.ConfigOpts()
    default_opts.register_opts(conf)
    rpc_transport.register_opts(conf)
    conf([], project="compute-agent-test", default_config_files=[])
    conf.set_override("transport_url", RABBIT)
    conf.set_override("control_exchange", exchange)
    conf.set_override("compute_topic", topic)
    transport = oslo_messaging.get_rpc_transport(
        conf, allowed_remote_exmods=["compute_agent.rpc.errors"])
    api = ComputeAPI(conf, rpc_transport=transport, timeout=15)
    db = Database(url)
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                assert api.ping(host, timeout=2)["driver"] == "XenAPIDriver"
                break
            except exceptions.ComputeAgentError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"agent did not come up: {proc.stderr.read().decode()[-3000:]}"
                                if proc.poll() is not None else "agent did not come up")
        yield host, api, db, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        transport.cleanup()
        db.dispose()
        drop_db()


def spec(name, memory_mb=256):
    return {"uuid": str(uuidlib.uuid4()), "name": name,
            "flavor": {"vcpus": 1, "memory_mb": memory_mb, "root_gb": 1},
            "image": {"id": None, "url": None, "disk_format": None},
            "networks": [], "metadata": {}}


def settle(api, host, uuid, want=None):
    deadline = time.monotonic() + SETTLE_S
    seen = []
    while True:
        try:
            inst = api.get_instance(host, uuid)
        except exceptions.InstanceNotFound:
            inst = None
        if inst is not None:
            state = (inst["vm_state"], inst["task_state"])
            if not seen or seen[-1] != state:
                seen.append(state)
            if inst["task_state"] is None and inst["vm_state"] != "building" and (
                    want is None or inst["vm_state"] == want):
                return inst, seen
        assert time.monotonic() < deadline, f"{uuid} did not settle: {seen}"
        time.sleep(0.05)


def test_lifecycle_against_simulator(agent, sim):
    host, api, db, proc = agent
    first, second = spec("e2e-1"), spec("e2e-2", memory_mb=512)
    accepted = api.build_instance(host, first, confirm=True)
    assert (accepted["vm_state"], accepted["task_state"]) == ("building", "spawning")
    api.build_instance(host, second)
    inst, seen = settle(api, host, first["uuid"], want="active")
    assert ("building", "spawning") in seen
    assert inst["power_state"] == 1 and inst["launched_at"]
    settle(api, host, second["uuid"], want="active")
    vms, vdis = dom0_view(sim, host)
    assert vms == {first["uuid"]: 1, second["uuid"]: 1}
    assert vdis == sorted([first["uuid"], second["uuid"]])

    u = first["uuid"]
    api.stop_instance(host, u)
    assert settle(api, host, u, want="stopped")[0]["power_state"] == 4
    assert dom0_view(sim, host)[0][u] == 4
    api.start_instance(host, u)
    assert settle(api, host, u, want="active")[0]["power_state"] == 1
    for reboot_type in ("SOFT", "HARD"):
        api.reboot_instance(host, u, reboot_type, confirm=True)
        inst, seen = settle(api, host, u, want="active")
        assert inst["power_state"] == 1

    # A conflicting request while dom0 works on the instance is refused.
    sim_control(sim, "duration", {"method": "VM.hard_reboot", "seconds": 2})
    try:
        api.reboot_instance(host, u, "HARD", confirm=True)
        with pytest.raises(exceptions.InstanceBusy) as info:
            api.terminate_instance(host, u, confirm=True)
        assert info.value.params == [u, "rebooting_hard"]
        settle(api, host, u, want="active")
    finally:
        sim_control(sim, "duration", {"method": "VM.hard_reboot", "seconds": 0.2})
    api.terminate_instance(host, u)
    settle(api, host, u, want="deleted")

    # The guest powers itself off: the instance follows without a request.
    sim_control(sim, "vm/shutdown", {"vm": vm_ref_of(sim, second["uuid"])})
    deadline = time.monotonic() + 10
    while api.get_instance(host, second["uuid"])["vm_state"] != "stopped":
        assert time.monotonic() < deadline, "guest shutdown not noticed"
        time.sleep(0.1)
    assert api.get_instance(host, second["uuid"])["power_state"] == 4

    tasks = db.list_tracked_tasks(agent_host=host, status=None)
    assert {t["operation"] for t in tasks} >= {"spawn", "power_off", "power_on", "reboot",
                                               "destroy"}
    assert all(t["status"] != "pending" for t in tasks)

    api.terminate_instance(host, second["uuid"])
    settle(api, host, second["uuid"], want="deleted")
    assert dom0_view(sim, host) == ({}, [])
    assert [i["uuid"] for i in api.list_instances(host)] == []


def test_dom0_errors_end_in_error_with_fault_and_nothing_leaks(agent, sim):
    host, api, db, proc = agent
    sim_control(sim, "fail", {"method": "Async.VM.start",
                              "error": ["HOST_NOT_ENOUGH_FREE_MEMORY", "268435456", "0"],
                              "count": 1})
    body = spec("e2e-fail")
    api.build_instance(host, body)
    inst, _ = settle(api, host, body["uuid"], want="error")
    assert inst["fault"]["code"] == "HOST_NOT_ENOUGH_FREE_MEMORY"
    assert inst["fault"]["params"] == ["268435456", "0"]
    assert body["uuid"] not in dom0_view(sim, host)[0]
    assert body["uuid"] not in dom0_view(sim, host)[1]
    assert api.ping(host)["host"] == host  # still serving

    ok = spec("e2e-ok")
    api.build_instance(host, ok)
    settle(api, host, ok["uuid"], want="active")
    sim_control(sim, "fail", {"method": "Async.VM.clean_shutdown",
                              "error": ["VM_BAD_POWER_STATE", "OpaqueRef:x", "running",
                                        "halted"], "count": 1})
    api.stop_instance(host, ok["uuid"], clean=True, confirm=True)
    inst, _ = settle(api, host, ok["uuid"])
    # Either the clean shutdown's failure fell back to a hard one, or the
    # instance settled from what dom0 shows; both are consistent with dom0.
    vms, _ = dom0_view(sim, host)
    assert inst["power_state"] == vms[ok["uuid"]]
    api.terminate_instance(host, body["uuid"])
    api.terminate_instance(host, ok["uuid"])
    settle(api, host, body["uuid"], want="deleted")
    settle(api, host, ok["uuid"], want="deleted")
    assert dom0_view(sim, host) == ({}, [])
