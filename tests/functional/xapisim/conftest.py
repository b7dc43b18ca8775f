"""Shared fixtures for the simulator's functional tests: a real simulator
on a free port, and the official XenAPI SDK logged in to it over HTTP.

Other helpers add fixtures here; keep the existing ones' behaviour."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import XenAPI

from xapisim.server import Simulator

USER = "root"
PASSWORD = "password"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A started simulator (one host, 0.05 s task duration), stopped after."""
    s = Simulator(task_duration=0.05).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def xapi(sim: Simulator) -> Iterator[XenAPI.Session]:
    """The official SDK, logged in over HTTP to ``sim``."""
    session = XenAPI.Session(sim.url)
    session.xenapi.login_with_password(USER, PASSWORD, "2.0", "xapisim-tests")
    try:
        yield session
    finally:
        try:
            session.xenapi.session.logout()
        except Exception:  # the test may have restarted xapi or logged out itself
            pass
