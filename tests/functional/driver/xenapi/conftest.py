"""Fixtures for the XenAPI driver's functional tests: a real simulator over
HTTP(S), the driver configured through oslo.config against it, a recording
TaskListener, and an independent SDK session to check dom0 from outside."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import XenAPI
from xenapi_fixtures import PASSWORD, USER, RecordingListener

from compute_agent.conf import CONF
from compute_agent.driver.xenapi.driver import XenAPIDriver
from tests.functional.harness import running_simulator, sdk_session
from xapisim.control_client import SimControl
from xapisim.server import Simulator


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with running_simulator(task_duration=0.05) as s:
        yield s


@pytest.fixture
def ctl(sim: Simulator) -> SimControl:
    """The simulator's control API (fault injection) over HTTP."""
    return SimControl(sim.url, ca_file=sim.ca_file)


@pytest.fixture
def xapi(sim: Simulator) -> Iterator[XenAPI.Session]:
    """An SDK session of its own, to look at dom0 independently of the driver."""
    with sdk_session(sim.master_url, "driver-tests") as session:
        yield session


@pytest.fixture
def conf_overrides() -> Iterator[Callable[..., None]]:
    """set(group, **options): CONF overrides undone after the test."""
    done: list[tuple[str, str]] = []

    def set_(group: str, **opts: Any) -> None:
        for key, value in opts.items():
            CONF.set_override(key, value, group=group)
            done.append((key, group))

    try:
        yield set_
    finally:
        for key, group in done:
            CONF.clear_override(key, group=group)


@pytest.fixture
def make_driver(conf_overrides) -> Iterator[Callable[..., XenAPIDriver]]:
    """make_driver(url, listener=None, host=None, init=True, **xenserver_opts)."""
    drivers: list[XenAPIDriver] = []

    def make(url: str, listener: Any = None, host: str | None = None, init: bool = True,
             tasks: dict[str, Any] | None = None, **xs: Any) -> XenAPIDriver:
        opts = {"connection_url": url, "connection_username": USER,
                "connection_password": PASSWORD, "login_timeout": 5}
        opts.update(xs)
        conf_overrides("xenserver", **opts)
        if tasks:
            conf_overrides("tasks", **tasks)
        drv = XenAPIDriver(CONF, task_listener=listener)
        drivers.append(drv)
        if init:
            drv.init_host(host or f"agent-{uuidlib.uuid4().hex[:8]}")
        return drv

    try:
        yield make
    finally:
        for drv in drivers:
            drv.cleanup_host()


@pytest.fixture
def listener() -> RecordingListener:
    return RecordingListener()


@pytest.fixture
def driver(sim, make_driver, listener) -> XenAPIDriver:
    return make_driver(sim.url, listener=listener)
