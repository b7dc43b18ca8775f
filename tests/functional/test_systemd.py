"""The systemd unit, sysusers and tmpfiles files, checked with systemd's own tools,
and the real daemon's sd_notify behaviour over a notify socket the test owns
(real RabbitMQ, SQLite migrated by compute-agent-manage, fake compute driver)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import time
import uuid
from importlib import metadata
from pathlib import Path

import pytest

from compute_agent.conf import default
from tests.functional.harness import BIN, RABBIT, db_sync, kill_group, write_config

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "systemd"
UNIT = SYSTEMD / "compute-agent.service"

# systemd-analyze, systemd-sysusers and systemd-tmpfiles come with the systemd package
# (.ci/run installs it); tmpfiles needs root to chown, as CI runs.


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values (systemd allows repeated keys)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit_for_verify(tmp_path: Path) -> Path:
    """The shipped unit with ExecStart's program swapped for one that exists here.

    `systemd-analyze verify` insists the program exists; the venv on this machine
    is not /opt/compute-agent. Everything else is verified as shipped.
    """
    service = parse_unit(UNIT)["Service"]
    program = service["ExecStart"][0].split()[0]
    stand_in = tmp_path / "compute-agent"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    copy = tmp_path / "compute-agent.service"
    copy.write_text(UNIT.read_text().replace(program, str(stand_in)))
    return copy


def seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "min": 60}
    for suffix in sorted(units, key=len, reverse=True):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * units[suffix]
    return float(value)


def library_default(namespace: str, name: str):
    (ep,) = [e for e in metadata.entry_points(group="oslo.config.opts") if e.name == namespace]
    for _group, opts in ep.load()():
        for opt in opts:
            if opt.name == name:
                return opt.default
    raise LookupError(name)


class TestUnitFile:
    def test_systemd_analyze_verify_is_clean(self, tmp_path):
        proc = subprocess.run(
            ["systemd-analyze", "verify", str(unit_for_verify(tmp_path))],
            capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        # verify exits 0 even for unknown keys; those print warnings.
        assert proc.stderr.strip() == ""

    def test_sandbox_exposure_is_low(self, tmp_path):
        # 2.0 on systemd's 0 (locked down) .. 10 (exposed) scale; a network
        # daemon cannot go much below, since it needs AF_INET and the host network.
        proc = subprocess.run(
            ["systemd-analyze", "security", "--offline=true", "--threshold=20",
             "--no-pager", str(unit_for_verify(tmp_path))],
            capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr

    def test_contract(self):
        unit = parse_unit(UNIT)
        svc = unit["Service"]
        assert svc["Type"] == ["notify"]
        assert svc["Restart"] == ["on-failure"]
        assert svc["NoNewPrivileges"] == ["yes"]
        assert svc["ProtectSystem"] == ["strict"]
        argv = svc["ExecStart"][0].split()
        scripts = {e.name for e in metadata.entry_points(group="console_scripts")}
        assert Path(argv[0]).name == "compute-agent" and "compute-agent" in scripts
        assert argv[1:] == ["--config-file", "/etc/compute-agent/compute-agent.conf"]
        assert "-HUP" in svc["ExecReload"][0]
        assert "MALLOC_ARENA_MAX=2" in svc["Environment"]
        # The state directory systemd makes writable is [DEFAULT] state_path's default.
        (state_opt,) = [o for o in default.DEFAULT_OPTS if o.name == "state_path"]
        assert state_opt.default == "/var/lib/" + svc["StateDirectory"][0]

    def test_stop_timeout_covers_graceful_shutdown(self):
        svc = parse_unit(UNIT)["Service"]
        graceful = library_default("oslo.service.service", "graceful_shutdown_timeout")
        stop = seconds(svc["TimeoutStopSec"][0])
        assert graceful < stop <= graceful + 30

    def test_watchdog_period_is_sane(self):
        svc = parse_unit(UNIT)["Service"]
        assert 10 <= seconds(svc["WatchdogSec"][0]) <= 600

    def test_unit_user_is_the_sysusers_user(self):
        svc = parse_unit(UNIT)["Service"]
        line = [
            ln for ln in (SYSTEMD / "compute-agent.sysusers").read_text().splitlines()
            if ln.startswith("u ")
        ]
        assert len(line) == 1
        assert line[0].split()[1] == svc["User"][0] == svc["Group"][0]


def test_sysusers_and_tmpfiles_create_user_and_private_directories(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "usr/lib/sysusers.d").mkdir(parents=True)
    (root / "usr/lib/tmpfiles.d").mkdir(parents=True)
    shutil.copy(SYSTEMD / "compute-agent.sysusers", root / "usr/lib/sysusers.d/compute-agent.conf")
    shutil.copy(SYSTEMD / "compute-agent.tmpfiles", root / "usr/lib/tmpfiles.d/compute-agent.conf")
    for tool in (["systemd-sysusers"], ["systemd-tmpfiles", "--create"]):
        proc = subprocess.run(
            [*tool, f"--root={root}"], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr

    lines = (root / "etc/passwd").read_text().splitlines()
    passwd = {ln.split(":")[0]: ln.split(":") for ln in lines}
    user = passwd["compute-agent"]
    uid, gid = int(user[2]), int(user[3])
    assert uid < 1000, "a system user"
    assert user[6] == "/usr/sbin/nologin"

    def check(path: str, owner: int, mode: int) -> None:
        st = (root / path).stat()
        assert stat.S_ISDIR(st.st_mode)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (owner, gid, mode)

    check("etc/compute-agent", 0, 0o750)
    check("var/lib/compute-agent", uid, 0o750)
    check("var/log/compute-agent", uid, 0o750)


# --- the real daemon ------------------------------------------------------------------------


class NotifySocket:
    """The test's stand-in for systemd's notify socket."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[dict[str, str]] = []

    def wait_for(self, key: str, timeout: float = 30.0) -> dict[str, str]:
        """Next message carrying ``key`` (messages before it are kept in .messages)."""
        self.sock.settimeout(timeout)
        while True:
            data = self.sock.recv(4096).decode()
            fields = dict(f.split("=", 1) for f in data.split("\n") if "=" in f)
            self.messages.append(fields)
            if key in fields:
                return fields

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def agent_config(tmp_path):
    name = f"ca-sd-{uuid.uuid4().hex[:10]}"
    conf = write_config(tmp_path / "compute-agent.conf", {
        "DEFAULT": {"host": name, "state_path": tmp_path, "compute_driver": "fake",
                    "transport_url": RABBIT, "control_exchange": name,
                    "graceful_shutdown_timeout": 20},
        "database": {"connection": f"sqlite:///{tmp_path}/agent.sqlite"},
    })
    db_sync(conf)
    return conf


@pytest.fixture
def run_agent(tmp_path, agent_config):
    """Start the real `compute-agent` as systemd would: NOTIFY_SOCKET (and WATCHDOG_USEC)."""
    started: list[subprocess.Popen] = []
    notify = NotifySocket(tmp_path / "notify.sock")
    log = tmp_path / "agent.log"

    def start(watchdog_usec: int | None = None) -> subprocess.Popen:
        env = dict(os.environ, NOTIFY_SOCKET=str(notify.path))
        env.pop("WATCHDOG_PID", None)
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [str(BIN / "compute-agent"), "--config-file", str(agent_config)],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        started.append(proc)
        return proc

    start.notify = notify  # type: ignore[attr-defined]
    start.log = log  # type: ignore[attr-defined]
    yield start
    for proc in started:
        kill_group(proc)
    notify.close()


def agent_log(run_agent) -> str:
    return run_agent.log.read_text(errors="replace")[-4000:]


def test_daemon_sends_ready_pings_watchdog_and_stops_cleanly_on_sigterm(run_agent):
    proc = run_agent(watchdog_usec=2_000_000)
    notify = run_agent.notify
    try:
        ready = notify.wait_for("READY")
    except TimeoutError:
        pytest.fail("no READY=1 within 30 s; agent log:\n" + agent_log(run_agent))
    assert ready["READY"] == "1"
    assert proc.poll() is None
    # WATCHDOG_USEC=2 s: the agent must ping (every second) while it is healthy.
    assert notify.wait_for("WATCHDOG", timeout=15)["WATCHDOG"] == "1"

    proc.send_signal(signal.SIGTERM)
    assert notify.wait_for("STOPPING", timeout=30)["STOPPING"] == "1"
    assert proc.wait(timeout=40) == 0, agent_log(run_agent)


def test_daemon_reloads_on_sighup_and_keeps_serving(run_agent):
    proc = run_agent()
    notify = run_agent.notify
    try:
        notify.wait_for("READY")
    except TimeoutError:
        pytest.fail("no READY=1 within 30 s; agent log:\n" + agent_log(run_agent))

    proc.send_signal(signal.SIGHUP)
    reloading = notify.wait_for("RELOADING", timeout=30)
    assert int(reloading["MONOTONIC_USEC"]) > 0
    assert notify.wait_for("READY", timeout=30)["READY"] == "1"
    assert proc.poll() is None, "SIGHUP must not stop the agent"

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=40) == 0, agent_log(run_agent)


def test_sigusr2_writes_a_guru_meditation_report_and_the_agent_keeps_running(run_agent):
    proc = run_agent()
    try:
        run_agent.notify.wait_for("READY")
    except TimeoutError:
        pytest.fail("no READY=1 within 30 s; agent log:\n" + agent_log(run_agent))
    proc.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 30
    while "Guru Meditation" not in run_agent.log.read_text(errors="replace"):
        assert time.monotonic() < deadline, "no report within 30 s:\n" + agent_log(run_agent)
        time.sleep(0.2)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=40) == 0, agent_log(run_agent)


def mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def worker_pids(pid: int) -> list[int]:
    """The launcher's children (it forks from a thread of its own, so every
    thread's children list is read)."""
    return [int(c) for t in Path(f"/proc/{pid}/task").glob("*/children")
            for c in t.read_text().split()]


def test_the_launcher_stays_light_and_its_worker_serves(run_agent):
    """The master (launcher) never loads the database stack (SQLAlchemy's
    compiled parts show in its memory map): its pages would be paid for
    twice once its worker un-shares them (process/worker.py); the worker
    does load it."""
    proc = run_agent()
    try:
        run_agent.notify.wait_for("READY")
    except TimeoutError:
        pytest.fail("no READY=1 within 30 s; agent log:\n" + agent_log(run_agent))
    children = worker_pids(proc.pid)
    assert len(children) == 1, children
    master, worker = mapped_files(proc.pid), mapped_files(children[0])
    assert "/sqlalchemy/" not in master and "/sqlalchemy/" in worker
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=40) == 0, agent_log(run_agent)


def test_a_killed_worker_is_forked_again_and_serves(run_agent):
    """The master re-forks a worker that died; the new one imports and
    builds the service itself and says READY=1 again."""
    proc = run_agent()
    notify = run_agent.notify
    try:
        notify.wait_for("READY")
    except TimeoutError:
        pytest.fail("no READY=1 within 30 s; agent log:\n" + agent_log(run_agent))
    (first,) = worker_pids(proc.pid)
    os.kill(first, signal.SIGKILL)
    assert notify.wait_for("READY", timeout=30)["READY"] == "1"
    (second,) = worker_pids(proc.pid)
    assert second != first and proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=40) == 0, agent_log(run_agent)
