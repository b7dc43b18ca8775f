"""Shared fixtures for the simulator's functional tests: a real simulator
on a free port, and the official XenAPI SDK logged in to it over HTTP.

Other helpers add fixtures here; keep the existing ones' behaviour."""

from __future__ import annotations

import http.client
import json
import urllib.parse
import xmlrpc.client
from collections.abc import Iterator

import pytest
import XenAPI

from tests.functional.harness import running_simulator, sdk_session
from xapisim.server import Simulator

USER = "root"
PASSWORD = "password"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A started simulator (one host, 0.05 s task duration), stopped after."""
    with running_simulator(task_duration=0.05) as s:
        yield s


@pytest.fixture
def xapi(sim: Simulator) -> Iterator[XenAPI.Session]:
    """The official SDK, logged in over HTTP to ``sim``."""
    with sdk_session(sim.url, "xapisim-tests", USER, PASSWORD) as session:
        yield session


class JsonRpcClient:
    """A plain JSON-RPC client (1.0 or 2.0) on one keep-alive connection;
    returns the decoded answer document untouched."""

    def __init__(self, url: str):
        u = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        self.next_id = 0

    def post(self, body: bytes, path: str = "/jsonrpc") -> tuple[int, bytes]:
        self.conn.request("POST", path, body, {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def call(self, method: str, *params: object, version: str = "2.0") -> dict:
        self.next_id += 1
        doc: dict = {"method": method, "params": list(params), "id": self.next_id}
        if version == "2.0":
            doc["jsonrpc"] = "2.0"
        status, body = self.post(json.dumps(doc).encode())
        assert status == 200, (method, status, body[:300])
        return json.loads(body)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def jsonrpc(sim: Simulator) -> Iterator[JsonRpcClient]:
    """A JSON-RPC client for ``sim`` (not logged in)."""
    client = JsonRpcClient(sim.url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def rawxml(sim: Simulator) -> Iterator[xmlrpc.client.ServerProxy]:
    """A raw ``xmlrpc.client.ServerProxy`` for ``sim``: envelopes come back
    as they are, with no SDK re-login on SESSION_INVALID."""
    proxy = xmlrpc.client.ServerProxy(sim.url)
    try:
        yield proxy
    finally:
        proxy("close")()
