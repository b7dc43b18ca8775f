"""The real ``xapi-sim`` console script as a subprocess: the URL on its
first line, the official SDK against it, logs without secrets, clean exit
on SIGTERM/SIGINT, bad arguments, TLS and persistence across restarts."""

from __future__ import annotations

import os
import pathlib
import queue
import signal
import socket
import ssl
import subprocess
import sys
import threading
import urllib.request
import xmlrpc.client
from collections.abc import Iterator

import pytest
import XenAPI

SCRIPT = pathlib.Path(sys.executable).with_name("xapi-sim")
PASSWORD = "s3cret-pw"


class Cli:
    """One xapi-sim process; its stdout lines and stderr read by threads."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen(
            [str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.out: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out.put),
                             daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.err.append),
                             daemon=True),
        ]
        for t in self._threads:
            t.start()
        self.lines = [self.readline(20)]
        self.url = self.lines[0].split()[2]

    @staticmethod
    def _pump(stream, sink) -> None:
        for line in stream:
            sink(line.rstrip("\n"))

    def readline(self, timeout: float) -> str:
        try:
            return self.out.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise AssertionError("xapi-sim printed nothing in time: " +
                                 "\n".join(self.err)) from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> tuple[int, str]:
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        for t in self._threads:
            t.join(5)
        return self.proc.returncode, "\n".join(self.err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def cli() -> Iterator[callable]:
    started: list[Cli] = []

    def start(*args: str) -> Cli:
        c = Cli(*args)
        started.append(c)
        return c

    yield start
    for c in started:
        c.kill()


def login(url: str, password: str = PASSWORD, **kw) -> XenAPI.Session:
    s = XenAPI.Session(url, **kw)
    s.xenapi.login_with_password("root", password, "2.0", "cli-tests")
    return s


def test_serves_a_pool_logs_without_secrets_and_stops_on_sigterm(cli):
    c = cli("--listen", "127.0.0.1:0", "--hosts", "2", "--password", PASSWORD,
            "--task-duration", "0.01", "-v")
    first = c.lines[0]
    assert first.startswith("xapi-sim: serving http://127.0.0.1:")
    assert first.endswith("(pool of 2 hosts: 127.0.0.1, 127.0.0.2)")
    s = login(c.url)
    x = s.xenapi
    assert len(x.host.get_all()) == 2
    with pytest.raises(XenAPI.Failure) as err:
        login(c.url, "wrong")
    assert err.value.details == ["SESSION_AUTHENTICATION_FAILED", "root",
                                 "Authentication failure"]
    session_ref = s._session
    urllib.request.urlopen(f"{c.url}/rrd_updates?start=-10&session_id={session_ref}").read()
    x.session.logout()
    status, err_text = c.stop()
    assert status == 0
    assert "POST /RPC2" in err_text and "GET /rrd_updates" in err_text
    assert PASSWORD not in err_text
    assert session_ref not in err_text


def test_sigint_stops_it_cleanly_too(cli):
    c = cli("--listen", "127.0.0.1:0")
    assert c.stop(signal.SIGINT)[0] == 0


def test_bad_arguments_and_busy_port(cli, tmp_path):
    for args in (["--listen", "localhost:80"], ["--listen", "127.0.0.1"], ["--hosts", "0"],
                 ["--persist"]):
        result = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True,
                                timeout=30)
        assert result.returncode == 2, args
        assert "xapi-sim" in result.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([str(SCRIPT), "--listen", f"127.0.0.1:{port}"],
                                capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "cannot listen" in result.stderr


def test_tls_prints_the_ca_to_trust(cli, tmp_path):
    c = cli("--listen", "127.0.0.1:0", "--tls", "--state-dir", str(tmp_path / "state"),
            "--password", PASSWORD)
    assert c.url.startswith("https://127.0.0.1:")
    ca = c.readline(10).split("CA certificate ")[1]
    assert pathlib.Path(ca).is_file() and ca.startswith(str(tmp_path))
    context = ssl.create_default_context(cafile=ca)
    s = login(c.url, transport=xmlrpc.client.SafeTransport(context=context))
    assert s.xenapi.pool.get_all()
    s.xenapi.session.logout()
    assert c.stop()[0] == 0


def test_persist_keeps_objects_across_restarts(cli, tmp_path):
    state = str(tmp_path / "state")
    args = ("--listen", "127.0.0.1:0", "--state-dir", state, "--persist", "--password", PASSWORD)
    c = cli(*args)
    s = login(c.url)
    net = s.xenapi.network.create({"name_label": "kept", "name_description": "", "MTU": "1500",
                                   "other_config": {}})
    uuid = s.xenapi.network.get_uuid(net)
    assert c.stop()[0] == 0
    assert os.path.exists(os.path.join(state, "xapi-db.json"))
    c = cli(*args)
    s = login(c.url)
    assert s.xenapi.network.get_name_label(s.xenapi.network.get_by_uuid(uuid)) == "kept"
    assert c.stop()[0] == 0
