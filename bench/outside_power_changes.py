"""How soon a VM that another XenAPI client pauses, suspends, unpauses or
resumes shows in the agent's database (issue 8: "picked up by power sync
within a second, as a guest crash is today").

An in-process simulator (its operations take ``--duration`` seconds of
work), a ComputeManager with the XenAPI driver on a SQLite database, and
``--instances`` instances built through it. A second SDK session then
pauses, unpauses, suspends and resumes every VM; for each change the time
from the outside call's return to the database showing the new vm_state
and power state is measured, side by side for the two ways the agent can
learn it:

  (a) the TaskWatcher's event.from stream (``[tasks] watcher_mode =
      events``, the default) feeding power sync at once;
  (b) the periodic power sync alone (``watcher_mode = polling``: no
      events), run every ``--sync-interval`` seconds, as a dom0 whose
      event stream misbehaves would get.

Prints p50 / p99 / max per way and the ratio of (a)'s p99 to the 1 s
target. ``--strict`` exits 1 if (a)'s p99 misses the target.

    python -m bench outside_power_changes [-- --instances 10 --strict]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

TARGET_S = 1.0
CHANGES = (("pause", "paused", 3), ("unpause", "active", 1), ("suspend", "suspended", 7),
           ("resume", "active", 1))


def _manager(conf: Any, url: str, sim_url: str, mode: str, host: str) -> Any:
    from compute_agent.db.api import Database
    from compute_agent.manager import ComputeManager

    conf.set_override("compute_driver", "xenapi")
    conf.set_override("connection_url", sim_url, "xenserver")
    conf.set_override("connection_username", "root", "xenserver")
    conf.set_override("connection_password", "password", "xenserver")
    conf.set_override("watcher_mode", mode, "tasks")
    conf.set_override("poll_interval", 0.05, "tasks")
    manager = ComputeManager(conf, Database(url), host=host)
    manager.init_host()
    return manager


def _measure(manager: Any, sim_url: str, uuids: list[str], sync_every: float | None,
             ) -> list[float]:
    import XenAPI

    from compute_agent.context import get_admin_context

    stop = threading.Event()
    if sync_every is not None:
        def syncing() -> None:
            while not stop.wait(sync_every):
                manager.sync_power_states(get_admin_context())
        threading.Thread(target=syncing, daemon=True).start()
    session = XenAPI.Session(sim_url)
    session.xenapi.login_with_password("root", "password", "2.0", "bench")
    x = session.xenapi
    latencies = []
    try:
        refs = {u: manager.db.get_instance(u, internal=True)["vm_ref"] for u in uuids}
        for call, vm_state, power in CHANGES:
            for uuid in uuids:
                args = (False, False) if call == "resume" else ()
                getattr(x.VM, call)(refs[uuid], *args)
                returned = time.monotonic()
                while True:
                    inst = manager.db.get_instance(uuid)
                    if inst["vm_state"] == vm_state and inst["power_state"] == power:
                        break
                    if time.monotonic() - returned > 30:
                        raise SystemExit(f"{call} of {uuid} never showed: {inst}")
                    time.sleep(0.005)
                latencies.append(time.monotonic() - returned)
    finally:
        stop.set()
        x.session.logout()
    return latencies


def _run_way(mode: str, instances: int, duration: float, sync_every: float | None
             ) -> list[float]:
    from compute_agent.conf import CONF
    from compute_agent.context import new_context
    from compute_agent.db import migration
    from compute_agent.rpc import transport
    from xapisim.server import Simulator

    transport.register_opts(CONF)
    CONF([], project="compute-agent", default_config_files=[])
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
        migration.upgrade(url)
        sim = Simulator(task_duration=duration).start()
        manager = None
        try:
            manager = _manager(CONF, url, sim.url, mode, f"bench-{mode}")
            uuids = []
            for i in range(instances):
                uuid = str(uuidlib.uuid4())
                manager.build_instance(new_context(), {
                    "uuid": uuid, "name": f"outside-{i}", "image": {"id": None, "url": None,
                                                                    "disk_format": None},
                    "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1}})
                uuids.append(uuid)
            manager.wait_for_operations(120)
            return _measure(manager, sim.url, uuids, sync_every)
        finally:
            if manager is not None:
                manager.shutdown(10)
                manager.db.dispose()
            sim.stop()
            CONF.reset()
            CONF.clear_override("compute_driver")


def _summary(name: str, values: list[float]) -> float:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    print(f"  {name:34} n={len(values):3}  p50 {statistics.median(values) * 1000:7.1f} ms  "
          f"p99 {p99 * 1000:7.1f} ms  max {max(values) * 1000:7.1f} ms", flush=True)
    return p99


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.outside_power_changes")
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--duration", type=float, default=0.05,
                        help="seconds each simulated dom0 operation takes")
    parser.add_argument("--sync-interval", type=float, default=2.0,
                        help="periodic power sync interval of way (b)")
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args(argv or [])
    events = _run_way("events", args.instances, args.duration, None)
    polling = _run_way("polling", args.instances, args.duration, args.sync_interval)
    print(f"outside pause/unpause/suspend/resume of {args.instances} VMs, until the "
          f"database shows it:")
    p99 = _summary("(a) event stream + power sync", events)
    _summary(f"(b) periodic sync every {args.sync_interval:g} s", polling)
    print(f"  (a) p99 / target {TARGET_S:g} s = {p99 / TARGET_S:.3f}; (b) median / (a) median "
          f"= {statistics.median(polling) / statistics.median(events):.1f}x")
    return 1 if args.strict and p99 > TARGET_S else 0
