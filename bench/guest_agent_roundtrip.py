"""What one guest agent command costs over a bare plugin call, side by side
in one run on an in-process simulator (task duration 0): ``host.call_plugin``
of ``echo`` (a plugin process, nothing else) against ``guest_agent version``
(a plugin process that writes the request to xenstore through
``xenstore-write``, polls ``xenstore-read`` every 0.1 s until the simulated
agent answers, then ``xenstore-rm``).

Prints the median and p95 of each and the ratio of the medians; the
protocol's poll interval bounds the extra latency (expect well under 1 s per
command; a password change is two commands).

    python -m bench guest_agent_roundtrip [-- --calls 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import XenAPI

from xapisim.server import Simulator

GiB = 1024**3


def _vm(x) -> str:
    mem = str(GiB)
    vm = x.VM.create({
        "name_label": "bench", "name_description": "", "user_version": "1",
        "is_a_template": False, "affinity": "OpaqueRef:NULL", "memory_static_max": mem,
        "memory_dynamic_max": mem, "memory_dynamic_min": mem, "memory_static_min": mem,
        "VCPUs_params": {}, "VCPUs_max": "1", "VCPUs_at_startup": "1",
        "actions_after_shutdown": "destroy", "actions_after_reboot": "restart",
        "actions_after_crash": "restart", "PV_bootloader": "pygrub", "PV_kernel": "",
        "PV_ramdisk": "", "PV_args": "", "PV_bootloader_args": "", "PV_legacy_args": "",
        "HVM_boot_policy": "", "HVM_boot_params": {}, "platform": {}, "PCI_bus": "",
        "other_config": {}, "recommendations": "", "domain_type": "pv"})
    x.VM.start(vm, False, False)
    return vm


def _timed(fn, calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench guest_agent_roundtrip")
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args(argv or [])
    sim = Simulator(task_duration=0.0).start()
    session = XenAPI.Session(sim.url)
    try:
        session.xenapi.login_with_password("root", "password", "2.0", "bench")
        x = session.xenapi
        vm = _vm(x)
        host, domid = x.VM.get_resident_on(vm), x.VM.get_domid(vm)
        echo = _timed(lambda: x.host.call_plugin(host, "echo", "echo", {"a": "b"}), args.calls)
        agent = _timed(lambda: x.host.call_plugin(
            host, "guest_agent", "version",
            {"dom_id": domid, "id": str(uuid.uuid4()), "timeout": "10"}), args.calls)
    finally:
        try:
            session.xenapi.session.logout()
        finally:
            sim.stop()
    me, ma = statistics.median(echo), statistics.median(agent)
    print(f"plugin echo          : median {me * 1000:7.1f} ms  p95 {_p95(echo) * 1000:7.1f} ms")
    print(f"guest agent 'version': median {ma * 1000:7.1f} ms  p95 {_p95(agent) * 1000:7.1f} ms")
    print(f"ratio guest agent / bare plugin (medians): {ma / me:.2f}x "
          f"(+{(ma - me) * 1000:.0f} ms per command)")
    return 0
