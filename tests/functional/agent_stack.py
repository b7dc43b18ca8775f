"""One agent stack for the functional tests that drive a single agent end
to end: a ``xapi-sim`` process, a ``compute-agent`` process (XenAPI driver)
on it with a new, migrated database of its own, a ComputeAPI client on an
exchange and topics of their own (rpc_client.Rpc) and a Database on the
agent's database for the test to look at::

    with AgentStack(tmp_path, "vol", notifications=True, options={...}) as stack:
        stack.start()  # the simulator, then the agent, until it answers ping
        stack.api.build_instance(stack.host, body)

A test that prepares dom0 before the agent starts starts ``stack.sim``
itself first: start() leaves a running simulator alone; one that starts the
agent with dom0 down calls ``start(with_sim=False)``. Leaving the block (or
close()) kills the agent, stops the simulator, deletes the broker's queues
and drops the database; what the constructor made before it failed is
undone as well.

The variations some tests need: another ``driver`` (``fake``, or
``libvirt`` with its options: no simulator then, ``stack.sim`` is None),
the agent's ``concurrency`` backend, a RabbitMQ node of the test's own
(``rabbit_url``), and ``manage_db_sync`` for a database migrated by the
real ``compute-agent-manage db sync`` on the agent's config rather than
in-process.

It builds on harness.py (the processes), rpc_client.py (the client) and
db_fixtures.py (the database), which it keeps apart: harness.py needs no
database.
"""

from __future__ import annotations

import contextlib
import uuid as uuidlib
from pathlib import Path
from typing import Any

from compute_agent.db.api import Database
from compute_agent.rpc.rpcapi import ComputeAPI
from tests.functional.db_fixtures import make_database_url, make_migrated_database_url
from tests.functional.harness import RABBIT, TASK_DURATION, AgentProcess, Sections, SimProcess
from tests.functional.rpc_client import Notifications, Rpc


class AgentStack:
    """``name`` names the exchange (``ca_<name>_<tag>``) and the agent's
    host (``ca-<name>-<random>``); ``backend`` the database (sqlite,
    postgresql, mysql); ``options`` (group -> option -> value) add to or
    override AgentProcess's defaults; ``notifications`` has the agent send
    them and ``notes`` collect them. See the module's docstring for the
    rest."""

    sim: SimProcess | None  # the XenAPI driver's dom0; None with another driver

    def __init__(self, workdir: Path, name: str, *, backend: str = "sqlite",
                 driver: str = "xenapi", concurrency: str | None = None,
                 task_duration: float = TASK_DURATION, notifications: bool = False,
                 rpc_timeout: int = 15, rabbit_url: str = RABBIT,
                 manage_db_sync: bool = False, options: Sections | None = None):
        self.pong: dict = {}  # the agent's answer to start()'s ping
        # Undone in reverse: the agent first, the database last.
        self._undo = contextlib.ExitStack()
        try:
            make_db = make_database_url if manage_db_sync else make_migrated_database_url
            self.db_url, drop_db = make_db(backend)
            self._undo.callback(drop_db)
            self.host = f"ca-{name}-{uuidlib.uuid4().hex[:10]}"
            self.sim = None
            if driver == "xenapi":
                # Named after the host: two stacks may share a workdir.
                self.sim = SimProcess(workdir, f"{self.host}.sim", task_duration=task_duration)
                self._undo.callback(self.sim.stop)
            self.rpc = Rpc(f"ca_{name}", with_notifications=notifications, timeout=rpc_timeout,
                           url=rabbit_url)
            self._undo.callback(self.rpc.close)
            self.rpc.hosts.append(self.host)
            self.db = Database(self.db_url)
            self._undo.callback(self.db.dispose)
            self.agent = AgentProcess(
                workdir, host=self.host, db_url=self.db_url, driver=driver, backend=concurrency,
                sim_url=self.sim.url if self.sim else None, exchange=self.rpc.exchange,
                topic=self.rpc.topic, notify_topic=self.rpc.notify_topic,
                transport_url=rabbit_url, options=options)
            self._undo.callback(self._kill_agent)
            if manage_db_sync:
                self.agent.db_sync()
        except BaseException:
            self._undo.close()
            raise

    @property
    def api(self) -> ComputeAPI:
        return self.rpc.api

    @property
    def notes(self) -> Notifications:
        return self.rpc.notes

    def start(self, with_sim: bool = True) -> AgentStack:
        """Start the simulator (unless it runs, or ``with_sim`` is false) and
        the agent; return once the agent answers ping."""
        if with_sim and self.sim is not None and not self.sim.running:
            self.sim.start()
        self.agent.start()
        self.pong = self.agent.wait_serving(self.api)
        return self

    def _kill_agent(self) -> None:
        # No graceful stop at the end (the tests of it stop it themselves): quicker.
        if self.agent.proc is not None:
            self.agent.kill9()

    def close(self) -> None:
        self._undo.close()

    def __enter__(self) -> AgentStack:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
