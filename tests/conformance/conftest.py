"""Fixtures for the conformance tests: the oracle, a running simulator,
raw XML-RPC and JSON-RPC clients over real HTTP, and the coverage line
printed at the end of the run (also with output captured)."""

from __future__ import annotations

import http.client
import json
import urllib.parse
import xmlrpc.client
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conformance.oracle import Oracle
from xapisim.server import Simulator

_SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:
    for line in _SUMMARY:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def summary() -> list[str]:
    """Lines to print after the run (e.g. the coverage line)."""
    return _SUMMARY


@pytest.fixture(scope="session")
def oracle() -> Oracle:
    return Oracle()


class XmlRpc:
    """Raw XML-RPC: returns the decoded ``{Status, Value|ErrorDescription}``
    envelope untouched (no SDK re-login, no type conversion)."""

    def __init__(self, url: str):
        self.proxy = xmlrpc.client.ServerProxy(url, allow_none=False)

    def envelope(self, method: str, *params: Any) -> dict[str, Any]:
        return getattr(self.proxy, method)(*params)

    def ok(self, method: str, *params: Any) -> Any:
        env = self.envelope(method, *params)
        assert env.get("Status") == "Success", f"{method}: {env}"
        return env["Value"]

    def fail(self, method: str, *params: Any) -> list[str]:
        env = self.envelope(method, *params)
        assert env.get("Status") == "Failure", f"{method} succeeded: {env}"
        return env["ErrorDescription"]


class JsonRpc:
    """A plain JSON-RPC client on one keep-alive connection."""

    def __init__(self, url: str):
        u = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        self.next_id = 0

    def post(self, body: bytes) -> tuple[int, bytes]:
        self.conn.request("POST", "/jsonrpc", body, {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def call(self, method: str, params: list[Any], version: str = "2.0") -> dict[str, Any]:
        self.next_id += 1
        doc: dict[str, Any] = {"method": method, "params": params, "id": self.next_id}
        if version == "2.0":
            doc["jsonrpc"] = "2.0"
        status, body = self.post(json.dumps(doc).encode())
        assert status == 200, (method, status, body[:200])
        answer = json.loads(body)
        assert answer.get("id") == self.next_id, answer
        return answer

    def close(self) -> None:
        self.conn.close()


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    s = Simulator(task_duration=0.0).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def xml(sim: Simulator) -> Iterator[XmlRpc]:
    client = XmlRpc(sim.url)
    try:
        yield client
    finally:
        client.proxy("close")()


@pytest.fixture(scope="module")
def session(xml: XmlRpc) -> str:
    return xml.ok("session.login_with_password", "root", "password", "2.0", "conformance")


@pytest.fixture(scope="module")
def jsonrpc(sim: Simulator) -> Iterator[JsonRpc]:
    client = JsonRpc(sim.url)
    try:
        yield client
    finally:
        client.close()
