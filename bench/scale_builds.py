"""Builds as instances accumulate (issue 15 part 6), side by side in one
run on one agent: "builds keep their rate as instances accumulate" and
"the agent's processes together stay under 150 MB".

- a real ``compute-agent`` process on PostgreSQL and the simulator (its own
  process, 0.05 s tasks) over the machine's RabbitMQ;
- (a) a batch of N builds cast into the empty agent, timed until every one
  settled (active or error);
- then ~1,000 halted VMs and their instances are added (``scale_1000``'s
  ``populate``), the agent restarted, and (b) the same batch cast again;
- during each batch the agent's processes' memory (launcher and worker
  together) is sampled; the peak PSS sum is printed against the 150 MB
  target, the RSS sum beside it (tests/functional/proc_memory.py).

Target printed: (b)'s builds per second at least 0.8 of (a)'s.

    python -m bench scale_builds [-- --instances 1000 --builds 50]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

RATE_RATIO_TARGET = 0.8
MEMORY_TARGET_MB = 150.0


def batch(rpc: Any, db: Any, agent: Any, host: str, builds: int,
          timeout: float = 300.0) -> tuple[float, int, Any]:
    """(seconds until ``builds`` new builds settled, how many ended in
    error, the agent's peak memory meanwhile: a PeakMemory)."""
    from bench.builds_e2e import spec
    from tests.functional.proc_memory import PeakMemory

    counts = db.count_instances(host=host)
    settled_before = counts.get("active", 0) + counts.get("error", 0)
    errors_before = counts.get("error", 0)
    with PeakMemory(agent.proc.pid) as peak:
        started = time.monotonic()
        for i in range(builds):
            rpc.api.build_instance(host, spec(i))
        while True:
            counts = db.count_instances(host=host)
            if counts.get("active", 0) + counts.get("error", 0) - settled_before >= builds:
                break
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"builds not settled after {timeout} s: {counts}")
            time.sleep(0.1)
        elapsed = time.monotonic() - started
    return elapsed, counts.get("error", 0) - errors_before, peak


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench scale_builds")
    p.add_argument("--instances", type=int, default=1000)
    p.add_argument("--builds", type=int, default=50)
    p.add_argument("--duration", type=float, default=0.05, help="simulator task seconds")
    args = p.parse_args(argv)

    from bench.scale_1000 import agent_stack, first_ping, populate
    from tests.functional.proc_memory import tree_memory

    with agent_stack("sbuilds", args.duration) as stack:
        sim, rpc, host, agent, db = stack.sim, stack.rpc, stack.host, stack.agent, stack.db
        agent.start()
        first_ping(agent, rpc.api, time.monotonic())
        empty = tree_memory(agent.proc.pid)
        a, a_err, a_peak = batch(rpc, db, agent, host, args.builds)

        agent.stop()
        t = time.monotonic()
        populate(sim, db, host, args.instances)
        print(f"populated {args.instances} VMs and instances in {time.monotonic() - t:.1f} s",
              flush=True)
        agent.start()
        first_ping(agent, rpc.api, time.monotonic())
        time.sleep(3)  # start-up recovery goes on after serving; let it settle
        full = tree_memory(agent.proc.pid)
        b, b_err, b_peak = batch(rpc, db, agent, host, args.builds)
        total = sum(db.count_instances(host=host).values())

    rate_a, rate_b = args.builds / a, args.builds / b
    ratio = rate_b / rate_a
    print(f"\n{args.builds} builds per batch, simulator tasks of {args.duration} s "
          f"(PostgreSQL, xapi-sim, RabbitMQ)")
    rows = [
        ("", "(a) empty agent", f"(b) after {total - args.builds} instances", "target"),
        ("builds/s", f"{rate_a:.2f} ({a:.1f} s)", f"{rate_b:.2f} ({b:.1f} s)",
         f"(b)/(a) = {ratio:.2f}, target >= {RATE_RATIO_TARGET}"),
        ("builds in error", str(a_err), str(b_err), "0"),
        ("agent PSS sum before batch", f"{empty.pss:.0f} MB", f"{full.pss:.0f} MB",
         f"< {MEMORY_TARGET_MB:.0f} MB"),
        ("agent peak PSS sum during batch", f"{a_peak.peak.pss:.0f} MB",
         f"{b_peak.peak.pss:.0f} MB", f"< {MEMORY_TARGET_MB:.0f} MB"),
        ("agent USS sum before batch", f"{empty.uss:.0f} MB", f"{full.uss:.0f} MB", "-"),
        ("agent RSS sum before batch", f"{empty.rss:.0f} MB", f"{full.rss:.0f} MB",
         "counts shared pages twice"),
        ("agent peak RSS sum during batch", f"{a_peak.peak_rss:.0f} MB",
         f"{b_peak.peak_rss:.0f} MB", "counts shared pages twice"),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  " + "  ".join(f"{c:<{w}}" for c, w in zip(row, widths, strict=True)))
    verdict = "kept" if ratio >= RATE_RATIO_TARGET else "NOT kept"
    worst = max(a_peak.peak.pss, b_peak.peak.pss)
    print(f"  build rate {verdict} as instances accumulate; peak PSS sum "
          f"{'under' if worst < MEMORY_TARGET_MB else 'OVER'} {MEMORY_TARGET_MB:.0f} MB")
    print(f"  before (a): {empty.line()}\n  before (b): {full.line()}\n"
          f"  peak (b):   {b_peak.peak.line()}")
    return 0
