"""The XenAPI driver under the eventlet backend (monkey-patched, as the agent
runs with concurrency_backend=eventlet), in a child process against a real
simulator: lifecycle, the event stream's power events and a prompt,
clean shutdown of the stream."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r'''
import eventlet
eventlet.monkey_patch()
import json, sys, time, uuid
from compute_agent.conf import CONF
from compute_agent.driver.base import Operation
from compute_agent.driver.xenapi.driver import XenAPIDriver

CONF([], project="compute-agent")
CONF.set_override("connection_url", sys.argv[1], group="xenserver")
CONF.set_override("connection_password", "password", group="xenserver")
driver = XenAPIDriver(CONF)
driver.init_host("eventlet-agent")
events = []
driver.set_power_state_listener(lambda u, info: events.append(info.power_state))
inst = {"uuid": str(uuid.uuid4()), "name": "green", "networks": [], "metadata": {},
        "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1}, "image": {"url": None}}
op = lambda name: Operation(inst["uuid"], name, "req-green")
out = {"spawn": driver.spawn(op("spawn"), inst).power_state}
driver.power_off(op("power_off"), inst)
out["off"] = driver.get_info(inst).power_state
driver.reboot(op("reboot"), inst, "HARD")
out["rebooted"] = driver.get_info(inst).power_state
driver.destroy(op("destroy"), inst)
deadline = time.monotonic() + 3
while len(events) < 3 and time.monotonic() < deadline:
    time.sleep(0.05)
out["events"] = events
t0 = time.monotonic()
driver.cleanup_host()
out["cleanup_s"] = time.monotonic() - t0
print(json.dumps(out))
'''


def test_driver_under_eventlet(sim):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, sim.url], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (out["spawn"], out["off"], out["rebooted"]) == (1, 4, 1)
    assert 4 in out["events"] and 1 in out["events"]
    assert out["cleanup_s"] < 3  # the long-poll is interrupted, not waited out
