"""The 1.4 client commands (volumes, ports, guest agent) against an
in-process agent with the fake driver on the fake:// transport: the
manager's instance calls (records, refusals, OPERATION_NOT_SUPPORTED
mapping, secrets read from files and masked in errors) and the
attachment rows."""

from __future__ import annotations

import io
import json

import pytest

from compute_agent.cmd import client
from compute_agent.db.attachments import AttachmentTable
from tests.unit.conftest import RPC_HOST


@pytest.fixture
def cli(rpc_env, agent_conf):
    api = rpc_env[0]

    def run(*argv, stdin: str = ""):
        out, err = io.StringIO(), io.StringIO()
        import sys

        saved = sys.stdin
        sys.stdin = io.StringIO(stdin)
        try:
            code = client.main(list(argv), conf=agent_conf, api=api, out=out, err=err)
        finally:
            sys.stdin = saved
        return code, out.getvalue(), err.getvalue()

    return run


@pytest.fixture
def active(cli):
    code, out, _ = cli("--json", "boot", "dev-1", "--host", RPC_HOST, "--wait",
                       "--poll-interval", "0.05")
    assert code == 0, out
    return json.loads(out)["uuid"]


def test_volume_attach_and_detach_record_rows_without_the_secret(cli, active, agent_db,
                                                                 tmp_path):
    secret = tmp_path / "chap"
    secret.write_text("chap-secret-in-a-file\n")
    code, out, err = cli("--json", "volume-attach", active, "vol-1", "--portal", "192.0.2.1",
                         "--iqn", "iqn.x:1", "--lun", "3", "--chap-user", "u",
                         "--chap-password-file", str(secret))
    assert code == 0, err
    row = json.loads(out)
    assert (row["volume_id"], row["status"], row["target_lun"]) == ("vol-1", "attached", 3)
    rows = AttachmentTable(agent_db, "volume").list(active)
    assert "chap-secret-in-a-file" not in json.dumps(rows)
    actions = [a["action"] for a in agent_db.list_actions(active)]
    assert "attach_volume" in actions
    code, out, _ = cli("--json", "volume-detach", active, "vol-1")
    assert code == 0 and json.loads(out)["detached"] is True
    assert AttachmentTable(agent_db, "volume").list(active) == []
    code, _, err = cli("volume-detach", active, "vol-1")
    assert code == 1 and "ATTACHMENT_NOT_FOUND" in err


def test_interface_commands_and_refusals(cli, active):
    code, out, _ = cli("--json", "interface-attach", active, "port-1", "--mac",
                       "02:00:00:00:00:09")
    assert code == 0 and json.loads(out)["port_id"] == "port-1"
    code, _, err = cli("interface-attach", active, "port-2", "--mac", "02:00:00:00:00:09")
    assert code == 1 and "MAC_ADDRESS_IN_USE" in err
    code, _, err = cli("interface-attach", active, "port-3", "--network", "elsewhere")
    assert code == 1 and "NETWORK_NOT_FOUND" in err
    code, _, err = cli("interface-attach", active, "port-1")
    assert code == 1 and "ATTACHMENT_EXISTS" in err
    assert cli("interface-detach", active, "port-1")[0] == 0


def test_guest_commands_read_the_password_from_stdin(cli, active, rpc_env, tmp_path):
    driver = rpc_env[2]
    code, _, err = cli("set-password", active, "--password-file", "-", stdin="s3cret!\n")
    assert code == 0, err
    local = tmp_path / "motd"
    local.write_text("hello")
    assert cli("inject-file", active, "/etc/motd", str(local))[0] == 0
    assert cli("reset-network", active)[0] == 0
    guest = driver._devices_state()["guest"][active]
    assert guest["password"] == "s3cret!" and guest["files"] == {"/etc/motd": b"hello"}
    driver._devices_state()["agent"] = False
    code, _, err = cli("reset-network", active)
    assert code == 1 and "GUEST_AGENT_TIMEOUT" in err


def test_device_calls_check_their_arguments_and_the_instance(cli, active, rpc_env):
    api = rpc_env[0]
    code, _, err = cli("inject-file", active, "relative/path", "/dev/null")
    assert code == 1 and "INVALID_INPUT" in err
    with pytest.raises(Exception) as info:
        api.set_admin_password(RPC_HOST, active, "")
    assert getattr(info.value, "code", "") == "INVALID_INPUT"
    assert cli("stop", active, "--host", RPC_HOST, "--wait", "--poll-interval", "0.05")[0] == 0
    code, _, err = cli("set-password", active, "--password-file", "-", stdin="x\n")
    assert code == 1 and "INSTANCE_INVALID_STATE" in err
