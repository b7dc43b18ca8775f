"""Fixtures of the end-to-end tests: real ``compute-agent`` processes on
either driver (XenAPI on real ``xapi-sim`` processes; libvirt on its
in-process ``test:///<node file>`` hypervisor), real RabbitMQ, and SQLite,
PostgreSQL and MariaDB databases migrated by ``compute-agent-manage db
sync``. See tests/functional/harness.py for the parts and hypervisor.py for
how each driver's hypervisor is read.

``matrix``     (module) agents per (driver, database, concurrency backend),
               each on its own new database: one simulator and six XenAPI
               agents on it, and three libvirt agents, each on a node file
               of its own; ``matrix[("xenapi", "sqlite", "threading")]`` is
               a Stack. A driver's agents start together when a test first
               asks for one of them.
``make_stack`` (function) a factory for a simulator and an XenAPI agent of
               their own (tests/functional/agent_stack.py), for tests that
               stop the simulator.
``pair``       (module) two agents of one driver (indirect parameter,
               XenAPI unless told), each on a hypervisor of its own, both on
               one PostgreSQL database (threading and eventlet): what the
               client CLI's scheduler chooses between.

The matrix and the pair are not AgentStacks: their agents share a
simulator, an RPC client or a database, where an AgentStack has one of each.
"""

from __future__ import annotations

import contextlib
import uuid as uuidlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from compute_agent.db.api import Database
from compute_agent.rpc.rpcapi import ComputeAPI
from tests.functional.agent_stack import AgentStack
from tests.functional.db_fixtures import make_database_url
from tests.functional.harness import RABBIT, AgentProcess, SimProcess, tail, write_config
from tests.functional.libvirt_node import libvirt_agent_options, node_xml
from tests.functional.rpc_client import Notifications, Rpc

from .hypervisor import HypervisorView, LibvirtView, XenAPIView

RPC_PREFIX = "ca_e2emod"

DATABASES = ("sqlite", "postgresql", "mysql")
BACKENDS = ("threading", "eventlet")
# The agents of the matrix: XenAPI on every pair; libvirt (whose runs are
# quick) on one agent per database, both backends among them.
COMBOS = {
    "xenapi": [(d, b) for d in DATABASES for b in BACKENDS],
    "libvirt": [("sqlite", "eventlet"), ("postgresql", "threading"), ("mysql", "eventlet")],
}
DRIVER_CLASSES = {"xenapi": "XenAPIDriver", "libvirt": "LibvirtDriver"}


@dataclass
class Stack:
    """One agent with everything it talks to."""

    name: str
    sim: SimProcess | None  # XenAPI only: the dom0 the agent drives
    agent: AgentProcess
    api: ComputeAPI
    db: Database
    notes: Notifications
    hypervisor: HypervisorView

    @property
    def host(self) -> str:
        return self.agent.host

    def log_tail(self) -> str:
        return tail(self.agent.log_file)


class _Cleanups:
    def __init__(self) -> None:
        self.items: list[Callable[[], object]] = []

    def add(self, fn: Callable[[], object]) -> None:
        self.items.append(fn)

    def run(self) -> None:
        errors = []
        for fn in reversed(self.items):
            try:
                fn()
            except Exception as exc:  # every cleanup runs; report the first failure
                errors.append(exc)

        self.items.clear()
        if errors:
            raise errors[0]


def _new_database(database: str, cleanups: _Cleanups) -> str:
    url, drop = make_database_url(database)
    cleanups.add(drop)
    return url


def stop_all(agents: list[AgentProcess]) -> None:
    """SIGTERM every agent at once (each takes seconds to drain its RPC
    consumers) and wait for them all."""
    with ThreadPoolExecutor(max_workers=len(agents)) as pool:
        list(pool.map(lambda a: a.stop(), agents))


def _start_agents(agents: list[AgentProcess], rpc: Rpc, cleanups: _Cleanups,
                  driver: str = "xenapi") -> None:
    """db sync each agent's database, start all agents at once, wait for
    every one to answer ping (in parallel: start-up is the slow part)."""
    with ThreadPoolExecutor(max_workers=len(agents)) as pool:
        list(pool.map(lambda a: a.db_sync(), agents))
    cleanups.add(lambda: stop_all(agents))
    for agent in agents:
        agent.start()
    with ThreadPoolExecutor(max_workers=len(agents)) as pool:
        for pong in pool.map(lambda a: a.wait_serving(rpc.api), agents):
            assert pong["driver"] == DRIVER_CLASSES[driver], pong


def _libvirt_node(workdir: Path, host: str) -> tuple[Path, Path]:
    """A test:/// node file for ``host``'s agent and its pool directory."""
    pool_dir = workdir / f"{host}.pool"
    pool_dir.mkdir()
    node = workdir / f"{host}.node.xml"
    node.write_text(node_xml(host, {}, [], pool_dir))
    return node, pool_dir


Combo = tuple[str, str, str]  # (driver, database, backend)


class Matrix:
    """The matrix's stacks by (driver, database, backend); a driver's
    agents (and its simulator) start on the first request for one."""

    def __init__(self, workdir: Path, cleanups: _Cleanups):
        self.workdir = workdir
        self.cleanups = cleanups
        self.tag = uuidlib.uuid4().hex[:10]
        self.rpc = Rpc(RPC_PREFIX, self.tag, with_notifications=True)
        cleanups.add(self.rpc.close)
        self.stacks: dict[Combo, Stack] = {}

    def __getitem__(self, combo: Combo) -> Stack:
        driver = combo[0]
        if not any(key[0] == driver for key in self.stacks):
            self._start(driver)
        return self.stacks[combo]

    def _start(self, driver: str) -> None:
        rpc, tag, workdir = self.rpc, self.tag, self.workdir
        sim = None
        if driver == "xenapi":
            sim = SimProcess(workdir)
            self.cleanups.add(sim.stop)
            sim.start()
        agents, stacks = [], {}
        for database, backend in COMBOS[driver]:
            url = _new_database(database, self.cleanups)
            host = f"e2e-{driver}-{database}-{backend}-{tag}"
            common = {"host": host, "backend": backend, "db_url": url,
                      "exchange": rpc.exchange, "topic": rpc.topic,
                      "notify_topic": rpc.notify_topic}
            view: HypervisorView
            if sim is not None:
                agent = AgentProcess(workdir, sim_url=sim.url, **common)
                view = XenAPIView(sim, host)
            else:
                node, pool_dir = _libvirt_node(workdir, host)
                agent = AgentProcess(workdir, driver="libvirt",
                                     options=libvirt_agent_options(node), **common)
                view = LibvirtView(rpc.api, host, pool_dir)
            rpc.hosts.append(host)
            agents.append(agent)
            db = Database(url)
            self.cleanups.add(db.dispose)
            stacks[(driver, database, backend)] = Stack(
                f"{driver}-{database}-{backend}", sim, agent, rpc.api, db, rpc.notes, view)
        _start_agents(agents, rpc, self.cleanups, driver)
        self.stacks.update(stacks)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    cleanups = _Cleanups()
    try:
        yield Matrix(tmp_path_factory.mktemp("e2e-matrix"), cleanups)
    finally:
        cleanups.run()


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """make_stack(database="sqlite", backend="threading") -> a Stack with a
    simulator of its own (the test may stop it)."""
    with contextlib.ExitStack() as made:  # each stack closed after the test
        def make(database: str = "sqlite", backend: str = "threading") -> Stack:
            own = made.enter_context(AgentStack(
                tmp_path, "e2eown", backend=database, concurrency=backend,
                manage_db_sync=True)).start()
            assert own.pong["driver"] == DRIVER_CLASSES["xenapi"], own.pong
            return Stack(f"{database}-{backend}", own.sim, own.agent, own.api, own.db,
                         own.notes, XenAPIView(own.sim, own.host))

        yield make


@dataclass
class Pair:
    """Two agents (two hypervisors) sharing one database and one RPC topic."""

    driver: str
    sims: list[SimProcess]  # XenAPI: the agents' dom0s, in order
    agents: list[AgentProcess]
    rpc: Rpc
    db: Database
    db_url: str
    workdir: Path
    views: list[HypervisorView]  # each agent's hypervisor, in order

    def client_config(self) -> Path:
        """A config file for compute-agent-client: transport, exchange,
        topic and the shared database."""
        return write_config(self.workdir / "client.conf", {
            "DEFAULT": {"transport_url": RABBIT, "control_exchange": self.rpc.exchange,
                        "compute_topic": self.rpc.topic, "service_down_time": 60},
            "database": {"connection": self.db_url},
        })


@pytest.fixture(scope="module")
def pair(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Parametrize indirectly with the driver ("xenapi" unless told)."""
    driver = getattr(request, "param", "xenapi")
    workdir = tmp_path_factory.mktemp(f"e2e-pair-{driver}")
    tag = uuidlib.uuid4().hex[:10]
    cleanups = _Cleanups()
    try:
        rpc = Rpc(RPC_PREFIX, tag)
        cleanups.add(rpc.close)
        url = _new_database("postgresql", cleanups)
        sims, agents, views = [], [], []
        for i, backend in enumerate(BACKENDS):
            host = f"e2e-cli{i}-{driver}-{backend}-{tag}"
            common = {"host": host, "backend": backend, "db_url": url,
                      "exchange": rpc.exchange, "topic": rpc.topic}
            options: dict = {"DEFAULT": {"report_interval": 1}}
            view: HypervisorView
            if driver == "xenapi":
                sim = SimProcess(workdir, name=f"sim{i}")
                cleanups.add(sim.stop)
                sim.start()
                sims.append(sim)
                agent = AgentProcess(workdir, sim_url=sim.url, options=options, **common)
                view = XenAPIView(sim, host)
            else:
                node, pool_dir = _libvirt_node(workdir, host)
                agent = AgentProcess(workdir, driver="libvirt",
                                     options={**options, **libvirt_agent_options(node)},
                                     **common)
                view = LibvirtView(rpc.api, host, pool_dir)
            rpc.hosts.append(host)
            agents.append(agent)
            views.append(view)
        # One database: db sync once (the second would be a no-op).
        agents[0].db_sync()
        cleanups.add(lambda: stop_all(agents))
        for agent in agents:
            agent.start()
        for agent in agents:
            assert agent.wait_serving(rpc.api)["driver"] == DRIVER_CLASSES[driver]
        db = Database(url)
        cleanups.add(db.dispose)
        yield Pair(driver, sims, agents, rpc, db, url, workdir, views)
    finally:
        cleanups.run()
