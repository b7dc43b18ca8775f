"""200 concurrent ``Async.VM.start`` on 200 VMs, each start taking 1 s of
simulated work, watched by one ``event.from`` loop on one session.

Prints the wall time from the first call to the last task seen finished by
the watcher and its ratio to the ideal 1 s (target < 1.5x), and per-task
latency from issuing the call to the watcher seeing it finished (client-side
times: a task's ``finished`` field only has one-second resolution).

    python -m bench sim_async_start [-- --vms 200 --duration 1.0 --in-process]

By default the simulator runs as its own process (``xapi-sim``), as xapi
would; ``--in-process`` runs it in this interpreter (sharing its GIL)."""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass, field

from xapisim.control_client import SimControl

MiB = 1024 * 1024
FINAL = ("success", "failure", "cancelled")


@dataclass
class Run:
    issued: dict[str, float] = field(default_factory=dict)  # task -> monotonic at call
    returned: dict[str, float] = field(default_factory=dict)  # task -> Async call returned
    seen: dict[str, tuple[float, str]] = field(default_factory=dict)  # task -> (time, status)
    start: float = 0.0


# -- simulator ----------------------------------------------------------------------------
def start_simulator(in_process: bool) -> tuple[str, Callable[[], None]]:
    if in_process:
        from xapisim.server import Simulator

        sim = Simulator(task_duration=0.0).start()
        return sim.url, sim.stop
    proc = subprocess.Popen(
        [sys.executable, "-m", "xapisim.cli", "--listen", "127.0.0.1:0", "--task-duration", "0"],
        stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.search(r"serving (\S+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"xapi-sim did not start: {line!r}")

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    return m.group(1), stop


def login(url: str) -> tuple[xmlrpc.client.ServerProxy, str]:
    proxy = xmlrpc.client.ServerProxy(url)
    return proxy, value(proxy.session.login_with_password("root", "password", "2.0", "bench"))


def value(envelope: dict):
    if envelope["Status"] != "Success":
        raise RuntimeError(envelope["ErrorDescription"])
    return envelope["Value"]


def make_vms(url: str, count: int) -> list[str]:
    """``count`` halted VMs of 128 MiB from the first template's record."""
    proxy, session = login(url)
    templates = value(proxy.VM.get_all_records_where(session, 'field "is_a_template" = "true"'))
    base = min(templates.values(), key=lambda r: r["name_label"])
    vms = []
    for i in range(count):
        rec = dict(base, name_label=f"bench-{i}", is_a_template=False,
                   other_config={}, memory_static_min=str(64 * MiB),
                   memory_dynamic_min=str(128 * MiB), memory_dynamic_max=str(128 * MiB),
                   memory_static_max=str(128 * MiB))
        vms.append(value(proxy.VM.create(session, rec)))
    return vms


# -- the measured part ----------------------------------------------------------------------
def watch(url: str, run: Run, expected: int, stop: threading.Event) -> None:
    """One session, one event.from loop on class task: note when each task
    is first seen in a final state."""
    proxy, session = login(url)
    token = value(getattr(proxy, "event.from")(session, ["task"], "", 0.0))["token"]
    watching.set()
    while not stop.is_set() and len(run.seen) < expected:
        batch = value(getattr(proxy, "event.from")(session, ["task"], token, 5.0))
        now = time.monotonic()
        token = batch["token"]
        for ev in batch["events"]:
            snap = ev.get("snapshot") or {}
            if snap.get("status") in FINAL and ev["ref"] not in run.seen:
                run.seen[ev["ref"]] = (now, snap["status"])


watching = threading.Event()


def start_all(url: str, vms: list[str], run: Run) -> None:
    """One thread and connection per VM; all call Async.VM.start together."""
    proxy, session = login(url)
    ready = threading.Barrier(len(vms) + 1)
    lock = threading.Lock()

    def one(vm: str) -> None:
        p = xmlrpc.client.ServerProxy(url)
        value(p.session.get_this_host(session, session))  # open the connection first
        ready.wait()
        issued = time.monotonic()
        task = value(getattr(p, "Async.VM.start")(session, vm, False, False))
        done = time.monotonic()
        with lock:
            run.issued[task], run.returned[task] = issued, done

    threads = [threading.Thread(target=one, args=(vm,)) for vm in vms]
    for t in threads:
        t.start()
    ready.wait()
    for t in threads:
        t.join()
    run.start = min(run.issued.values())  # the first call leaving a client thread


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def report(run: Run, count: int, duration: float, mode: str) -> None:
    print(f"{count} concurrent Async.VM.start, {duration:.2f} s of work each, "
          f"simulator {mode}")
    if not run.seen:
        print("  no task finished")
        return
    last = max(t for t, _ in run.seen.values())
    wall = last - run.start
    call = [run.returned[t] - run.issued[t] for t in run.issued]
    latency = [run.seen[t][0] - run.issued[t] for t in run.issued if t in run.seen]
    statuses = {s: sum(1 for _, st in run.seen.values() if st == s) for s in FINAL}
    print(f"  Async calls returned: p50 {pct(call, 50):.3f} s, p99 {pct(call, 99):.3f} s, "
          f"all within {max(run.returned.values()) - run.start:.3f} s")
    print(f"  wall time to the last task seen finished: {wall:.3f} s "
          f"= {wall / duration:.2f}x the ideal {duration:g} s (target < 1.5x)")
    print(f"  per task, call -> seen finished by event.from: p50 {pct(latency, 50):.3f} s "
          f"({pct(latency, 50) / duration:.2f}x), p99 {pct(latency, 99):.3f} s "
          f"({pct(latency, 99) / duration:.2f}x), mean {statistics.fmean(latency):.3f} s")
    print(f"  beyond the {duration:g} s of work: p50 {pct(latency, 50) - duration:.3f} s, "
          f"p99 {pct(latency, 99) - duration:.3f} s")
    print(f"  tasks: {len(run.issued)} issued, {len(run.seen)} seen finished "
          f"({', '.join(f'{n} {s}' for s, n in statuses.items() if n)})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.sim_async_start")
    p.add_argument("--vms", type=int, default=200)
    p.add_argument("--duration", type=float, default=1.0)
    p.add_argument("--in-process", action="store_true")
    args = p.parse_args(argv)

    url, stop_sim = start_simulator(args.in_process)
    stop = threading.Event()
    try:
        vms = make_vms(url, args.vms)
        SimControl(url).set_duration("VM.start", args.duration)
        run = Run()
        watching.clear()
        watcher = threading.Thread(target=watch, args=(url, run, len(vms), stop), daemon=True)
        watcher.start()
        watching.wait(30)
        start_all(url, vms, run)
        watcher.join(60 + 2 * args.duration)
        report(run, len(vms), args.duration, "in-process" if args.in_process
               else "in its own process")
        proxy, session = login(url)
        running = sum(1 for vm in vms if value(proxy.VM.get_power_state(session, vm)) == "Running")
        print(f"  VMs running afterwards: {running}/{len(vms)}")
        return 0
    finally:
        stop.set()
        stop_sim()
