"""Fixtures of the end-to-end tests: real ``xapi-sim`` and ``compute-agent``
processes, real RabbitMQ, and SQLite, PostgreSQL and MariaDB databases
migrated by ``compute-agent-manage db sync``. See tests/functional/harness.py
for the parts.

``matrix``     (module) one simulator and six agents on it, one per
               (database, concurrency backend) pair, each on its own new
               database; ``matrix[("sqlite", "threading")]`` is a Stack.
``make_stack`` (function) a factory for a simulator and an agent of their
               own, for tests that stop the simulator.
``pair``       (module) two simulators, one agent on each, both on one
               PostgreSQL database (threading and eventlet): what the
               client CLI's scheduler chooses between.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from compute_agent.db.api import Database
from compute_agent.rpc.rpcapi import ComputeAPI
from tests.functional.db_fixtures import make_database_url
from tests.functional.harness import (
    RABBIT,
    AgentProcess,
    Notifications,
    Rpc,
    SimProcess,
    tail,
    write_config,
)

RPC_PREFIX = "ca_e2emod"

DATABASES = ("sqlite", "postgresql", "mysql")
BACKENDS = ("threading", "eventlet")


@dataclass
class Stack:
    """One agent with everything it talks to."""

    name: str
    sim: SimProcess
    agent: AgentProcess
    api: ComputeAPI
    db: Database
    notes: Notifications

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


def _start_agents(agents: list[AgentProcess], rpc: Rpc, cleanups: _Cleanups) -> None:
    """db sync each agent's database, start all agents at once, wait for
    every one to answer ping (in parallel: start-up is the slow part)."""
    with ThreadPoolExecutor(max_workers=len(agents)) as pool:
        list(pool.map(lambda a: a.db_sync(), agents))
    cleanups.add(lambda: stop_all(agents))
    for agent in agents:
        agent.start()
    with ThreadPoolExecutor(max_workers=len(agents)) as pool:
        for pong in pool.map(lambda a: a.wait_serving(rpc.api), agents):
            assert pong["driver"] == "XenAPIDriver", pong


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, str], Stack]]:
    workdir = tmp_path_factory.mktemp("e2e-matrix")
    tag = uuidlib.uuid4().hex[:10]
    cleanups = _Cleanups()
    try:
        sim = SimProcess(workdir)
        cleanups.add(sim.stop)
        sim.start()
        rpc = Rpc(RPC_PREFIX, tag, with_notifications=True)
        cleanups.add(rpc.close)
        stacks: dict[tuple[str, str], Stack] = {}
        agents = []
        for database in DATABASES:
            for backend in BACKENDS:
                url = _new_database(database, cleanups)
                agent = AgentProcess(
                    workdir, host=f"e2e-{database}-{backend}-{tag}", backend=backend,
                    db_url=url, sim_url=sim.url, exchange=rpc.exchange, topic=rpc.topic,
                    notify_topic=rpc.notify_topic)
                rpc.hosts.append(agent.host)
                agents.append(agent)
                db = Database(url)
                cleanups.add(db.dispose)
                stacks[(database, backend)] = Stack(f"{database}-{backend}", sim, agent,
                                                    rpc.api, db, rpc.notes)
        _start_agents(agents, rpc, cleanups)
        yield stacks
    finally:
        cleanups.run()


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """make_stack(database="sqlite", backend="threading") -> a Stack with a
    simulator of its own (the test may stop it)."""
    cleanups = _Cleanups()

    def make(database: str = "sqlite", backend: str = "threading") -> Stack:
        tag = uuidlib.uuid4().hex[:10]
        sim = SimProcess(tmp_path, name=f"sim-{tag}")
        cleanups.add(sim.stop)
        sim.start()
        rpc = Rpc(RPC_PREFIX, tag, with_notifications=False)
        cleanups.add(rpc.close)
        url = _new_database(database, cleanups)
        agent = AgentProcess(tmp_path, host=f"e2e-own-{database}-{backend}-{tag}",
                             backend=backend, db_url=url, sim_url=sim.url,
                             exchange=rpc.exchange, topic=rpc.topic)
        rpc.hosts.append(agent.host)
        db = Database(url)
        cleanups.add(db.dispose)
        _start_agents([agent], rpc, cleanups)
        return Stack(f"{database}-{backend}", sim, agent, rpc.api, db, rpc.notes)

    try:
        yield make
    finally:
        cleanups.run()


@dataclass
class Pair:
    """Two agents (two dom0s) sharing one database and one RPC topic."""

    sims: list[SimProcess]
    agents: list[AgentProcess]
    rpc: Rpc
    db: Database
    db_url: str
    workdir: Path

    def client_config(self) -> Path:
        """A config file for compute-agent-client: transport, exchange,
        topic and the shared database."""
        return write_config(self.workdir / "client.conf", {
            "DEFAULT": {"transport_url": RABBIT, "control_exchange": self.rpc.exchange,
                        "compute_topic": self.rpc.topic, "service_down_time": 60},
            "database": {"connection": self.db_url},
        })


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    workdir = tmp_path_factory.mktemp("e2e-pair")
    tag = uuidlib.uuid4().hex[:10]
    cleanups = _Cleanups()
    try:
        rpc = Rpc(RPC_PREFIX, tag)
        cleanups.add(rpc.close)
        url = _new_database("postgresql", cleanups)
        sims, agents = [], []
        for i, backend in enumerate(BACKENDS):
            sim = SimProcess(workdir, name=f"sim{i}")
            cleanups.add(sim.stop)
            sim.start()
            sims.append(sim)
            agent = AgentProcess(workdir, host=f"e2e-cli{i}-{backend}-{tag}", backend=backend,
                                 db_url=url, sim_url=sim.url, exchange=rpc.exchange,
                                 topic=rpc.topic,
                                 options={"DEFAULT": {"report_interval": 1}})
            rpc.hosts.append(agent.host)
            agents.append(agent)
        # One database: db sync once (the second would be a no-op).
        agents[0].db_sync()
        cleanups.add(lambda: stop_all(agents))
        for agent in agents:
            agent.start()
        for agent in agents:
            agent.wait_serving(rpc.api)
        db = Database(url)
        cleanups.add(db.dispose)
        yield Pair(sims, agents, rpc, db, url, workdir)
    finally:
        cleanups.run()
