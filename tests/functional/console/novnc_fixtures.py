"""Helpers of the console tests (a module of its own so that test modules
import it by a unique name): compute-agent-novncproxy as a subprocess, a
headless Chromium driven by Selenium, and a raw websocket client."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

from tests.functional.harness import START_LIMIT_S, kill_group, tail, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


class ProxyProcess:
    """``compute-agent-novncproxy --config-file config`` as a subprocess."""

    def __init__(self, config: Path, port: int, workdir: Path):
        self.config = config
        self.port = port
        self.stderr_file = workdir / "novncproxy.stderr"
        self.proc: subprocess.Popen | None = None

    def start(self) -> ProxyProcess:
        with open(self.stderr_file, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "compute_agent.cmd.novncproxy",
                 "--config-file", str(self.config)],
                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                env=dict(os.environ))
        wait_until(self._up, START_LIMIT_S, "the console proxy to listen", 0.05)
        return self

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"proxy exited {self.proc.returncode}: "
                                 f"{tail(self.stderr_file)}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            kill_group(self.proc, signal.SIGTERM, wait=10)


def websocket_upgrade(port: int, path: str) -> tuple[int, socket.socket]:
    """Open a websocket handshake to the proxy; the HTTP status and the
    socket (closed by the caller)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, s


def ws_read_frame(s: socket.socket) -> bytes:
    """One unmasked server frame's payload (small frames only)."""
    def recv(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            assert chunk, "proxy closed the websocket"
            data += chunk
        return data
    b1, b2 = recv(2)
    n = b2 & 0x7F
    if n == 126:
        n = int.from_bytes(recv(2), "big")
    elif n == 127:
        n = int.from_bytes(recv(8), "big")
    return recv(n)


def token_path(token: str) -> str:
    return "/websockify?" + urllib.parse.urlencode({"token": token})


def chromium():
    """A headless Chromium (Debian's, with its chromedriver), 1024x900 so
    that the whole 640x480 canvas is in view."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1024,900", "--force-device-scale-factor=1",
                "--force-color-profile=srgb", "--disable-extensions"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
