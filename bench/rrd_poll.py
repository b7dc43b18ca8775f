"""One RRD poll of a host with many VMs: the simulator's ``/rrd_updates``
fetched and parsed by the agent's poller, XML against JSON side by side,
and the per-VM cost against a host with few VMs.

Prints, per format and VM count, the median poll time (request, streaming
parse, figures) and the document size, then the ratios JSON/XML and
100 VMs / 10 VMs (the cost should grow with the VMs, not with the number of
requests, which is one per poll either way).

    python -m bench rrd_poll [-- --vms 100 --rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import XenAPI

from compute_agent.driver.xenapi import rrd
from compute_agent.driver.xenapi.transport import TLSSettings
from xapisim.control_client import SimControl
from xapisim.server import Simulator

MiB = 1024 * 1024


def _record(name: str) -> dict:
    return {
        "name_label": name, "name_description": "", "user_version": "1",
        "is_a_template": False, "affinity": "OpaqueRef:NULL",
        "memory_static_max": str(256 * MiB), "memory_dynamic_max": str(256 * MiB),
        "memory_dynamic_min": str(256 * MiB), "memory_static_min": str(256 * MiB),
        "VCPUs_params": {}, "VCPUs_max": "2", "VCPUs_at_startup": "2",
        "actions_after_shutdown": "destroy", "actions_after_reboot": "restart",
        "actions_after_crash": "restart", "PV_bootloader": "pygrub", "PV_kernel": "",
        "PV_ramdisk": "", "PV_args": "", "PV_bootloader_args": "", "PV_legacy_args": "",
        "HVM_boot_policy": "", "HVM_boot_params": {}, "platform": {}, "PCI_bus": "",
        "other_config": {}, "recommendations": "", "domain_type": "pv",
    }


def measure(vms: int, rounds: int) -> dict[str, tuple[float, int]]:
    sim = Simulator(host_memory_mb=vms * 512 + 8192).start()
    try:
        session = XenAPI.Session(sim.url)
        session.xenapi.login_with_password("root", "password", "2.0", "bench")
        x = session.xenapi
        for i in range(vms):
            vm = x.VM.create(_record(f"b{i}"))
            x.VM.start(vm, False, False)
        host = sim.master_ref
        out = {}
        for fmt in ("xml", "json"):
            times = []
            for _ in range(rounds):
                poller = rrd.RrdPoller(sim.url, x.host.get_uuid(host), lambda: session._session,
                                       lambda: None, TLSSettings(), fmt=fmt)
                start = time.perf_counter()
                snap = poller.poll()
                figures = [rrd.vm_figures(v) for v in snap.vms.values()]
                times.append(time.perf_counter() - start)
                assert len(figures) == vms + 1
            out[fmt] = (statistics.median(times), SimControl(sim.url).http_requests(
                "/rrd_updates"))
            SimControl(sim.url).clear()
        session.xenapi.session.logout()
        return out
    finally:
        sim.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench rrd_poll")
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv or [])
    small = measure(max(1, args.vms // 10), args.rounds)
    big = measure(args.vms, args.rounds)
    for label, result in ((f"{max(1, args.vms // 10)} VMs", small), (f"{args.vms} VMs", big)):
        for fmt, (seconds, requests) in result.items():
            print(f"{label:>8} {fmt:>4}: {seconds * 1000:8.1f} ms per poll "
                  f"({requests} requests for {args.rounds} polls)")
    print(f"JSON/XML at {args.vms} VMs: {big['json'][0] / big['xml'][0]:.2f}x")
    print(f"{args.vms} VMs / {max(1, args.vms // 10)} VMs (XML): "
          f"{big['xml'][0] / small['xml'][0]:.2f}x")
    return 0
