"""Host maintenance: how long emptying a host of 50 instances takes, against
the ideal that the live-migration bound allows.

A simulator pool of two hosts (its own process, as dom0 would be) with
shared storage, where every VM.pool_migrate takes 2 s; two agents (a
ComputeManager with the XenAPI driver each, in this process, on one SQLite
database; they talk to each other directly instead of over RabbitMQ). 50
instances are built on host A, then ``set_host_maintenance(True)`` moves
them all to host B with at most ``[DEFAULT] max_concurrent_live_migrations``
at a time. The ideal is ceil(50 / bound) x 2 s; the target is within 1.2x.
Printed side by side: the wall time, the ideal, the ratio, and the same for
bound 1 (serial) to show the bound is what makes the difference.

    python -m bench evacuation [-- --instances 50 --duration 2 --bound 5 --strict]
"""

from __future__ import annotations

import argparse
import math
import pathlib
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
USER, PASSWORD = "root", "password"
GiB = 1024**3


def serve(duration: float) -> int:
    """The simulator child: a pool of two hosts, shared storage as the
    default SR, pool_migrate taking ``duration``; prints its URLs."""
    import XenAPI

    from xapisim.server import Simulator

    sim = Simulator(hosts=2, task_duration=0.02, host_memory_mb=262144)
    sim.faults.set_duration("VM.pool_migrate", duration)
    sim.start()
    session = XenAPI.Session(sim.url)
    session.xenapi.login_with_password(USER, PASSWORD, "2.0", "bench")
    x = session.xenapi
    pool = x.pool.get_all()[0]
    sr = x.SR.create(x.pool.get_master(pool), {}, str(2000 * GiB), "shared", "", "nfs", "user",
                     True, {})
    x.pool.set_default_SR(pool, sr)
    print(" ".join(sim.urls), flush=True)
    sys.stdin.read()  # until the parent closes it
    sim.stop()
    return 0


class LocalPeers:
    """The agent-to-agent calls, delivered to the other manager in process."""

    def __init__(self) -> None:
        self.managers: dict[str, Any] = {}

    def prepare_live_migration(self, host, instance_uuid, ctxt=None, timeout=None):
        return self.managers[host].prepare_live_migration(ctxt, instance_uuid)

    def adopt_instance(self, host, instance_uuid, ctxt=None, timeout=None):
        return self.managers[host].adopt_instance(ctxt, instance_uuid)

    def abort_live_migration(self, host, instance_uuid, ctxt=None):
        self.managers[host].abort_live_migration(ctxt, instance_uuid)


def agent_conf(db_url: str, url: str, bound: int):
    from oslo_config import cfg

    from compute_agent.conf import opts

    conf = cfg.ConfigOpts()
    for group, options in opts.list_opts():
        conf.register_opts(options, group=None if group == "DEFAULT" else group)
    conf([], project="compute-agent-bench", default_config_files=[])
    conf.set_override("max_concurrent_live_migrations", bound)
    conf.set_override("max_concurrent_builds", 20)
    conf.set_override("connection", db_url, "database")
    conf.set_override("connection_url", url, "xenserver")
    conf.set_override("connection_username", USER, "xenserver")
    conf.set_override("connection_password", PASSWORD, "xenserver")
    conf.set_override("connection_concurrent", 20, "xenserver")
    return conf


def evacuate(urls: list[str], instances: int, bound: int) -> float:
    """Seconds from set_host_maintenance to the host being empty."""
    from compute_agent.context import new_context
    from compute_agent.db import migration
    from compute_agent.db.api import Database
    from compute_agent.driver.xenapi.driver import XenAPIDriver
    from compute_agent.manager import ComputeManager

    workdir = tempfile.mkdtemp(prefix="bench-evacuation-")
    db_url = f"sqlite:///{workdir}/agents.sqlite"
    migration.upgrade(db_url)
    db = Database(db_url)
    peers = LocalPeers()
    managers = []
    for name, url in (("host-a", urls[0]), ("host-b", urls[1])):
        conf = agent_conf(db_url, url, bound)
        mgr = ComputeManager(conf, db, driver=XenAPIDriver(conf), host=name, peers=peers)
        mgr.init_host()
        peers.managers[name] = mgr
        managers.append(mgr)
    a, b = managers
    try:
        for i in range(instances):
            a.build_instance(new_context(), {
                "uuid": str(uuidlib.uuid4()), "name": f"ev-{i}",
                "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1},
                "image": {"id": None, "url": None, "disk_format": None},
                "networks": [], "metadata": {}})
        a.wait_for_operations(600)
        start = time.monotonic()
        a.set_host_maintenance(new_context(), True, ["host-b"])
        a.maintenance.wait(3600)
        wall = time.monotonic() - start
        status = a.maintenance.status()
        if status["failed"] or len(status["moved"]) != instances:
            raise RuntimeError(f"evacuation incomplete: {status}")
        return wall
    finally:
        for mgr in managers:
            mgr.shutdown(30)
        db.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.evacuation")
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--bound", type=int, default=5)
    parser.add_argument("--strict", action="store_true", help="exit 1 above 1.2x")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv or [])
    if args.serve:
        return serve(args.duration)
    results = []
    for bound in (args.bound, 1):
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.evacuation", "--serve", "--duration",
             str(args.duration)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True)
        try:
            assert child.stdout is not None
            urls = child.stdout.readline().split()
            wall = evacuate(urls, args.instances, bound)
        finally:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(30)
        ideal = math.ceil(args.instances / bound) * args.duration
        results.append((bound, wall, ideal))
        print(f"bound {bound:2}: {args.instances} instances evacuated in {wall:6.1f} s, "
              f"ideal {ideal:6.1f} s, ratio {wall / ideal:.2f}x", flush=True)
    ratio = results[0][1] / results[0][2]
    print(f"target: within 1.20x of the ideal at bound {args.bound}: "
          f"{'met' if ratio <= 1.2 else 'NOT met'} ({ratio:.2f}x)")
    return 1 if args.strict and ratio > 1.2 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
