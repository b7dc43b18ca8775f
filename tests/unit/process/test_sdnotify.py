"""sd_notify protocol: real datagram sockets owned by the test stand in for systemd."""

from __future__ import annotations

import os
import socket
import threading
import uuid

import pytest

from compute_agent.process import sdnotify


@pytest.fixture
def notify_socket(tmp_path):
    """A bound AF_UNIX datagram socket, as systemd's notify socket; yields (env value, sock)."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    yield path, sock
    sock.close()


def recv_fields(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def assert_nothing_pending(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        with pytest.raises(BlockingIOError):
            sock.recv(4096)
    finally:
        sock.setblocking(True)


class TestAddress:
    def test_path_is_used_as_is(self):
        assert sdnotify.socket_address("/run/systemd/notify") == "/run/systemd/notify"

    def test_at_sign_means_abstract_namespace(self):
        assert sdnotify.socket_address("@foo/bar") == "\0foo/bar"

    def test_other_schemes_are_unsupported(self):
        assert sdnotify.socket_address("vsock:2:1234") is None
        assert sdnotify.socket_address("relative/path") is None


class TestWatchdogPeriod:
    def test_unset(self):
        assert sdnotify.watchdog_period({}, 1) is None

    def test_usec_to_seconds(self):
        assert sdnotify.watchdog_period({"WATCHDOG_USEC": "30000000"}, 1) == 30.0

    def test_pid_must_match_when_given(self):
        env = {"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "42"}
        assert sdnotify.watchdog_period(env, 42) == 1.0
        assert sdnotify.watchdog_period(env, 43) is None

    @pytest.mark.parametrize("usec", ["0", "-5", "abc", ""])
    def test_invalid_or_zero_disables(self, usec):
        assert sdnotify.watchdog_period({"WATCHDOG_USEC": usec}, 1) is None

    def test_invalid_pid_disables(self):
        assert sdnotify.watchdog_period({"WATCHDOG_USEC": "5", "WATCHDOG_PID": "x"}, 1) is None


class TestFromEnvironment:
    def test_captures_and_unsets(self):
        env = {
            "NOTIFY_SOCKET": "/run/x",
            "WATCHDOG_USEC": "4000000",
            "WATCHDOG_PID": str(os.getpid()),
            "OTHER": "kept",
        }
        n = sdnotify.Notifier.from_environment(unset=True, environ=env)
        assert n.enabled
        assert n.watchdog_interval == 4.0
        assert env == {"OTHER": "kept"}

    def test_keeps_environment_by_default(self):
        env = {"NOTIFY_SOCKET": "@abc"}
        n = sdnotify.Notifier.from_environment(environ=env)
        assert n.enabled and n.watchdog_interval is None
        assert env == {"NOTIFY_SOCKET": "@abc"}

    def test_watchdog_for_another_pid_is_ignored(self):
        env = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}
        assert sdnotify.Notifier.from_environment(environ=env).watchdog_interval is None

    def test_reads_os_environ(self, monkeypatch, notify_socket):
        path, sock = notify_socket
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        n = sdnotify.Notifier.from_environment(unset=True)
        assert "NOTIFY_SOCKET" not in os.environ
        assert n.ready()
        assert recv_fields(sock) == ["READY=1"]


class TestWithoutSystemd:
    def test_every_call_is_a_noop(self):
        n = sdnotify.Notifier.from_environment(environ={})
        assert not n.enabled
        assert n.ready() is False
        assert n.stopping() is False
        assert n.reloading() is False
        assert n.watchdog() is False
        assert n.status("x") is False
        assert n.extend_timeout(1) is False
        assert n.start_watchdog() is None

    def test_unsupported_address_disables(self):
        assert not sdnotify.Notifier("vsock:1:2").enabled


class TestMessages:
    def test_ready_with_status(self, notify_socket):
        path, sock = notify_socket
        assert sdnotify.Notifier(path).ready(status="serving compute.h1")
        assert recv_fields(sock) == ["READY=1", "STATUS=serving compute.h1"]

    def test_stopping(self, notify_socket):
        path, sock = notify_socket
        sdnotify.Notifier(path).stopping()
        assert recv_fields(sock) == ["STOPPING=1"]

    def test_reloading_carries_monotonic_usec(self, notify_socket):
        path, sock = notify_socket
        sdnotify.Notifier(path).reloading()
        fields = recv_fields(sock)
        assert fields[0] == "RELOADING=1"
        key, value = fields[1].split("=")
        assert key == "MONOTONIC_USEC" and int(value) > 0

    def test_watchdog_and_extend_timeout(self, notify_socket):
        path, sock = notify_socket
        n = sdnotify.Notifier(path)
        n.watchdog()
        n.extend_timeout(2.5)
        assert recv_fields(sock) == ["WATCHDOG=1"]
        assert recv_fields(sock) == ["EXTEND_TIMEOUT_USEC=2500000"]

    def test_status_newlines_cannot_inject_fields(self, notify_socket):
        path, sock = notify_socket
        sdnotify.Notifier(path).status("line one\nREADY=1")
        assert recv_fields(sock) == ["STATUS=line one READY=1"]

    def test_abstract_namespace_socket(self):
        name = f"compute-agent-test-{uuid.uuid4().hex}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind("\0" + name)
            sock.settimeout(10)
            assert sdnotify.Notifier("@" + name).ready()
            assert recv_fields(sock) == ["READY=1"]

    def test_missing_socket_is_reported_not_raised(self, tmp_path, caplog):
        n = sdnotify.Notifier(str(tmp_path / "gone.sock"))
        assert n.enabled
        assert n.ready() is False
        assert "READY=1" in caplog.text


class TestWatchdog:
    def test_pings_at_half_the_period(self, notify_socket):
        path, sock = notify_socket
        n = sdnotify.Notifier(path, watchdog_usec=100_000)
        dog = n.start_watchdog()
        try:
            assert dog is not None and dog.interval == 0.05
            assert recv_fields(sock) == ["WATCHDOG=1"]
            assert recv_fields(sock) == ["WATCHDOG=1"]
        finally:
            dog.stop()
        assert not dog.alive

    def test_unhealthy_withholds_ping(self, notify_socket):
        path, sock = notify_socket
        probed = threading.Semaphore(0)

        def healthy() -> bool:
            probed.release()
            return False

        dog = sdnotify.Notifier(path, watchdog_usec=20_000).start_watchdog(healthy)
        try:
            for _ in range(3):
                assert probed.acquire(timeout=10)
        finally:
            dog.stop()
        assert_nothing_pending(sock)

    def test_failing_probe_counts_as_unhealthy_and_thread_survives(self, notify_socket):
        path, sock = notify_socket
        calls = threading.Semaphore(0)
        state = {"n": 0}

        def probe() -> bool:
            state["n"] += 1
            calls.release()
            if state["n"] == 1:
                raise RuntimeError("probe broke")
            return True

        dog = sdnotify.Notifier(path, watchdog_usec=20_000).start_watchdog(probe)
        try:
            assert calls.acquire(timeout=10)
            assert recv_fields(sock) == ["WATCHDOG=1"]  # sent after the second probe
            assert dog.alive
        finally:
            dog.stop()

    def test_no_watchdog_without_socket(self):
        assert sdnotify.Notifier(None, watchdog_usec=1_000_000).start_watchdog() is None
