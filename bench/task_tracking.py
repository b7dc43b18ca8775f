"""How the agent follows dom0 tasks, three ways, side by side in one run
against one simulator whose operations take 1 s of work each:

  (a) 200 concurrent operations through the TaskWatcher (Async call, one
      event.from stream for all, task destroyed after) -- the agent's way;
  (b) the same 200 through a pool of 5 synchronous sessions (nova's way);
  (c) Async calls with each task polled every 0.5 s (nova's power polling).

The operation is VM.start on 200 halted VMs (reset with a 0 s hard shutdown
between runs). For each way it prints: wall time (all operations started
together, until the last one returned) and its ratio to the ideal 1 s; when
dom0 ended the last operation's work (beyond 1 s: the spread of the Async
calls through the session pool, and dom0's own load); how long after its
task ended in dom0 the caller saw each operation end (p50/p99); XenAPI calls
per operation (event.from, polls and task.destroy included); long-poll
connections opened. Targets for (a): <= 1.25x, p99 < 50 ms, <= 3 calls, 1
connection.

The simulator runs in a process of its own (as dom0 would), started from
this file with ``--serve``: that child records, on the simulator's side, the
moment each operation's work ended, so latency is measured from the task's
real end, not estimated. CLOCK_MONOTONIC is system-wide on Linux, so both
processes' monotonic clocks agree.

    python -m bench task_tracking [-- --ops 200 --duration 1.0 --sessions 5 --strict]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
USER, PASSWORD = "root", "password"
MiB = 1024 * 1024


# -- the simulator child ----------------------------------------------------------------------
def serve(duration: float) -> int:
    """Run the simulator with end-of-work instrumentation; print its URL;
    answer 'dump' on stdin with the recorded ends as one JSON line."""
    from xapisim import api
    from xapisim.server import Simulator

    sim = Simulator(task_duration=0.0, host_memory_mb=262144)
    sim.faults.set_duration("VM.start", duration)
    lock = threading.Lock()
    task_end: dict[str, float] = {}  # task ref -> when its outcome was written
    sync_end: dict[str, float] = {}  # VM ref -> when a synchronous VM.start returned

    original_finish = sim.tasks.finish

    def finish(ref: str, **kw: Any) -> None:
        with lock:
            task_end[ref] = time.monotonic()
        original_finish(ref, **kw)

    sim.tasks.finish = finish  # type: ignore[method-assign]
    start_handler = api.HANDLERS["VM.start"]

    def timed_start(ctx, vm, start_paused, force):  # type: ignore[no-untyped-def]
        result = start_handler(ctx, vm, start_paused, force)
        if ctx.task_ref is None:
            with lock:
                sync_end[vm] = time.monotonic()
        return result

    api.HANDLERS["VM.start"] = timed_start
    sim.start()
    print(sim.url, flush=True)
    for line in sys.stdin:
        if line.strip() == "dump":
            with lock:
                doc = {"tasks": dict(task_end), "sync": dict(sync_end)}
                task_end.clear()
                sync_end.clear()
            print(json.dumps(doc), flush=True)
        elif line.strip() == "quit":
            break
    sim.stop()
    return 0


class SimChild:
    def __init__(self, duration: float):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.task_tracking", "--serve", "--duration", str(duration)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            self.stop()
            raise RuntimeError(f"simulator did not start: {self.url!r}")

    def dump(self) -> dict[str, dict[str, float]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("dump\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


# -- measuring ---------------------------------------------------------------------------------
@dataclass
class Result:
    name: str
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    calls: int = 0
    ops: int = 0
    long_polls: int = 0
    errors: list[str] = field(default_factory=list)
    last_end: float = 0.0  # when dom0 ended the last operation, from the start


class SeenListener:
    """TaskListener noting when the caller learned each task's end."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: dict[str, float] = {}

    def task_started(self, op, task_ref, task_uuid, dom0_host):  # noqa: ANN001
        pass

    def task_progress(self, op, task_ref, progress):  # noqa: ANN001
        pass

    def task_finished(self, op, task_ref, status, result, error):  # noqa: ANN001
        now = time.monotonic()
        with self.lock:
            self.seen[task_ref] = now


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def concurrently(items: list[str], fn: Callable[[str], Any]) -> tuple[float, float, list[str]]:
    """Run fn(item) in one thread per item, started together; (start time,
    wall, errors)."""
    gate = threading.Barrier(len(items) + 1)
    errors: list[str] = []
    lock = threading.Lock()

    def one(item: str) -> None:
        gate.wait()
        try:
            fn(item)
        except Exception as e:  # reported, not raised: a benchmark counts failures
            with lock:
                errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in items]
    for t in threads:
        t.start()
    gate.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join()
    return t0, time.monotonic() - t0, errors


def reset(pool, vms: list[str]) -> None:  # noqa: ANN001
    for vm in vms:
        if pool.call("VM.get_power_state", vm) != "Halted":
            pool.call("VM.hard_shutdown", vm)


def make_vms(pool, count: int, host: str) -> list[str]:  # noqa: ANN001
    from compute_agent.driver.xenapi.vm_ops import scratch_vm_record

    vms = []
    for i in range(count):
        inst = {"uuid": str(uuid.uuid4()), "name": f"bench-{i}",
                "flavor": {"vcpus": 1, "memory_mb": 128, "root_gb": 0}}
        vms.append(pool.call("VM.create", scratch_vm_record(inst, host)))
    return vms


def run_async(name: str, sim: SimChild, pool, vms: list[str], waiter) -> Result:  # noqa: ANN001
    from compute_agent.driver.base import Operation
    from compute_agent.driver.xenapi.tasks import TaskRunner

    listener = SeenListener()
    runner = TaskRunner(pool, waiter, listener, default_timeout=120)
    before = pool.stats.snapshot()
    t0, wall, errors = concurrently(
        vms, lambda vm: runner.run(Operation(vm, "power_on", "bench"), "VM.start", vm, False,
                                   False)
    )
    runner.reaper.close()  # finished tasks are destroyed in the background: count those too
    by_method = {m: n - before.get(m, 0) for m, n in pool.stats.snapshot().items()
                 if n - before.get(m, 0)}
    calls = sum(by_method.values())
    print(f"  {name}: calls by method {dict(sorted(by_method.items()))}")
    ends = sim.dump()["tasks"]
    latencies = [listener.seen[ref] - end for ref, end in ends.items() if ref in listener.seen]
    last_end = max(ends.values(), default=t0) - t0
    return Result(name, wall, latencies, calls, len(vms), errors=errors, last_end=last_end)


def run_sync(name: str, sim: SimChild, pool, vms: list[str]) -> Result:  # noqa: ANN001
    seen: dict[str, float] = {}
    lock = threading.Lock()

    def start(vm: str) -> None:
        pool.call("VM.start", vm, False, False)
        now = time.monotonic()
        with lock:
            seen[vm] = now

    calls0 = pool.stats.total
    t0, wall, errors = concurrently(vms, start)
    calls = pool.stats.total - calls0
    ends = sim.dump()["sync"]
    latencies = [seen[vm] - end for vm, end in ends.items() if vm in seen]
    last_end = max(ends.values(), default=t0) - t0
    return Result(name, wall, latencies, calls, len(vms), errors=errors, last_end=last_end)


def report(results: list[Result], duration: float) -> list[str]:
    print(f"\n{'':38}{'wall':>8}{'x ideal':>9}{'dom0 end':>9}{'seen p50':>10}{'seen p99':>10}"
          f"{'calls/op':>10}{'long-polls':>11}")
    for r in results:
        print(f"{r.name:38}{r.wall:7.2f}s{r.wall / duration:8.2f}x{r.last_end:8.2f}s"
              f"{pct(r.latencies, 50) * 1000:8.1f}ms{pct(r.latencies, 99) * 1000:8.1f}ms"
              f"{r.calls / max(r.ops, 1):10.2f}{r.long_polls:11d}")
        if r.errors:
            print(f"    {len(r.errors)} operations failed, e.g. {r.errors[0]}")
    a = results[0]
    checks = [
        ("wall time <= 1.25x ideal", a.wall / duration <= 1.25),
        ("completion seen < 50 ms after the task ended (p99)", pct(a.latencies, 99) < 0.050),
        ("<= 3 XenAPI calls per operation", a.calls / max(a.ops, 1) <= 3),
        ("one long-poll connection", a.long_polls == 1),
        ("no operation failed", not a.errors),
    ]
    print("\nTargets for (a):")
    for text, ok in checks:
        print(f"  {'met   ' if ok else 'MISSED'} {text}")
    return [text for text, ok in checks if not ok]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.task_tracking")
    p.add_argument("--ops", type=int, default=200)
    p.add_argument("--duration", type=float, default=1.0, help="seconds of work per task")
    p.add_argument("--sessions", type=int, default=5, help="session pool size")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        return serve(args.duration)

    from compute_agent.driver.xenapi.polling import PollingWaiter
    from compute_agent.driver.xenapi.session import ConnectionSettings, SessionPool
    from compute_agent.driver.xenapi.watcher import TaskWatcher

    sim = SimChild(args.duration)
    pool = SessionPool(ConnectionSettings(sim.url, USER, PASSWORD), args.sessions)
    try:
        vms = make_vms(pool, args.ops, "bench")
        print(f"{args.ops} concurrent VM.start, {args.duration:g} s of work each, "
              f"session pool of {args.sessions}, simulator in its own process")
        results = []

        watcher = TaskWatcher(pool, agent_host="bench").start()
        watcher.wait_synced(10)
        res = run_async("(a) TaskWatcher (one event.from)", sim, pool, vms, watcher)
        res.long_polls = watcher.stats.connections  # opened, including reconnects
        watcher.close()
        results.append(res)
        reset(pool, vms)
        sim.dump()

        results.append(run_sync(f"(b) {args.sessions} synchronous sessions", sim, pool, vms))
        reset(pool, vms)
        sim.dump()

        polling = PollingWaiter(pool, min_interval=0.5, max_interval=0.5)
        results.append(run_async("(c) polling each task every 0.5 s", sim, pool, vms, polling))
        reset(pool, vms)

        missed = report(results, args.duration)
        return 1 if missed and args.strict else 0
    finally:
        pool.close()
        sim.stop()


if __name__ == "__main__":
    sys.exit(main())
