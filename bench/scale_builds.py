"""Builds as instances accumulate (issue 15 part 6), side by side in one
run on one agent: "builds keep their rate as instances accumulate" and
"the agent's processes together stay under 150 MB".

- a real ``compute-agent`` process on PostgreSQL and the simulator (its own
  process, 0.05 s tasks) over the machine's RabbitMQ;
- (a) a batch of N builds cast into the empty agent, timed until every one
  settled (active or error);
- then ~1,000 halted VMs and their instances are added (``scale_1000``'s
  ``populate``), the agent restarted, and (b) the same batch cast again;
- during each batch the agent's processes' RSS (launcher and worker
  together) is sampled; the peak is printed against the 150 MB target.

Target printed: (b)'s builds per second at least 0.8 of (a)'s.

    python -m bench scale_builds [-- --instances 1000 --builds 50]
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

RATE_RATIO_TARGET = 0.8
RSS_TARGET_MB = 150.0


class PeakRss:
    """Samples the RSS of a process and its children until stopped."""

    def __init__(self, pid: int, every: float = 0.1):
        self.pid, self.every, self.peak = pid, every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from tests.functional.test_rpc_fuzz import rss_mb

        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except (FileNotFoundError, ProcessLookupError):
                pass  # a child came or went between listing and reading
            self._stop.wait(self.every)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def batch(rpc: Any, db: Any, agent: Any, host: str, builds: int,
          timeout: float = 300.0) -> tuple[float, int, float]:
    """(seconds until ``builds`` new builds settled, how many ended in
    error, the agent's peak RSS meanwhile)."""
    from bench.builds_e2e import spec

    counts = db.count_instances(host=host)
    settled_before = counts.get("active", 0) + counts.get("error", 0)
    errors_before = counts.get("error", 0)
    with PeakRss(agent.proc.pid) as rss:
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
    return elapsed, counts.get("error", 0) - errors_before, rss.peak


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench scale_builds")
    p.add_argument("--instances", type=int, default=1000)
    p.add_argument("--builds", type=int, default=50)
    p.add_argument("--duration", type=float, default=0.05, help="simulator task seconds")
    args = p.parse_args(argv)

    from bench.scale_1000 import agent_stack, first_ping, populate
    from tests.functional.test_rpc_fuzz import rss_mb

    with agent_stack("sbuilds", args.duration) as stack:
        sim, rpc, host, agent, db = stack.sim, stack.rpc, stack.host, stack.agent, stack.db
        agent.start()
        first_ping(agent, rpc.api, time.monotonic())
        empty_rss = rss_mb(agent.proc.pid)
        a, a_err, a_peak = batch(rpc, db, agent, host, args.builds)

        agent.stop()
        t = time.monotonic()
        populate(sim, db, host, args.instances)
        print(f"populated {args.instances} VMs and instances in {time.monotonic() - t:.1f} s",
              flush=True)
        agent.start()
        first_ping(agent, rpc.api, time.monotonic())
        time.sleep(3)  # start-up recovery goes on after serving; let it settle
        full_rss = rss_mb(agent.proc.pid)
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
        ("agent RSS before batch", f"{empty_rss:.0f} MB", f"{full_rss:.0f} MB",
         f"< {RSS_TARGET_MB:.0f} MB"),
        ("agent peak RSS during batch", f"{a_peak:.0f} MB", f"{b_peak:.0f} MB",
         f"< {RSS_TARGET_MB:.0f} MB"),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  " + "  ".join(f"{c:<{w}}" for c, w in zip(row, widths, strict=True)))
    verdict = "kept" if ratio >= RATE_RATIO_TARGET else "NOT kept"
    print(f"  build rate {verdict} as instances accumulate; peak RSS "
          f"{'under' if max(a_peak, b_peak) < RSS_TARGET_MB else 'OVER'} {RSS_TARGET_MB:.0f} MB")
    return 0
