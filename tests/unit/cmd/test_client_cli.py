"""compute-agent-client against an in-process agent on the fake:// transport."""

from __future__ import annotations

import io
import json
import uuid as uuidlib

import pytest
import sqlalchemy as sa

from compute_agent.cmd import client
from compute_agent.db.api import Database
from compute_agent.exceptions import NoValidHost
from tests.unit.conftest import RPC_HOST


@pytest.fixture
def cli(rpc_env, agent_conf):
    api = rpc_env[0]

    def run(*argv):
        out, err = io.StringIO(), io.StringIO()
        code = client.main(list(argv), conf=agent_conf, api=api, out=out, err=err)
        return code, out.getvalue(), err.getvalue()

    return run


@pytest.fixture
def cli_db(agent_conf):
    db = Database.from_conf(agent_conf)
    yield db
    db.dispose()


def test_boot_wait_show_list_and_lifecycle(cli):
    code, out, _ = cli("--json", "boot", "web-1", "--memory-mb", "256", "--wait",
                       "--poll-interval", "0.05")
    assert code == 0
    inst = json.loads(out)
    assert (inst["vm_state"], inst["host"], inst["flavor"]["memory_mb"]) == (
        "active", RPC_HOST, 256)
    uuid = inst["uuid"]

    code, out, _ = cli("list")
    assert code == 0
    header, row = out.strip().splitlines()
    assert header.split() == list(client.COLUMNS)
    assert row.split()[:4] == [uuid, "web-1", RPC_HOST, "active"]

    code, out, _ = cli("show", uuid)
    assert code == 0 and "power_state  1 (running)" in out

    for argv, state in ((("stop", uuid, "--hard"), "stopped"), (("start", uuid), "active"),
                        (("reboot", uuid, "--hard"), "active"), (("delete", uuid), "deleted")):
        code, out, _ = cli("--json", *argv, "--wait", "--poll-interval", "0.05")
        assert code == 0, argv
        assert json.loads(out)["vm_state"] == state


def test_wait_shows_progress_lines(cli):
    code, out, _ = cli("boot", "web-2", "--wait", "--poll-interval", "0.05",
                       "--meta", "fake:delay:spawn=0.3")
    assert code == 0
    lines = out.splitlines()
    assert "building" in lines[0] and "spawning" in lines[0]
    assert any("active" in line and "running" in line for line in lines)


def test_failed_build_with_wait_exits_non_zero_with_fault(cli):
    code, out, err = cli("boot", "bad", "--wait", "--poll-interval", "0.05",
                         "--meta", "fake:fail:spawn=HOST_NOT_ENOUGH_FREE_MEMORY,1024")
    assert code == client.EXIT_ERROR
    assert "vm_state error" in out
    assert "HOST_NOT_ENOUGH_FREE_MEMORY ['1024']" in out


def test_structured_errors(cli):
    missing = str(uuidlib.uuid4())
    code, out, err = cli("show", missing, "--host", RPC_HOST)
    assert code == client.EXIT_ERROR
    assert err.strip().startswith(f"ERROR INSTANCE_NOT_FOUND ['{missing}']")
    code, out, err = cli("--json", "show", missing)
    assert json.loads(out)["error"]["code"] == "INSTANCE_NOT_FOUND"
    code, out, err = cli("boot", "x", "--vcpus", "0", "--host", RPC_HOST)
    assert code == client.EXIT_ERROR and "INVALID_INPUT ['flavor.vcpus'" in err


def test_busy_refusal(cli, rpc_env):
    driver = rpc_env[2]
    gate = driver.hold("spawn")
    code, out, _ = cli("--json", "boot", "slow")
    uuid = json.loads(out)["uuid"]
    assert gate.wait_entered()
    code, out, err = cli("stop", uuid)
    assert code == client.EXIT_ERROR and "INSTANCE_BUSY" in err
    gate.release()


def test_boot_picks_live_host_with_most_free_memory(cli, cli_db, agent_conf):
    # A dead host with lots of memory and a live one with less than ours.
    cli_db.upsert_compute_node("dead-big", {"memory_mb": 10**6, "free_memory_mb": 10**6})
    cli_db.service_heartbeat("dead-big", "compute-agent", "compute")
    with cli_db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE services SET updated_at = :t WHERE host = 'dead-big'"),
                     {"t": "2000-01-01 00:00:00.000000"})
    cli_db.upsert_compute_node("live-small", {"memory_mb": 2048, "free_memory_mb": 100})
    cli_db.service_heartbeat("live-small", "compute-agent", "compute")
    hosts = client.list_hosts(agent_conf, cli_db)
    assert {h["host"]: h["alive"] for h in hosts} == {
        "dead-big": False, "live-small": True, RPC_HOST: True}
    assert client.pick_host(hosts, 512) == RPC_HOST
    code, out, _ = cli("--json", "boot", "auto", "--memory-mb", "512")
    assert code == 0 and json.loads(out)["host"] == RPC_HOST

    code, out, _ = cli("hosts", "--ping")
    assert code == 0
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:]}
    assert rows == {"dead-big": "down", "live-small": "up", RPC_HOST: "up"}


def test_pick_host_without_room():
    hosts = [{"host": "a", "alive": True, "free_memory_mb": 100},
             {"host": "b", "alive": False, "free_memory_mb": 9000}]
    with pytest.raises(NoValidHost):
        client.pick_host(hosts, 512)
    assert client.pick_host(hosts, 64) == "a"


def test_usage_errors():
    with pytest.raises(SystemExit) as info:
        client.build_parser().parse_args(["reboot"])
    assert info.value.code == 2


def test_live_migrate_to_an_agent_that_does_not_answer(cli, override):
    override("live_migration_peer_timeout", 1)
    code, out, _ = cli("--json", "boot", "mover", "--wait", "--poll-interval", "0.05")
    uuid = json.loads(out)["uuid"]
    code, out, err = cli("live-migrate", uuid, "nowhere", "--wait", "--poll-interval", "0.05")
    assert code == client.EXIT_ERROR
    assert f"instance stayed on {RPC_HOST}" in out
    code, out, _ = cli("--json", "show", uuid)
    inst = json.loads(out)
    assert (inst["vm_state"], inst["host"], inst["fault"]["code"]) == (
        "active", RPC_HOST, "RPC_TIMEOUT")


def test_migrate_with_a_flavor_is_a_resize(cli, override):
    override("live_migration_peer_timeout", 1)
    code, out, _ = cli("--json", "boot", "resizer", "--wait", "--poll-interval", "0.05")
    inst = json.loads(out)
    uuid, flavor = inst["uuid"], inst["flavor"]
    assert cli("stop", uuid, "--wait", "--poll-interval", "0.05")[0] == 0
    same = ["--vcpus", str(flavor["vcpus"]), "--memory-mb", str(flavor["memory_mb"]),
            "--root-gb", str(flavor["root_gb"])]
    code, out, err = cli("migrate", uuid, "nowhere", *same)
    assert code == client.EXIT_ERROR and "FLAVOR_UNCHANGED" in out + err
    code, out, err = cli("migrate", uuid, "nowhere", "--vcpus", "2")  # not all three
    assert code == client.EXIT_ERROR and "INVALID_INPUT" in out + err
    bigger = ["--vcpus", "2", "--memory-mb", "512", "--root-gb", str(flavor["root_gb"] + 1)]
    code, out, _ = cli("migrate", uuid, "nowhere", *bigger, "--wait", "--poll-interval", "0.05")
    assert code == client.EXIT_ERROR and f"instance stayed on {RPC_HOST}" in out
    code, out, _ = cli("--json", "show", uuid)
    inst = json.loads(out)
    assert (inst["vm_state"], inst["host"], inst["flavor"], inst["fault"]["code"]) == (
        "stopped", RPC_HOST, flavor, "RPC_TIMEOUT")


# --------------------------------------------------------------------------- RPC 1.2 commands

def test_lifecycle_commands_wait_for_their_states(cli):
    code, out, _ = cli("--json", "boot", "life-1", "--memory-mb", "256", "--wait",
                       "--poll-interval", "0.05")
    assert code == 0
    uuid = json.loads(out)["uuid"]
    steps = [(("pause",), "paused"), (("unpause",), "active"), (("suspend",), "suspended"),
             (("resume",), "active"), (("rescue",), "rescued"), (("unrescue",), "active"),
             (("resize", "--vcpus", "2", "--memory-mb", "512", "--root-gb", "2"), "resized"),
             (("resize-revert",), "active"),
             (("resize", "--vcpus", "2", "--memory-mb", "512", "--root-gb", "2"), "resized"),
             (("resize-confirm",), "active")]
    for (command, *rest), state in steps:
        code, out, err = cli("--json", command, uuid, *rest, "--wait", "--poll-interval", "0.05")
        assert code == 0, (command, err)
        inst = json.loads(out)
        assert inst["vm_state"] == state, command
        # Not a terminal: plain progress lines on stderr under --json.
        assert uuid in err
    assert inst["flavor"] == {"vcpus": 2, "memory_mb": 512, "root_gb": 2}

    code, out, _ = cli("--json", "actions", uuid)
    assert code == 0
    actions = [a["action"] for a in json.loads(out)]
    assert actions == ["create", "pause", "unpause", "suspend", "resume", "rescue",
                       "unrescue", "resize", "revertResize", "resize", "confirmResize"]
    code, out, _ = cli("actions", uuid)
    assert code == 0 and "compute_pause_instance:success" in out

    code, out, err = cli("unrescue", uuid)
    assert code == 1 and "INSTANCE_INVALID_STATE" in err
    code, out, err = cli("resize", uuid, "--vcpus", "2", "--memory-mb", "512", "--root-gb", "1")
    assert code == 1 and "RESIZE_DISK_TOO_SMALL" in err


def test_list_pages_and_filters(cli):
    uuids = []
    for i in range(3):
        code, out, _ = cli("--json", "boot", f"page-{i}", "--memory-mb", "256", "--wait",
                           "--poll-interval", "0.05")
        uuids.append(json.loads(out)["uuid"])
    cli("pause", uuids[1], "--wait", "--poll-interval", "0.05")
    code, out, _ = cli("--json", "list", "--host", RPC_HOST)
    assert [i["uuid"] for i in json.loads(out)][-3:] == uuids
    code, out, _ = cli("--json", "list", "--host", RPC_HOST, "--vm-state", "paused")
    assert [i["uuid"] for i in json.loads(out)] == [uuids[1]]
    code, out, _ = cli("--json", "list", "--host", RPC_HOST, "--limit", "1",
                       "--marker", uuids[0])
    assert [i["uuid"] for i in json.loads(out)] == [uuids[1]]
    code, _, err = cli("list", "--host", RPC_HOST, "--limit", "0")
    assert code == 1 and "INVALID_INPUT" in err


def test_wait_on_a_terminal_draws_a_progress_bar(rpc_env, agent_conf):
    api = rpc_env[0]
    out, err = io.StringIO(), io.StringIO()
    code = client.main(["boot", "bar-1", "--memory-mb", "256", "--wait", "--poll-interval",
                        "0.05"], conf=agent_conf, api=api, out=out, err=err, terminal=True)
    assert code == 0
    text = out.getvalue()
    # rich's bar (box-drawing characters) at 100 %, not one line per state.
    assert "━" in text and "100%" in text


def test_list_falls_back_to_one_answer_from_an_agent_before_1_2(rpc_env, agent_conf, cli):
    from compute_agent.rpc.rpcapi import ComputeAPI

    code, out, _ = cli("--json", "boot", "old-1", "--memory-mb", "256", "--wait",
                       "--poll-interval", "0.05")
    uuid = json.loads(out)["uuid"]
    old = ComputeAPI(agent_conf, rpc_transport=rpc_env[0].transport, version_cap="1.1",
                     timeout=10)
    out = io.StringIO()
    assert client.main(["--json", "list", "--host", RPC_HOST], conf=agent_conf, api=old,
                       out=out, err=io.StringIO()) == 0
    assert uuid in [i["uuid"] for i in json.loads(out.getvalue())]
def test_console_console_log_and_diagnostics(cli):
    code, out, _ = cli("--json", "boot", "con-1", "--wait", "--poll-interval", "0.05")
    assert code == 0
    uuid = json.loads(out)["uuid"]

    code, out, _ = cli("console", uuid)
    assert code == 0
    url, until = out.strip().splitlines()
    assert url.startswith("http://127.0.0.1:6080/vnc_lite.html?path=websockify%3Ftoken%3D")
    assert until.startswith("(usable once, until ")

    code, out, _ = cli("console-log", uuid, "--lines", "1")
    assert (code, out) == (0, "con-1 login:\n")

    code, out, _ = cli("--json", "diagnostics", uuid)
    assert code == 0
    diag = json.loads(out)
    assert (diag["instance_uuid"], diag["name"], diag["cpu"]["count"]) == (uuid, "con-1", 1)

    code, _, err = cli("console-log", uuid, "--lines", "0")
    assert code == 1 and "INVALID_INPUT" in err
