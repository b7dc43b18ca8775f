"""Pause, suspend, rescue and resize end to end (issue 8): a real
``xapi-sim`` process, three ``compute-agent`` processes (XenAPI driver) on
SQLite, PostgreSQL and MariaDB, real RabbitMQ, driven through ComputeAPI
1.2; dom0 checked against each database through a separate XenAPI session.

- every new operation from each state it accepts (rescue from active,
  stopped and error; resize from active and stopped), each followed by
  its way back, and refusals (INSTANCE_INVALID_STATE) from the states it
  does not accept; the three databases run the same walk side by side;
- a revert gives back the root disk's old contents (a pattern written
  through the simulator's HTTP import before the resize, read back through
  its export after the revert);
- get_instance_actions gives back the walk, list_instances pages;
- a second XenAPI client pausing, suspending and resuming the VM is
  reflected in the database (the watcher's event stream and power sync).
"""

from __future__ import annotations

import base64
import time
import urllib.request
import uuid as uuidlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from compute_agent import exceptions
from compute_agent.db.api import Database
from tests.functional.harness import PASSWORD, USER, AgentProcess, SimProcess, wait_until
from tests.functional.rpc_client import Rpc

from .conftest import RPC_PREFIX, Stack, _Cleanups, _new_database, _start_agents
from .hypervisor import XenAPIView
from .stack import assert_dom0_matches_db, instance_spec
from .walk import Walk, pause_and_suspend, settle

pytestmark = pytest.mark.timeout(180)

COMBOS = [("sqlite", "threading"), ("postgresql", "eventlet"), ("mysql", "threading")]
SMALL = {"vcpus": 1, "memory_mb": 256, "root_gb": 1}
BIG = {"vcpus": 2, "memory_mb": 512, "root_gb": 2}
BIGGER = {"vcpus": 3, "memory_mb": 768, "root_gb": 3}
MiB, GiB = 1024**2, 1024**3
EXTERNAL_BOUND_S = 10.0  # bound for an outside change to show; never a speed assertion
PATTERN = bytes(range(256)) * 256  # 64 KiB


def disk_io(sim: SimProcess, vdi: str, body: bytes | None = None) -> bytes:
    """PUT ``body`` at the head of the VDI (raw import), or GET its head."""
    path = "/import_raw_vdi" if body is not None else "/export_raw_vdi"
    req = urllib.request.Request(f"{sim.url}{path}?vdi={vdi}&format=raw", data=body,
                                 method="PUT" if body is not None else "GET")
    req.add_header("Authorization", "Basic " + base64.b64encode(
        f"{USER}:{PASSWORD}".encode()).decode())
    if body is not None:
        req.add_header("Content-Length", str(len(body)))
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - the test's simulator
        return resp.read() if body is not None else resp.read(len(PATTERN))


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Stack]]:
    """One simulator, one agent per database, each on a new database."""
    workdir = tmp_path_factory.mktemp("e2e-lifecycle")
    tag = uuidlib.uuid4().hex[:10]
    cleanups = _Cleanups()
    try:
        sim = SimProcess(workdir, task_duration=0.1)
        cleanups.add(sim.stop)
        sim.start()
        rpc = Rpc(RPC_PREFIX, tag)
        cleanups.add(rpc.close)
        stacks, agents = {}, []
        for database, backend in COMBOS:
            url = _new_database(database, cleanups)
            agent = AgentProcess(workdir, host=f"e2e-life-{database}-{tag}", backend=backend,
                                 db_url=url, sim_url=sim.url, exchange=rpc.exchange,
                                 topic=rpc.topic)
            rpc.hosts.append(agent.host)
            agents.append(agent)
            db = Database(url)
            cleanups.add(db.dispose)
            stacks[database] = Stack(f"{database}-{backend}", sim, agent, rpc.api, db,
                                     rpc.notes, XenAPIView(sim, agent.host))
        _start_agents(agents, rpc, cleanups)
        yield stacks
    finally:
        cleanups.run()


def dom0_vm(stack: Stack, uuid: str) -> dict:
    """The instance's own VM (not a rescue VM), with its root disk size."""
    with stack.sim.session() as x:
        found = [dict(rec, ref=ref) for ref, rec in x.VM.get_all_records().items()
                 if rec["other_config"].get("compute_agent_instance_uuid") == uuid
                 and rec["other_config"].get("compute_agent_rescue") != "true"]
        assert len(found) == 1, found
        vm = found[0]
        for vbd in vm["VBDs"]:
            if x.VBD.get_userdevice(vbd) == "0":
                vm["root"] = x.VDI.get_uuid(x.VBD.get_VDI(vbd))
                vm["root_size"] = int(x.VDI.get_virtual_size(x.VBD.get_VDI(vbd)))
    return vm


def check_flavor(w: Walk, inst: dict, flavor: dict) -> None:
    assert inst["flavor"] == flavor, (w.stack.name, inst["flavor"])
    vm = dom0_vm(w.stack, w.uuid)
    assert (int(vm["VCPUs_max"]), int(vm["memory_static_max"]), vm["root_size"]) == (
        flavor["vcpus"], flavor["memory_mb"] * MiB, flavor["root_gb"] * GiB)


def walk(stack: Stack) -> None:
    body = instance_spec(f"walk-{stack.name}", flavor=dict(SMALL))
    stack.api.build_instance(stack.host, body)
    w = Walk(stack, body["uuid"])
    settle(stack, w.uuid, "active")
    pause_and_suspend(w)

    # rescue from active, stopped and error; each unrescued to active.
    inst = w.do("rescue_instance", "rescued")
    assert inst["power_state"] == 1
    assert dom0_vm(stack, w.uuid)["power_state"] == "Halted"
    assert_dom0_matches_db(stack.sim, stack.db, stack.host)
    w.refused("rescued", "stop_instance", "pause_instance", "suspend_instance",
              "rescue_instance", "resize_instance", "start_instance")
    w.power(w.do("unrescue_instance", "active"), 1)

    # resize from active: revert (the old disk's contents come back), then
    # again and confirm.
    disk_io(stack.sim, dom0_vm(stack, w.uuid)["root"], PATTERN)
    inst = w.do("resize_instance", "resized", BIG)
    disk_io(stack.sim, dom0_vm(stack, w.uuid)["root"], b"\xff" * len(PATTERN))
    w.power(inst, 1)
    check_flavor(w, inst, BIG)
    assert_dom0_matches_db(stack.sim, stack.db, stack.host)
    w.refused("resized", "pause_instance", "resize_instance", "rescue_instance",
              "unrescue_instance", "resume_instance")
    inst = w.do("revert_resize", "active")
    check_flavor(w, inst, SMALL)
    assert disk_io(stack.sim, dom0_vm(stack, w.uuid)["root"]) == PATTERN
    w.power(inst, 1)
    check_flavor(w, w.do("resize_instance", "resized", BIG), BIG)
    check_flavor(w, w.do("confirm_resize", "active"), BIG)

    # from stopped: resize (stays halted) and rescue.
    w.do("stop_instance", "stopped")
    w.refused("stopped", "pause_instance", "suspend_instance", "unpause_instance",
              "resume_instance")
    inst = w.do("resize_instance", "resized", BIGGER)
    w.power(inst, 4)
    w.power(w.do("confirm_resize", "stopped"), 4)
    w.do("rescue_instance", "rescued")
    w.power(w.do("unrescue_instance", "active"), 1)

    # from error (a guest crash): rescue.
    stack.sim.control.crash_vm(dom0_vm(stack, w.uuid)["ref"])
    wait_until(lambda: stack.db.get_instance(w.uuid)["vm_state"] == "error", 10,
               f"{stack.name}: the crash to show")
    w.do("rescue_instance", "rescued")
    inst = w.do("unrescue_instance", "active")
    check_flavor(w, inst, BIGGER)
    assert_dom0_matches_db(stack.sim, stack.db, stack.host)

    w.check_actions()

    stack.api.terminate_instance(stack.host, w.uuid)
    settle(stack, w.uuid, "deleted")
    assert_dom0_matches_db(stack.sim, stack.db, stack.host)


def test_every_operation_from_every_state_on_each_database(trio):
    with ThreadPoolExecutor(max_workers=len(trio)) as pool:
        futures = {name: pool.submit(walk, stack) for name, stack in trio.items()}
        for name, future in futures.items():
            try:
                future.result()
            except BaseException as exc:
                tail = trio[name].log_tail()
                raise AssertionError(f"{name}: {exc!r}\nagent log:\n{tail}") from exc


def test_outside_pause_suspend_resume_are_reflected(trio):
    stack = trio["sqlite"]
    body = instance_spec("outside")
    stack.api.build_instance(stack.host, body)
    uuid = body["uuid"]
    settle(stack, uuid, "active")
    ref = dom0_vm(stack, uuid)["ref"]
    seen: dict[str, float] = {}

    def outside(call: Callable[[object], None], name: str, vm_state: str, power: int) -> None:
        sent = time.monotonic()
        with stack.sim.session() as x:
            call(x)
        wait_until(lambda: (lambda i: i["vm_state"] == vm_state and i["power_state"] == power
                            )(stack.db.get_instance(uuid)), EXTERNAL_BOUND_S,
                   f"the outside {name} to show", 0.02)
        seen[name] = round(time.monotonic() - sent, 3)

    outside(lambda x: x.VM.pause(ref), "pause", "paused", 3)
    outside(lambda x: x.VM.unpause(ref), "unpause", "active", 1)
    outside(lambda x: x.VM.suspend(ref), "suspend", "suspended", 7)
    outside(lambda x: x.VM.resume(ref, False, False), "resume", "active", 1)
    print(f"\n[outside changes] seconds from the outside call (a 0.1 s dom0 task) until "
          f"the database showed it: {seen}")
    # The agent drives the VM from the state it learnt.
    with stack.sim.session() as x:
        x.VM.suspend(ref)
    wait_until(lambda: stack.db.get_instance(uuid)["vm_state"] == "suspended",
               EXTERNAL_BOUND_S, "the outside suspend")
    stack.api.resume_instance(stack.host, uuid, confirm=True)
    settle(stack, uuid, "active")

    # list_instances pages and filters.
    other = instance_spec("outside-2")
    stack.api.build_instance(stack.host, other)
    settle(stack, other["uuid"], "active")
    stack.api.pause_instance(stack.host, other["uuid"])
    settle(stack, other["uuid"], "paused")
    everything = stack.api.list_instances(stack.host)
    first = stack.api.list_instances(stack.host, limit=1)
    rest = stack.api.list_instances(stack.host, limit=1000, marker=first[0]["uuid"])
    assert [i["uuid"] for i in first + rest] == [i["uuid"] for i in everything]
    assert [i["uuid"] for i in stack.api.list_instances(stack.host, vm_state="paused")] == [
        other["uuid"]]
    with pytest.raises(exceptions.InvalidInput) as err:
        stack.api.list_instances(stack.host, limit=0)
    assert err.value.params[0] == "limit"
    for u in (uuid, other["uuid"]):
        stack.api.terminate_instance(stack.host, u)
        settle(stack, u, "deleted")
    assert_dom0_matches_db(stack.sim, stack.db, stack.host)
