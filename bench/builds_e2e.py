"""Builds end to end (issue 15 part 6), two ways side by side in one run
against one simulator whose operations take 1 s each:

  (a) N builds cast through RabbitMQ into a real ``compute-agent`` process
      on PostgreSQL: Async tasks followed by the TaskWatcher, at most
      ``max_concurrent_builds`` at once;
  (b) the same N builds through a pool of five synchronous sessions (the
      old driver's design): the agent's own VM code, each step a blocking
      XenAPI call that holds one of the five sessions while dom0 works.

The bound for (a) is what the dom0 task times allow: a build is K tasks of
1 s in a row (K counted from the tracked tasks of the first build), so at
most ``max_concurrent_builds / K`` builds per second; the target is at
least 0.8 of it. (b) is bound by five sessions: 5 / K per second.

    python -m bench builds_e2e [-- --builds 200 --duration 1.0 --concurrent 10]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


def spec(i: int) -> dict[str, Any]:
    return {"uuid": str(uuidlib.uuid4()), "name": f"bench-{i}",
            "flavor": {"vcpus": 1, "memory_mb": 128, "root_gb": 1},
            "image": {"id": None, "url": None, "disk_format": None}}


def through_agent(work: Path, sim: Any, builds: int, concurrent: int) -> tuple[float, int]:
    """(seconds until every build settled, dom0 tasks per build)."""
    from compute_agent.db.api import Database
    from tests.functional.db_fixtures import make_migrated_database_url
    from tests.functional.harness import AgentProcess
    from tests.functional.rpc_client import Rpc

    db_url, drop_db = make_migrated_database_url("postgresql")
    rpc = Rpc("bench_builds", timeout=30)
    host = f"bench-builds-{uuidlib.uuid4().hex[:8]}"
    rpc.hosts.append(host)
    agent = AgentProcess(work, host=host, db_url=db_url, sim_url=sim.url,
                         exchange=rpc.exchange, topic=rpc.topic,
                         options={"DEFAULT": {"max_concurrent_builds": concurrent,
                                              "debug": "false"},
                                  "xenserver": {"connection_concurrent": concurrent}})
    db = Database(db_url)
    try:
        agent.start()
        agent.wait_serving(rpc.api)
        bodies = [spec(i) for i in range(builds)]
        started = time.monotonic()
        for body in bodies:
            rpc.api.build_instance(host, body)
        while True:
            counts = db.count_instances(host=host)
            done = counts.get("active", 0) + counts.get("error", 0)
            if done >= builds:
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        errors = counts.get("error", 0)
        if errors:
            print(f"  (a): {errors} builds ended in error")
        tasks = [t for t in db.list_tracked_tasks(status=None, instance_uuid=bodies[0]["uuid"])
                 if t["operation"] == "spawn"]
        return elapsed, len(tasks)
    finally:
        agent.kill9()
        rpc.close()
        db.dispose()
        drop_db()


def through_sync_pool(sim: Any, builds: int, sessions: int) -> float:
    """The same builds, each step a synchronous call on one of ``sessions``."""
    from compute_agent.driver.base import Operation
    from compute_agent.driver.xenapi.network import Networking
    from compute_agent.driver.xenapi.session import ConnectionSettings, SessionPool
    from compute_agent.driver.xenapi.storage import Storage, parse_sr_filter
    from compute_agent.driver.xenapi.tasks import TaskRunner
    from compute_agent.driver.xenapi.vm_ops import VMOps

    class SyncRunner(TaskRunner):
        """Every step blocks a pooled session for as long as dom0 works."""

        def run(self, op: Operation, method: str, *args: Any, timeout: float | None = None
                ) -> Any:
            with self.pool.session() as sess:
                return sess.call(method, *args)

    class NoWaiter:
        def track(self, ref: str) -> Any:
            raise AssertionError("synchronous: nothing to wait for")

        def close(self) -> None:
            pass

    pool = SessionPool(ConnectionSettings(sim.url, "root", "password"), sessions)
    host = f"bench-sync-{uuidlib.uuid4().hex[:8]}"
    runner = SyncRunner(pool, NoWaiter(), None, 600.0)
    storage = Storage(pool, runner, parse_sr_filter("default-sr:true"), host)
    vmops = VMOps(pool, runner, storage, Networking(pool), host)
    started = time.monotonic()
    failures = []
    lock = threading.Lock()

    def build(i: int) -> None:
        body = {**spec(i), "networks": [], "metadata": {}}
        op = Operation(body["uuid"], "spawn", "req-bench", 600.0)
        try:
            with runner.operation(op, 600.0):
                vmops.spawn(op, body)
        except Exception as exc:  # counted, not fatal: the figure says how many
            with lock:
                failures.append(exc)

    with ThreadPoolExecutor(max_workers=builds) as ex:
        list(ex.map(build, range(builds)))
    elapsed = time.monotonic() - started
    if failures:
        print(f"  (b): {len(failures)} builds failed, e.g. {failures[0]!r}")
    pool.close()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench builds_e2e")
    p.add_argument("--builds", type=int, default=200)
    p.add_argument("--duration", type=float, default=1.0)
    p.add_argument("--concurrent", type=int, default=10)
    p.add_argument("--sessions", type=int, default=5)
    args = p.parse_args(argv)

    from tests.functional.harness import SimProcess

    work = Path(tempfile.mkdtemp(prefix="bench-builds-"))
    sim = SimProcess(work, task_duration=args.duration)
    # Enough host memory for every VM of both runs.
    sim.start()
    try:
        a, k = through_agent(work, sim, args.builds, args.concurrent)
        b = through_sync_pool(sim, args.builds, args.sessions)
    finally:
        sim.stop()
    k = max(k, 1)
    bound = 60.0 * args.concurrent / (k * args.duration)
    sync_bound = 60.0 * args.sessions / (k * args.duration)
    rate_a, rate_b = 60.0 * args.builds / a, 60.0 * args.builds / b
    print(f"\n{args.builds} builds, {k} dom0 tasks of {args.duration} s each per build")
    print(f"  (a) agent, RabbitMQ, PostgreSQL, max_concurrent_builds {args.concurrent}: "
          f"{a:.1f} s, {rate_a:.1f} builds/min, bound {bound:.1f}/min, "
          f"ratio {rate_a / bound:.2f} (target >= 0.8)")
    print(f"  (b) pool of {args.sessions} synchronous sessions: {b:.1f} s, "
          f"{rate_b:.1f} builds/min, bound {sync_bound:.1f}/min")
    print(f"  (a) / (b): {rate_a / rate_b:.2f}x the builds per minute")
    return 0
