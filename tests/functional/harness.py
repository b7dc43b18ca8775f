"""Process plumbing shared by the functional tests.

- :func:`wait_until`: poll with a deadline, fail the test at it.
- :func:`free_port`: a port nothing listens on (bound, then released).
- :func:`write_config` / :func:`manage` / :func:`db_sync`: an agent config
  file and the real ``compute-agent-manage`` on it.
- :func:`running_simulator` / :func:`sdk_session`: an in-process simulator
  and the official XenAPI SDK logged in to one.
- :class:`SimProcess`: ``xapi-sim`` as a subprocess on a free port, its
  object database persisted so it can be stopped and started again.
- :class:`AgentProcess`: ``compute-agent`` as a subprocess.

Every process is started in a session of its own and killed (group) if it
does not stop. rpc_client.py is the client side (Rpc: ComputeAPI over the
broker, the agents' notifications); agent_stack.py puts a simulator, an
agent, its database and a client together for the tests that drive one
agent end to end.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from compute_agent import exceptions
from compute_agent.rpc.rpcapi import ComputeAPI
from xapisim.control_client import SimControl
from xapisim.server import Simulator

RABBIT = os.environ.get("CA_TEST_RABBIT_URL", "rabbit://guest:guest@127.0.0.1:5672/")
BIN = Path(sys.executable).parent
USER, PASSWORD = "root", "password"
TASK_DURATION = 0.2  # seconds each dom0 task takes in a SimProcess by default
START_LIMIT_S = 40.0  # bound for a process to come up; never a speed assertion
SETTLE_S = 30.0  # bound for an operation to settle; never a speed assertion


def free_port() -> int:
    """A free local port: bound to find it, released for the caller (so it
    is also a port where a connection is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], Any], timeout: float = 5.0, what: str = "the condition",
               step: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy (returned) or fail
    the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL, wait: float = 15) -> None:
    """Signal the process group of ``proc`` and reap it; SIGKILL if it
    outlives ``wait`` seconds."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


# --------------------------------------------------------------------------- config and manage


Sections = Mapping[str, Mapping[str, Any]]


def write_config(path: Path, sections: Sections) -> Path:
    """Write an oslo.config file: group -> option -> value; an option whose
    value is None is left out (the option's default applies)."""
    lines: list[str] = []
    for group, options in sections.items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {value}" for key, value in options.items() if value is not None]
    path.write_text("\n".join(lines) + "\n")
    return path


def merge_sections(base: Sections, extra: Sections | None) -> dict[str, dict[str, Any]]:
    merged = {group: dict(options) for group, options in base.items()}
    for group, options in (extra or {}).items():
        merged.setdefault(group, {}).update(options)
    return merged


def manage(config: Path, *args: str, timeout: float = 60,
           env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """``compute-agent-manage --config-file config args...``, output captured."""
    return subprocess.run(
        [str(BIN / "compute-agent-manage"), "--config-file", str(config), *args],
        capture_output=True, text=True, timeout=timeout, env=env)


def db_sync(config: Path) -> str:
    """Migrate the configured database with the real command; returns its output."""
    done = manage(config, "db", "sync", timeout=120)
    assert done.returncode == 0, f"db sync failed: {done.stdout}\n{done.stderr}"
    return done.stdout


# --------------------------------------------------------------------------- simulator


@contextlib.contextmanager
def running_simulator(**kwargs: Any) -> Iterator[Simulator]:
    """An in-process simulator, started, stopped on exit."""
    sim = Simulator(**kwargs).start()
    try:
        yield sim
    finally:
        sim.stop()


@contextlib.contextmanager
def sdk_session(url: str, originator: str, user: str = USER,
                password: str = PASSWORD) -> Iterator[XenAPI.Session]:
    """The official SDK logged in to ``url``; logged out (if it still can
    be: the test may have restarted xapi or logged out itself) on exit."""
    session = XenAPI.Session(url)
    session.xenapi.login_with_password(user, password, "2.0", originator)
    try:
        yield session
    finally:
        with contextlib.suppress(Exception):
            session.xenapi.session.logout()
        # ServerProxy's own close (session.close would be a remote call).
        session("close")()


class SimProcess:
    """``xapi-sim`` as a subprocess on a fixed free port."""

    def __init__(self, workdir: Path, name: str = "sim", task_duration: float = TASK_DURATION,
                 hosts: int = 1, address: str = "127.0.0.1", port: int | None = None):
        self.name = name
        self.port = port or free_port()
        self.task_duration = task_duration
        self.hosts = hosts
        self.address = address
        # one URL per pool host: the coordinator's address, then the next ones
        base = ipaddress.ip_address(address)
        self.urls = [f"http://{base + i}:{self.port}" for i in range(hosts)]
        self.state_dir = workdir / f"{name}-state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / f"{name}.log"
        self.url = self.urls[0]
        self.control = SimControl(self.url, timeout=10)
        self.proc: subprocess.Popen | None = None

    def start(self) -> SimProcess:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "xapi-sim"), "--listen", f"{self.address}:{self.port}",
                 "--task-duration", str(self.task_duration), "--hosts", str(self.hosts),
                 "--user", USER, "--state-dir", str(self.state_dir), "--persist"],
                # the password by the environment, as an operator would pass
                # it: a command line is readable by every user through ps
                env={**os.environ, "XAPISIM_PASSWORD": PASSWORD},
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(self._up, START_LIMIT_S, f"{self.name} to serve", 0.05)
        return self

    def _up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"xapi-sim exited {self.proc.returncode}: {tail(self.log)}")
        try:
            with self.session():
                return True
        except OSError:
            return False

    @contextlib.contextmanager
    def session(self) -> Iterator[Any]:
        """A XenAPI SDK session of the test's own (not the agent's): its
        ``xenapi`` proxy."""
        with sdk_session(self.url, "functional-test") as s:
            yield s.xenapi

    def stop(self) -> None:
        """SIGTERM: the simulator saves its object database (--persist) and
        exits; its port refuses connections until start() again."""
        if self.proc is not None and self.proc.poll() is None:
            kill_group(self.proc, signal.SIGTERM)

    def crash_and_restart(self) -> None:
        """xapi dies hard (its object database flushed first, as xapi's redo
        log would have it) and comes back: every task is gone."""
        self.control.save()
        assert self.proc is not None
        kill_group(self.proc)
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


# --------------------------------------------------------------------------- compute-agent


class AgentProcess:
    """``compute-agent`` as a subprocess, its config written from the
    arguments; ``options`` (group -> option -> value, None to leave one
    out) adds to or overrides the defaults below."""

    def __init__(self, workdir: Path, *, host: str, db_url: str, exchange: str, topic: str,
                 driver: str = "xenapi", backend: str | None = None,
                 sim_url: str | None = None, notify_topic: str | None = None,
                 transport_url: str = RABBIT, options: Sections | None = None):
        self.host = host
        self.backend = backend
        self.db_url = db_url
        self.exchange = exchange
        self.topic = topic
        self.log_file = workdir / f"{host}.log"
        self.stderr_file = workdir / f"{host}.stderr"
        self.config = workdir / f"{host}.conf"
        sections: dict[str, dict[str, Any]] = {
            "DEFAULT": {
                "host": host, "compute_driver": driver, "concurrency_backend": backend,
                "transport_url": transport_url, "control_exchange": exchange,
                "compute_topic": topic,
                "report_interval": 5, "sync_power_state_interval": 600,
                "graceful_shutdown_timeout": 10, "log_file": self.log_file, "debug": "true",
            },
            "database": {"connection": db_url},
        }
        if sim_url is not None:
            sections["xenserver"] = {
                "connection_url": sim_url, "connection_username": USER,
                "connection_password": PASSWORD, "connection_concurrent": 5,
                "login_timeout": 5,
            }
        sections["oslo_messaging_notifications"] = (
            {"driver": "messagingv2", "topics": notify_topic} if notify_topic
            else {"driver": "noop"})
        write_config(self.config, merge_sections(sections, options))
        self.proc: subprocess.Popen | None = None

    def db_sync(self) -> str:
        return db_sync(self.config)

    def start(self) -> None:
        # A session of its own: the launcher signals its process group.
        # stderr to a file: a pipe nobody reads could fill and block it.
        with open(self.stderr_file, "ab") as err:
            self.proc = subprocess.Popen(
                [str(BIN / "compute-agent"), "--config-file", str(self.config)],
                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)

    def wait_serving(self, api: ComputeAPI, timeout: float = START_LIMIT_S) -> dict:
        """Poll ping until the agent answers (returned); fail if it exits."""
        def pong() -> dict | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"agent {self.host} exited {self.proc.returncode}: "
                            f"{tail(self.stderr_file, 2000)}\n{tail(self.log_file)}")
            try:
                return api.ping(self.host, timeout=2)
            except exceptions.ComputeAgentError:
                return None

        return wait_until(pong, timeout, f"agent {self.host} to answer ping", 0.1)

    def stop(self, wait: float = 30) -> int | None:
        """SIGTERM (graceful), SIGKILL after ``wait`` s; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            kill_group(self.proc, signal.SIGTERM, wait=wait)
        return self.proc.returncode

    def kill9(self) -> None:
        assert self.proc is not None
        kill_group(self.proc, signal.SIGKILL)

    def log_tail(self, n: int = 4000) -> str:
        return tail(self.log_file, n)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class ErrorLog(logging.Handler):
    """Collects ERROR records of a logger it is added to (the simulator logs
    an internal error with its traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

