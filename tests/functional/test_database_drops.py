"""The agent's database connections dropped again and again during builds
and stops (issue 15 part 3): a real ``compute-agent`` process on
PostgreSQL and on MariaDB, a real ``xapi-sim``, real RabbitMQ.

A thread kills every connection of the agent's database twice a second
(``pg_terminate_backend``; ``KILL``) while builds and then stops run. The
agent retries what was cut off (oslo.db), records each outcome once the
database answers, and recovers what it could not; once the killing ends,
every instance settles within the bound and the database and dom0 agree
VM for VM (one VM per instance: nothing built twice).
"""

from __future__ import annotations

import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from compute_agent import exceptions
from tests.functional.agent_stack import AgentStack
from tests.functional.db_fixtures import MYSQL_ADMIN_URL, POSTGRES_ADMIN_URL
from tests.functional.e2e.stack import assert_dom0_matches_db
from tests.functional.harness import SETTLE_S, wait_until

BUILDS = 5
KILL_EVERY_S = 0.5

pytestmark = pytest.mark.timeout(180)


class ConnectionKiller:
    """Kills every connection to one database, every KILL_EVERY_S."""

    def __init__(self, backend: str, db_url: str):
        self.name = make_url(db_url).database
        admin = POSTGRES_ADMIN_URL if backend == "postgresql" else MYSQL_ADMIN_URL
        self.engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT",
                                       poolclass=sa.pool.NullPool)
        self.backend = backend
        self.killed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _kill_once(self) -> None:
        with self.engine.connect() as conn:
            if self.backend == "postgresql":
                rows = conn.execute(sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": self.name}).all()
                self.killed += len(rows)
            else:
                ids = conn.execute(sa.text(
                    "SELECT id FROM information_schema.processlist "
                    "WHERE db = :n AND id <> CONNECTION_ID()"), {"n": self.name}).scalars().all()
                for pid in ids:
                    try:
                        conn.exec_driver_sql(f"KILL {int(pid)}")
                        self.killed += 1
                    except sa.exc.DBAPIError:
                        pass  # it ended meanwhile

    def _run(self) -> None:
        while not self._stop.wait(KILL_EVERY_S):
            self._kill_once()

    def __enter__(self) -> ConnectionKiller:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)
        self.engine.dispose()


def retried(call: Callable[[], Any], what: str) -> Any:
    """A client's retry of a call refused while the database was cut off."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        try:
            return call()
        except (exceptions.ComputeAgentError) as exc:
            if exc.code not in ("DATABASE_UNAVAILABLE", "RPC_TIMEOUT", "INSTANCE_BUSY") or \
                    time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_dropped_database_connections_during_builds_and_stops(tmp_path, backend):
    with AgentStack(tmp_path, "dbdrop", backend=backend, task_duration=0.3,
                    options={"DEFAULT": {"max_concurrent_builds": BUILDS}}) as stack:
        stack.start()
        rpc, host, db, sim = stack.rpc, stack.host, stack.db, stack.sim
        bodies = [{"uuid": str(uuidlib.uuid4()), "name": f"drop-{i}",
                   "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1},
                   "image": {"id": None, "url": None, "disk_format": None}}
                  for i in range(BUILDS)]
        with ConnectionKiller(backend, stack.db_url) as killer:
            for body in bodies:
                retried(lambda b=body: rpc.api.build_instance(host, b, confirm=True),
                        "build")
            for body in bodies:
                inst = wait_until(lambda b=body: retried(
                    lambda: (lambda i: i if i["task_state"] is None else None)(
                        rpc.api.get_instance(host, b["uuid"])), "read"),
                    SETTLE_S, f"build of {body['name']}")
                if inst["vm_state"] == "active":
                    retried(lambda b=body: rpc.api.stop_instance(host, b["uuid"], confirm=True),
                            "stop")
            time.sleep(2 * KILL_EVERY_S)
        assert killer.killed > 0, "no connection was ever killed"

        # The killing is over: everything settles and dom0 agrees.
        def settled() -> bool:
            insts = db.list_instances(host=host, internal=True)
            return len(insts) == BUILDS and all(i["task_state"] is None for i in insts)

        wait_until(settled, SETTLE_S, "every instance to settle")
        counts = assert_dom0_matches_db(sim, db, host)
        assert sum(counts.values()) == BUILDS
        print(f"{backend}: {killer.killed} connections killed; end states {counts}")
