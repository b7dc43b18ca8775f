"""One agent with 1,000 instances (issue 15 part 6), measured against the
targets, side by side in one run:

- the simulator (its own process) holds 1,000 halted VMs marked as this
  agent's, the database (PostgreSQL) 1,000 matching instances;
- a real ``compute-agent`` process serves them over the machine's RabbitMQ.

Printed, each with its target:

- start and restart (SIGTERM, start again) to the first answered ``ping``;
- ``get_host_status`` and ``list_instances`` (its default page) latency
  over RPC (p50, p90);
- the agent's processes' memory together (launcher and worker): the sum of
  their PSS, the figure for the target, beside the USS and RSS sums and each
  process's own (tests/functional/proc_memory.py says what each means);
  once when idle after the calls below, and the peak during them;
- XenAPI calls and database statements of one round of the periodic jobs
  (heartbeat and host report, power sync, recovery backstop), run in this
  process by a manager on the same simulator and database, with 10
  instances and with all of them: O(1) dom0 calls per interval is the
  target, the same count whatever the number of instances.

    python -m bench scale_1000 [-- --instances 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TARGETS = {"ping_after_start_s": 3.0, "host_status_ms": 50.0, "list_ms": 50.0,
           "memory_mb": 150.0}
# The periodic round is measured twice, with this many instances and with
# all of them: O(1) dom0 calls per interval means the same count at both.
FEW = 10


def populate(sim: Any, db: Any, host: str, count: int, first: int = 0) -> None:
    """``count`` halted VMs marked as ``host``'s, and their instances,
    numbered from ``first``."""
    from compute_agent.driver.xenapi import ownership

    with sim.session() as x:
        template = next(ref for ref, rec in x.VM.get_all_records_where(
            'field "is_a_template" = "true"').items() if not rec["is_a_snapshot"])
        for i in range(first, first + count):
            uuid = str(uuidlib.uuid4())
            vm = x.VM.clone(template, f"scale-{i}")
            x.VM.set_is_a_template(vm, False)
            for key, value in ownership.marks(uuid, host).items():
                x.VM.add_to_other_config(vm, key, value)
            db.create_instance({"uuid": uuid, "name": f"scale-{i}", "host": host,
                                "vm_state": "stopped", "power_state": 4,
                                "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1},
                                "image": {"id": None, "url": None, "disk_format": None}})


def timed(call: Any, n: int) -> tuple[float, float]:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9) - 1]


def first_ping(agent: Any, api: Any, started: float) -> float:
    from compute_agent import exceptions

    while True:
        try:
            api.ping(agent.host, timeout=0.5)  # a ping sent before the queue exists is lost
            return time.monotonic() - started
        except exceptions.ComputeAgentError:
            if not agent.alive:
                raise RuntimeError(f"agent exited: {agent.log_tail()}") from None
            time.sleep(0.05)


def periodic_round(sim_url: str, db_url: str, host: str) -> tuple[int, dict[str, int], int]:
    """XenAPI calls (total, by method) and SQL statements of one round of
    the periodic jobs, by a manager in this process."""
    import sqlalchemy as sa
    from oslo_config import cfg

    from compute_agent.conf import opts as agent_opts
    from compute_agent.context import get_admin_context
    from compute_agent.db.api import Database
    from compute_agent.manager import ComputeManager

    conf = cfg.ConfigOpts()
    for group, opts in agent_opts.list_opts():
        name = getattr(group, "name", group)
        if name != "DEFAULT":
            conf.register_group(group if isinstance(group, cfg.OptGroup) else
                                cfg.OptGroup(name))
        conf.register_opts(opts, group=None if name == "DEFAULT" else name)
    conf([], project="bench", default_config_files=[])
    for key, value in {"host": host, "compute_driver": "xenapi",
                       "reap_orphans": False}.items():
        conf.set_override(key, value)
    for key, value in {"connection_url": sim_url, "connection_username": "root",
                       "connection_password": "password"}.items():
        conf.set_override(key, value, group="xenserver")
    db = Database(db_url)
    statements = [0]
    sa.event.listen(db.engine, "before_cursor_execute",
                    lambda *a: statements.__setitem__(0, statements[0] + 1))
    manager = ComputeManager(conf, db)
    manager.init_host()
    time.sleep(2)  # the start-up recovery and event stream settle
    stats = manager.driver.pool.stats
    before, sql_before = stats.snapshot(), statements[0]
    ctxt = get_admin_context()
    manager.report_host(ctxt)
    manager.sync_power_states(ctxt)
    manager.recover(ctxt)
    time.sleep(1)  # recovery's threads
    after = stats.snapshot()
    calls = {m: after.get(m, 0) - before.get(m, 0) for m in after
             if after.get(m, 0) - before.get(m, 0) and m != "event.from"}
    sql = statements[0] - sql_before
    manager.shutdown(5)
    db.dispose()
    return sum(calls.values()), calls, sql


@dataclass
class AgentStack:
    sim: Any
    rpc: Any
    host: str
    agent: Any
    db: Any
    db_url: str


@contextlib.contextmanager
def agent_stack(name: str, task_duration: float) -> Iterator[AgentStack]:
    """A simulator process and an agent process on a new PostgreSQL
    database, serving RPC on an exchange of their own; stopped after."""
    from compute_agent.db.api import Database
    from tests.functional.db_fixtures import make_migrated_database_url
    from tests.functional.harness import AgentProcess, SimProcess
    from tests.functional.rpc_client import Rpc

    work = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    db_url, drop_db = make_migrated_database_url("postgresql")
    sim = SimProcess(work, task_duration=task_duration).start()
    rpc = Rpc(f"bench_{name}", timeout=30)
    host = f"bench-{name}-{uuidlib.uuid4().hex[:8]}"
    rpc.hosts.append(host)
    agent = AgentProcess(work, host=host, db_url=db_url, sim_url=sim.url,
                         exchange=rpc.exchange, topic=rpc.topic,
                         options={"DEFAULT": {"debug": "false", "reap_orphans": "false"}})
    db = Database(db_url)
    try:
        yield AgentStack(sim, rpc, host, agent, db, db_url)
    finally:
        if agent.alive:
            agent.kill9()
        sim.stop()
        rpc.close()
        db.dispose()
        drop_db()


def memory_rows(idle: Any, peak: Any) -> list[tuple[str, str, str]]:
    """The agent's processes together (PSS sum: the target's figure; USS
    and RSS sums beside it), then each process's PSS / USS / RSS."""
    target = f"< {TARGETS['memory_mb']:.0f} MB"
    rows = [
        ("agent memory, PSS sum (idle / peak)", f"{idle.pss:.0f} / {peak.peak.pss:.0f} MB",
         target),
        ("  of which anonymous (PSS)", f"{idle.pss_anon:.0f} / {peak.peak.pss_anon:.0f} MB",
         "-"),
        ("  USS sum (idle / peak)", f"{idle.uss:.0f} / {peak.peak.uss:.0f} MB", "-"),
        ("  RSS sum (idle / peak; counts shared twice)",
         f"{idle.rss:.0f} / {peak.peak_rss:.0f} MB", f"{target} (ideally)"),
    ]
    for p in idle.procs:
        rows.append((f"  {p.name} (pid {p.pid}) PSS / USS / RSS",
                     f"{p.pss:.0f} / {p.uss:.0f} / {p.rss:.0f} MB", "-"))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench scale_1000")
    p.add_argument("--instances", type=int, default=1000)
    args = p.parse_args(argv)

    rows: list[tuple[str, str, str]] = []
    with agent_stack("scale", 0.05) as stack:
        sim, rpc, host, agent, db = stack.sim, stack.rpc, stack.host, stack.agent, stack.db
        db_url = stack.db_url
        populate(sim, db, host, FEW)
        few_calls, few_by_method, few_sql = periodic_round(sim.url, db_url, host)
        t = time.monotonic()
        populate(sim, db, host, args.instances - FEW, first=FEW)
        print(f"populated {args.instances} VMs and instances in {time.monotonic() - t:.1f} s")

        started = time.monotonic()
        agent.start()
        cold = first_ping(agent, rpc.api, started)
        assert rpc.api.get_host_status(host)["instances"].get("stopped") == args.instances
        from tests.functional.proc_memory import PeakMemory, tree_memory

        with PeakMemory(agent.proc.pid) as peak:
            hs50, hs90 = timed(lambda: rpc.api.get_host_status(host), 20)
            li50, li90 = timed(lambda: rpc.api.list_instances(host), 10)
        idle = tree_memory(agent.proc.pid)
        agent.stop()
        started = time.monotonic()
        agent.start()
        warm = first_ping(agent, rpc.api, started)
        agent.stop()
        calls, by_method, sql = periodic_round(sim.url, db_url, host)

        rows = [
            ("start to first ping", f"{cold:.2f} s", f"< {TARGETS['ping_after_start_s']} s"),
            ("restart (SIGTERM, start) to first ping", f"{warm:.2f} s",
             f"< {TARGETS['ping_after_start_s']} s"),
            ("get_host_status p50 / p90", f"{hs50:.0f} / {hs90:.0f} ms",
             f"tens of ms (< {TARGETS['host_status_ms']:.0f})"),
            ("list_instances (default page) p50 / p90", f"{li50:.0f} / {li90:.0f} ms",
             "tens of ms, paged"),
            *memory_rows(idle, peak),
            (f"dom0 calls, one periodic round, {FEW} / {args.instances} instances",
             f"{few_calls} / {calls}", "O(1): the same at both"),
            (f"SQL statements, one periodic round, {FEW} / {args.instances} instances",
             f"{few_sql} / {sql}", "-"),
        ]
    width = max(len(r[0]) for r in rows) if rows else 0
    print(f"\n{args.instances} instances on one agent (PostgreSQL, xapi-sim, RabbitMQ)")
    for name, value, target in rows:
        print(f"  {name:<{width}}  {value:<28}  target {target}")
    if rows:
        print(f"  dom0 calls by method, {FEW} instances: {few_by_method}")
        print(f"  dom0 calls by method, {args.instances} instances: {by_method}")
    return 0
