"""``compute-agent-client`` as an operator runs it: the real console script
with ``--config-file``, against two real agents (threading and eventlet), each
on a hypervisor of its own (a ``xapi-sim``, or libvirt's in-process
``test:///``), sharing one PostgreSQL database and RabbitMQ.

Both drivers: hosts, the lifecycle commands and the scheduler. XenAPI
only: the error exits (they need the simulator to fail or slow down a dom0
call).

Covers boot (with ``--host`` and without: the minimal scheduler takes the
live host with the most free memory from compute_nodes), list, show, stop,
start, reboot (soft, hard), delete and hosts, their ``--json`` output, and
the exit status of ``--wait``: 0 when the instance settles as asked, 1 when it
ends in error or the request is refused, 3 when the wait times out, 2 for
usage errors.
"""

from __future__ import annotations

import json
import subprocess
import uuid as uuidlib
from typing import Any

import pytest

from tests.functional.harness import BIN, SETTLE_S, wait_until

from .conftest import Pair
from .stack import finished_actions, watch

pytestmark = pytest.mark.timeout(120)

BOTH_DRIVERS = pytest.mark.parametrize("pair", ["xenapi", "libvirt"], indirect=True)
XENAPI_ONLY = pytest.mark.parametrize("pair", ["xenapi"], indirect=True)
DRIVER_CLASSES = {"xenapi": "XenAPIDriver", "libvirt": "LibvirtDriver"}

RC_OK, RC_ERROR, RC_USAGE, RC_TIMEOUT = 0, 1, 2, 3


class Result:
    def __init__(self, done: subprocess.CompletedProcess):
        self.rc = done.returncode
        self.out = done.stdout
        self.err = done.stderr

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.out)
        except ValueError:
            pytest.fail(f"not JSON on stdout (rc {self.rc}): {self.out!r}\n{self.err}")

    def __repr__(self) -> str:
        return f"rc={self.rc}\nstdout={self.out}\nstderr={self.err}"


def cli(pair: Pair, *args: str, as_json: bool = True, timeout: float = 60) -> Result:
    argv = [str(BIN / "compute-agent-client"), "--config-file", str(pair.client_config())]
    if as_json:
        argv.append("--json")
    done = subprocess.run(argv + list(args), capture_output=True, text=True, timeout=timeout)
    return Result(done)


def nodes(pair: Pair) -> dict[str, dict]:
    return {n["host"]: n for n in pair.db.list_compute_nodes()}


def wait_free_memory(pair: Pair, host: str, below: int) -> None:
    """Until the agent's periodic report shows less than ``below`` MB free."""
    wait_until(lambda: nodes(pair).get(host, {}).get("free_memory_mb", below) < below,
               SETTLE_S, f"{host} to report under {below} MB free", 0.2)


@BOTH_DRIVERS
def test_hosts_lists_live_agents_with_resources(pair):
    hosts = {h["host"]: h for h in cli(pair, "hosts").json}
    for agent in pair.agents:
        h = hosts[agent.host]
        assert h["alive"] is True and h["heartbeat"].endswith("Z")
        assert h["hypervisor_type"] == "xen"
        assert 0 < h["free_memory_mb"] <= h["memory_mb"]
    pinged = {h["host"]: h for h in cli(pair, "hosts", "--ping").json}
    for agent in pair.agents:
        pong = pinged[agent.host]["ping"]
        assert (pong["host"], pong["backend"], pong["driver"]) == (
            agent.host, agent.backend, DRIVER_CLASSES[pair.driver])
    table = cli(pair, "hosts", as_json=False)
    assert table.rc == RC_OK, table
    assert table.out.splitlines()[0].split()[:3] == ["host", "state", "vcpus"]
    for agent in pair.agents:
        line = next(ln for ln in table.out.splitlines() if ln.startswith(agent.host))
        assert line.split()[1] == "up"


@BOTH_DRIVERS
def test_lifecycle_commands_with_json_and_wait(pair):
    host = pair.agents[0].host
    booted = cli(pair, "boot", "cli-life", "--host", host, "--memory-mb", "256", "--wait",
                 "--poll-interval", "0.05")
    assert booted.rc == RC_OK, booted
    inst = booted.json
    uuid = inst["uuid"]
    assert (inst["host"], inst["vm_state"], inst["task_state"], inst["power_state"]) == (
        host, "active", None, 1)
    assert inst["flavor"] == {"vcpus": 1, "memory_mb": 256, "root_gb": 1}
    # Progress lines go to stderr under --json: spawning first, active last.
    progress = [ln.split() for ln in booted.err.splitlines() if ln.startswith(uuid)]
    if pair.views[0].observable_progress:
        assert progress[0][1:3] == ["building", "spawning"], booted.err
    assert progress[-1][1:4] == ["active", "-", "running"], booted.err

    listed = cli(pair, "list").json
    assert [i["vm_state"] for i in listed if i["uuid"] == uuid] == ["active"]
    assert [i["uuid"] for i in cli(pair, "list", "--host", host).json] == [uuid]
    shown = cli(pair, "show", uuid).json
    assert (shown["uuid"], shown["vm_state"], shown["fault"]) == (uuid, "active", None)
    table = cli(pair, "show", uuid, as_json=False)
    assert table.rc == RC_OK and "vm_state     active" in table.out, table
    assert "power_state  1 (running)" in table.out

    for args, state, power in ((["stop"], "stopped", 4), (["start"], "active", 1),
                               (["reboot"], "active", 1), (["reboot", "--hard"], "active", 1),
                               (["stop", "--hard"], "stopped", 4)):
        done = cli(pair, *args, uuid, "--wait", "--poll-interval", "0.05")
        assert done.rc == RC_OK, (args, done)
        assert (done.json["vm_state"], done.json["task_state"], done.json["power_state"]) == (
            state, None, power), args

    # Without --wait the command returns the accepted request at once.
    accepted = cli(pair, "start", uuid)
    assert accepted.rc == RC_OK, accepted
    assert (accepted.json["vm_state"], accepted.json["task_state"]) == ("stopped", "powering_on")
    watch(pair.rpc.api, host, uuid, until=lambda i: i["vm_state"] == "active"
          and i["task_state"] is None)

    deleted = cli(pair, "delete", uuid, "--wait", "--poll-interval", "0.05")
    assert deleted.rc == RC_OK, deleted
    assert deleted.json["vm_state"] == "deleted"
    assert cli(pair, "show", uuid).json["vm_state"] == "deleted"
    assert uuid not in [i["uuid"] for i in cli(pair, "list").json]
    assert [a for a, _ in finished_actions(pair.db, uuid, 8)] == [
        "create", "stop", "start", "reboot", "reboot", "stop", "start", "delete"]
    pair.views[0].assert_matches_db(pair.db)


@BOTH_DRIVERS
def test_boot_without_host_takes_the_live_host_with_most_free_memory(pair):
    first, second = pair.agents
    # A compute node whose agent never reported a heartbeat: not live, never
    # chosen, however much memory it claims.
    dead = f"e2e-dead-{uuidlib.uuid4().hex[:8]}"
    pair.db.upsert_compute_node(dead, {
        "vcpus": 64, "vcpus_used": 0, "memory_mb": 10**7, "memory_mb_used": 0,
        "free_memory_mb": 10**7, "local_gb": 100, "local_gb_used": 0,
        "hypervisor_type": "xen", "hypervisor_version": "4.17", "hypervisor_hostname": dead,
        "running_vms": 0})
    hosts = {h["host"]: h for h in cli(pair, "hosts").json}
    assert hosts[dead]["alive"] is False
    booted: list[str] = []

    def boot_anywhere(name: str, memory_mb: int) -> dict:
        done = cli(pair, "boot", name, "--memory-mb", str(memory_mb), "--wait")
        assert done.rc == RC_OK, done
        booted.append(done.json["uuid"])
        return done.json

    # Load the second host, then the first more: each boot without --host
    # lands where the most memory is free at that moment.
    free = {h: n["free_memory_mb"] for h, n in nodes(pair).items() if h != dead}
    done = cli(pair, "boot", "cli-load-2", "--host", second.host, "--memory-mb", "8192",
               "--wait")
    assert done.rc == RC_OK, done
    booted.append(done.json["uuid"])
    wait_free_memory(pair, second.host, free[second.host] - 8000)
    assert boot_anywhere("cli-auto-1", 256)["host"] == first.host

    done = cli(pair, "boot", "cli-load-1", "--host", first.host, "--memory-mb", "16384",
               "--wait")
    assert done.rc == RC_OK, done
    booted.append(done.json["uuid"])
    wait_free_memory(pair, first.host, free[first.host] - 16000)
    assert boot_anywhere("cli-auto-2", 256)["host"] == second.host

    # Nothing fits: refused before anything is sent.
    refused = cli(pair, "boot", "cli-too-big", "--memory-mb", str(10**6))
    assert refused.rc == RC_ERROR, refused
    assert refused.json["error"]["code"] == "NO_VALID_HOST"

    for uuid in booted:
        assert cli(pair, "delete", uuid).rc == RC_OK
    for uuid in booted:
        watch(pair.rpc.api, None, uuid, until=lambda i: i["vm_state"] == "deleted")
    for view in pair.views:
        view.assert_matches_db(pair.db)


@XENAPI_ONLY
def test_errors_and_exit_status(pair):
    first, second = pair.agents
    missing = str(uuidlib.uuid4())
    shown = cli(pair, "show", missing)
    assert shown.rc == RC_ERROR, shown
    assert shown.json["error"]["code"] == "INSTANCE_NOT_FOUND"
    assert shown.json["error"]["params"] == [missing]
    assert "ERROR INSTANCE_NOT_FOUND" in shown.err

    # Refused by the client's own validation.
    bad = cli(pair, "boot", "cli-bad", "--host", first.host, "--memory-mb", "8")
    assert bad.rc == RC_ERROR, bad
    assert bad.json["error"] == {"code": "INVALID_INPUT",
                                 "params": ["flavor.memory_mb", "must be at least 16"],
                                 "message": bad.json["error"]["message"]}

    # dom0 refuses the start of the VM: --wait reports the error state and
    # its fault, exit status 1.
    pair.sims[0].control.fail("Async.VM.start_on", ["HOST_NOT_ENOUGH_FREE_MEMORY", "268435456",
                                                 "1024"])
    try:
        failed = cli(pair, "boot", "cli-fail", "--host", first.host, "--wait",
                     "--poll-interval", "0.05")
    finally:
        pair.sims[0].control.clear()
    assert failed.rc == RC_ERROR, failed
    assert failed.json["vm_state"] == "error"
    assert failed.json["fault"]["code"] == "HOST_NOT_ENOUGH_FREE_MEMORY"
    assert failed.json["fault"]["params"] == ["268435456", "1024"]
    assert "ERROR boot ended in vm_state error" in failed.err

    # A request the state forbids: refused, exit status 1.
    ok = cli(pair, "boot", "cli-ok", "--host", second.host, "--wait")
    assert ok.rc == RC_OK, ok
    uuid = ok.json["uuid"]
    refused = cli(pair, "start", uuid, "--wait")
    assert refused.rc == RC_ERROR, refused
    assert refused.json["error"]["code"] == "INSTANCE_INVALID_STATE"
    assert refused.json["error"]["params"] == [uuid, "vm_state", "active", "stopped"]

    # A wait that outlasts --wait-timeout: exit status 3; the work goes on.
    pair.sims[1].control.set_duration("VM.clean_shutdown", 3.0)
    try:
        slow = cli(pair, "stop", uuid, "--wait", "--wait-timeout", "0.5",
                   "--poll-interval", "0.1")
        assert slow.rc == RC_TIMEOUT, slow
        assert "timed out" in slow.err
        inst = watch(pair.rpc.api, None, uuid, until=lambda i: i["task_state"] is None)[0]
    finally:
        pair.sims[1].control.clear()
    assert (inst["vm_state"], inst["power_state"]) == ("stopped", 4)

    # Usage and configuration errors: exit status 2.
    assert cli(pair, "reboot").rc == RC_USAGE
    done = subprocess.run([str(BIN / "compute-agent-client"), "--config-file",
                           str(pair.workdir / "missing.conf"), "list"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == RC_USAGE, done

    for gone in (failed.json["uuid"], uuid):
        assert cli(pair, "delete", gone, "--wait", "--poll-interval", "0.05").rc == RC_OK
    for view in pair.views:
        view.assert_matches_db(pair.db)
    # Both agents still answer.
    assert all("ping" in h and h["ping"].get("host") == h["host"]
               for h in cli(pair, "hosts", "--ping").json if h["alive"])
