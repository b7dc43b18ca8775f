"""devstack/plugin.sh run under real bash against recording stubs of the DevStack
functions it calls (tests/functional/devstack_stub.sh): the phases it implements,
the configuration it writes (validated with oslo-config-validator), the order in
which it starts things, and shellcheck on the shell files."""

from __future__ import annotations

import configparser
import getpass
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.functional.harness import free_port

REPO = Path(__file__).resolve().parents[2]
DEVSTACK = REPO / "devstack"
STUB = Path(__file__).with_name("devstack_stub.sh")
GENERATOR_CONF = REPO / "etc/compute-agent/compute-agent-config-generator.conf"
VENV_BIN = Path(sys.executable).parent

TRANSPORT = "rabbit://stackrabbit:rabbitpw@10.0.0.5:5672/"
DB_BASE = "mysql+pymysql://root:dbpw@127.0.0.1"
COMMANDS = ("compute-agent", "compute-agent-manage", "compute-agent-status", "xapi-sim")


@dataclass
class Run:
    returncode: int
    calls: list[list[str]]
    conf_path: Path
    output: str

    @property
    def conf(self) -> configparser.RawConfigParser:
        # DEFAULT read as an ordinary section: its keys must not leak into the others.
        cp = configparser.RawConfigParser(interpolation=None, default_section="__none__")
        cp.optionxform = str  # type: ignore[assignment]
        cp.read(self.conf_path)
        return cp

    def named(self, name: str) -> list[list[str]]:
        return [c[1:] for c in self.calls if c[0] == name]

    def index(self, name: str, first_arg: str | None = None) -> int:
        for i, call in enumerate(self.calls):
            if call[0] == name and (first_arg is None or call[1] == first_arg):
                return i
        raise AssertionError(f"{name} {first_arg or ''} was not called: {self.calls}")


class DevStack:
    """A scratch DevStack tree; `run` sources settings then plugin.sh once per phase."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.calls = tmp / "calls"
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.status_rc = 0
        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp),
            "DEST": str(tmp / "opt/stack"),
            "DATA_DIR": str(tmp / "opt/stack/data"),
            "STACK_USER": getpass.getuser(),
            "ENABLE_DEBUG_LOG_LEVEL": "True",
            "SERVICE_TIMEOUT": "60",
            "ADMIN_PASSWORD": "adminpw",
            "ENABLED_SERVICES": "rabbit",
            # The code under test, also in the real processes it starts.
            **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
            # /etc needs root; the plugin's default is /etc/compute-agent.
            "COMPUTE_AGENT_CONF_DIR": str(tmp / "etc/compute-agent"),
            "STUB_CALLS": str(self.calls),
            "STUB_PYTHON": sys.executable,
            "STUB_BIN_DIR": str(self.bin),
            "STUB_TRANSPORT_URL": TRANSPORT,
            "STUB_DB_BASE": DB_BASE,
        }

    def write_commands(self) -> None:
        # Each console script records that it ran; compute-agent-status answers status_rc.
        for name in COMMANDS:
            rc = self.status_rc if name == "compute-agent-status" else 0
            script = self.bin / name
            script.write_text(
                "#!/bin/bash\n"
                f"(IFS=$'\\x1f'; printf '%s\\n' \"exec:{name}$IFS$*\") >> \"$STUB_CALLS\"\n"
                f"exit {rc}\n"
            )
            script.chmod(0o755)

    def run(self, *phases: str, **env: str) -> Run:
        self.write_commands()
        self.calls.write_text("")
        lines = [
            "set -o errexit",  # stack.sh runs plugins under errexit
            f"source {STUB}",
            f"source {DEVSTACK / 'settings'}",
        ]
        lines += [f"source {DEVSTACK / 'plugin.sh'} {phase}" for phase in phases]
        proc = subprocess.run(
            ["bash", "-c", "\n".join(lines)],
            env={**self.env, **env}, capture_output=True, text=True, timeout=60,
        )
        calls = [line.split("\x1f") for line in self.calls.read_text().splitlines()]
        return Run(
            proc.returncode, calls, Path(self.env["COMPUTE_AGENT_CONF_DIR"]) / "compute-agent.conf",
            proc.stdout + proc.stderr,
        )


STACK = ("stack install", "stack post-config", "stack extra")


@pytest.fixture
def devstack(tmp_path):
    return DevStack(tmp_path)


class TestWithoutXenServer:
    """No XENAPI_CONNECTION_URL and no SQL service: xapi-sim is dom0, SQLite the database."""

    def test_installs_from_the_plugin_checkout(self, devstack):
        run = devstack.run(*STACK)
        assert run.returncode == 0, run.output
        assert run.named("setup_develop") == [[devstack.env["DEST"] + "/compute-agent"]]

    def test_writes_the_configuration(self, devstack):
        run = devstack.run(*STACK)
        assert run.returncode == 0, run.output
        conf = run.conf
        state = devstack.env["DATA_DIR"] + "/compute-agent"
        assert conf["DEFAULT"]["transport_url"] == TRANSPORT
        assert conf["DEFAULT"]["state_path"] == state
        assert conf["DEFAULT"]["debug"] == "True"
        assert conf["DEFAULT"]["compute_driver"] == "xenapi"
        assert conf["DEFAULT"]["concurrency_backend"] == "threading"
        assert "host" not in conf["DEFAULT"]
        assert conf["database"]["connection"] == f"sqlite:///{state}/compute-agent.sqlite"
        assert dict(conf["xenserver"]) == {
            "connection_url": "http://127.0.0.1:8790",
            "connection_username": "root",
            "connection_password": "adminpw",
        }
        assert conf["oslo_messaging_notifications"]["driver"] == "messagingv2"
        assert run.named("recreate_database") == []
        # The file holds passwords: not world-readable.
        assert stat.S_IMODE(run.conf_path.stat().st_mode) == 0o640

    def test_glance_is_reached_through_keystone_when_devstack_runs_it(self, devstack):
        run = devstack.run(*STACK, ENABLED_SERVICES="rabbit,key,g-api",
                           KEYSTONE_SERVICE_URI="http://10.0.0.5/identity",
                           SERVICE_PASSWORD="svcpw", SERVICE_DOMAIN_NAME="Default",
                           SERVICE_PROJECT_NAME="service", REGION_NAME="RegionOne")
        assert run.returncode == 0, run.output
        assert run.named("create_service_user") == [["compute-agent", "admin"]]
        assert dict(run.conf["glance"]) == {
            "auth_type": "password", "auth_url": "http://10.0.0.5/identity",
            "username": "compute-agent", "password": "svcpw", "user_domain_name": "Default",
            "project_name": "service", "project_domain_name": "Default",
            "region_name": "RegionOne", "valid_interfaces": "public",
        }

    def test_no_glance_section_without_glance(self, devstack):
        run = devstack.run(*STACK)
        assert run.returncode == 0, run.output
        assert "glance" not in run.conf and run.named("create_service_user") == []

    def test_starts_simulator_then_checks_then_starts_agent(self, devstack):
        run = devstack.run(*STACK)
        assert run.returncode == 0, run.output
        conf = str(run.conf_path)
        bin_dir = str(devstack.bin)
        state = devstack.env["DATA_DIR"] + "/compute-agent"

        sim = run.named("run_process")[0]
        assert sim[0] == "xapi-sim"
        assert sim[1].split() == [
            f"{bin_dir}/xapi-sim", "--listen", "127.0.0.1:8790", "--hosts", "1",
            "--task-duration", "0.5",
            "--user", "root", "--password-file", f"{state}/xapi-sim/password",
            "--state-dir", f"{state}/xapi-sim",
            "--plugins-dir", devstack.env["DEST"] + "/compute-agent/etc/xapi.d/plugins",
        ]
        # No secret on a command line: the password is in a file only its
        # owner can read.
        assert "adminpw" not in sim[1]
        pwfile = Path(f"{state}/xapi-sim/password")
        assert pwfile.read_text() == "adminpw\n"
        assert pwfile.stat().st_mode & 0o077 == 0
        assert run.named("wait_for_service") == [["60", "http://127.0.0.1:8790/"]]
        assert run.named("run_process")[1] == [
            "compute-agent", f"{bin_dir}/compute-agent --config-file {conf}"
        ]
        assert run.named("exec:compute-agent-manage") == [["--config-file", conf, "db", "sync"]]
        assert run.named("exec:compute-agent-status") == [
            ["--config-file", conf, "upgrade", "check"]
        ]
        order = [
            run.index("exec:compute-agent-manage"),
            run.index("run_process", "xapi-sim"),
            run.index("wait_for_service"),
            run.index("exec:compute-agent-status"),
            run.index("run_process", "compute-agent"),
        ]
        assert order == sorted(order)

    def test_settings_enable_both_services(self, devstack):
        script = f"source {STUB}; source {DEVSTACK / 'settings'}; echo \"$ENABLED_SERVICES\""
        out = subprocess.run(
            ["bash", "-c", script], env=devstack.env, capture_output=True, text=True, timeout=60
        )
        assert out.stdout.strip().split(",") == ["rabbit", "compute-agent", "xapi-sim"]

    def test_simulator_password_follows_xapi_sim_password(self, devstack):
        run = devstack.run(*STACK, XAPI_SIM_PASSWORD="simpw", XAPI_SIM_PORT="9999")
        assert run.conf["xenserver"]["connection_password"] == "simpw"
        assert run.conf["xenserver"]["connection_url"] == "http://127.0.0.1:9999"


class TestWithXenServerAndMySQL:
    ENV = {
        "ENABLED_SERVICES": "rabbit,mysql",
        "XENAPI_CONNECTION_URL": "https://192.0.2.10",
        "XENAPI_USER": "svc-compute",
        "XENAPI_PASSWORD": "xenpw",
        "XENAPI_CA_FILE": "/etc/ssl/certs/xs-pool.pem",
        "COMPUTE_AGENT_HOST": "xs-pool-1",
    }

    def test_config_points_at_dom0_and_mysql(self, devstack):
        run = devstack.run(*STACK, **self.ENV)
        assert run.returncode == 0, run.output
        conf = run.conf
        assert dict(conf["xenserver"]) == {
            "connection_url": "https://192.0.2.10",
            "connection_username": "svc-compute",
            "connection_password": "xenpw",
            "ca_file": "/etc/ssl/certs/xs-pool.pem",
            "insecure": "False",
        }
        assert conf["database"]["connection"] == f"{DB_BASE}/compute_agent"
        assert conf["DEFAULT"]["host"] == "xs-pool-1"
        assert run.named("recreate_database") == [["compute_agent"]]

    def test_no_simulator(self, devstack):
        run = devstack.run(*STACK, **self.ENV)
        assert [c[0] for c in run.named("run_process")] == ["compute-agent"]
        assert run.named("wait_for_service") == []

    def test_insecure_is_passed_through_trueorfalse(self, devstack):
        run = devstack.run(*STACK, **self.ENV, XENAPI_INSECURE="yes")
        assert run.conf["xenserver"]["insecure"] == "True"

    def test_postgresql_too(self, devstack):
        run = devstack.run(*STACK, **{**self.ENV, "ENABLED_SERVICES": "rabbit,postgresql"})
        assert run.named("recreate_database") == [["compute_agent"]]


class TestStatusCheckGatesTheStart:
    def test_failure_stops_the_stack_before_the_agent_starts(self, devstack):
        devstack.status_rc = 2
        run = devstack.run(*STACK)
        assert run.returncode != 0
        assert run.named("die")
        assert "compute-agent" not in [c[0] for c in run.named("run_process")]

    def test_warning_is_reported_and_the_agent_starts(self, devstack):
        devstack.status_rc = 1
        run = devstack.run(*STACK)
        assert run.returncode == 0, run.output
        assert run.named("warn")
        assert run.named("run_process")[-1][0] == "compute-agent"


class TestOtherModes:
    def test_unstack_stops_both_processes(self, devstack):
        run = devstack.run("unstack")
        assert run.returncode == 0, run.output
        assert run.named("stop_process") == [["compute-agent"], ["xapi-sim"]]

    def test_clean_removes_state_and_configuration(self, devstack):
        assert devstack.run(*STACK).returncode == 0
        state = Path(devstack.env["DATA_DIR"]) / "compute-agent"
        assert state.is_dir() and Path(devstack.env["COMPUTE_AGENT_CONF_DIR"]).is_dir()
        run = devstack.run("unstack", "clean")
        assert run.returncode == 0, run.output
        assert not state.exists()
        assert not Path(devstack.env["COMPUTE_AGENT_CONF_DIR"]).exists()

    def test_restack_drops_stale_options(self, devstack):
        first = devstack.run("stack post-config", COMPUTE_AGENT_HOST="old-name")
        assert first.conf["DEFAULT"]["host"] == "old-name"
        second = devstack.run("stack post-config")
        assert "host" not in second.conf["DEFAULT"]

    def test_disabled_plugin_does_nothing(self, devstack):
        script = (
            f"source {STUB}; source {DEVSTACK / 'settings'}; ENABLED_SERVICES=rabbit; "
            + "; ".join(f"source {DEVSTACK / 'plugin.sh'} {p}" for p in (*STACK, "unstack"))
        )
        devstack.write_commands()
        devstack.calls.write_text("")
        proc = subprocess.run(
            ["bash", "-c", script], env=devstack.env, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        assert devstack.calls.read_text() == ""


@pytest.mark.parametrize(
    "env",
    [{}, TestWithXenServerAndMySQL.ENV],
    ids=["simulator-sqlite", "xenserver-mysql"],
)
def test_written_config_passes_oslo_config_validator(devstack, env):
    run = devstack.run("stack post-config", **env)
    assert run.returncode == 0, run.output
    proc = subprocess.run(
        [str(VENV_BIN / "oslo-config-validator"), "--config-file", str(GENERATOR_CONF),
         "--input-file", str(run.conf_path), "--fatal-warnings"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shellcheck_is_clean():
    # shellcheck comes from apt (.ci/run installs it).
    assert shutil.which("shellcheck"), "shellcheck is not installed"
    files = sorted(DEVSTACK.glob("*.sh")) + [DEVSTACK / "settings", STUB]
    proc = subprocess.run(
        ["shellcheck", "--shell=bash", "--severity=style", *map(str, files)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout


@pytest.fixture
def real_devstack(devstack):
    """The stubbed DevStack, but run_process really starts the simulator and the agent
    from this virtualenv (real RabbitMQ, SQLite); every process is stopped after."""
    pids = devstack.tmp / "pids"
    pids.write_text("")
    host = f"ds-{uuid.uuid4().hex[:10]}"
    devstack.env.update({
        "STUB_REAL": "1",
        "STUB_PIDS": str(pids),
        "STUB_LOG_DIR": str(devstack.tmp),
        "STUB_BIN_DIR": str(VENV_BIN),
        "STUB_TRANSPORT_URL": "rabbit://guest:guest@127.0.0.1:5672/",
        "COMPUTE_AGENT_DIR": str(REPO),
        "COMPUTE_AGENT_HOST": host,
        "XAPI_SIM_PORT": str(free_port()),
        "XAPI_SIM_TASK_DURATION": "0.05",
    })
    devstack.host = host
    yield devstack
    for line in pids.read_text().splitlines():
        pid = int(line.split()[1])
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def logs(devstack) -> str:
    return "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
        for p in sorted(devstack.tmp.glob("*.log"))
    )


def test_stack_without_xenserver_really_runs_simulator_and_agent(real_devstack):
    """`stack` with real binaries: db sync, xapi-sim, the status check and the agent,
    which then builds an instance in the simulator; `unstack` stops both cleanly."""
    ds = real_devstack
    # The real console scripts are used, so the write_commands() stand-ins are not.
    run = ds.run(*STACK)
    assert run.returncode == 0, run.output + logs(ds)
    assert (Path(ds.env["DATA_DIR"]) / "compute-agent/compute-agent.sqlite").exists()
    conf = str(run.conf_path)
    client = [str(VENV_BIN / "compute-agent-client"), "--config-file", conf, "--json"]

    deadline = time.monotonic() + 45
    while True:
        out = subprocess.run([*client, "hosts"], capture_output=True, text=True, timeout=60)
        hosts = json.loads(out.stdout) if out.returncode == 0 else []
        if any(h.get("host") == ds.host and h.get("alive") for h in hosts):
            break
        assert time.monotonic() < deadline, f"agent never reported: {out}\n{logs(ds)}"
        time.sleep(0.5)

    boot = subprocess.run(
        [*client, "boot", "devstack-vm", "--host", ds.host, "--wait", "--wait-timeout", "60"],
        capture_output=True, text=True, timeout=90,
    )
    assert boot.returncode == 0, boot.stdout + boot.stderr + logs(ds)

    stop = ds.run("unstack")
    assert stop.returncode == 0, stop.output
    for line in (ds.tmp / "pids").read_text().splitlines():
        pid = int(line.split()[1])
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
