"""`make demo` keeps working: the demo runs the agent with the XenAPI driver
against the in-process simulator and checks dom0 against the database."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.timeout(180)
def test_demo_runs_and_dom0_matches_database():
    proc = subprocess.run([sys.executable, "-m", "compute_agent.demo"], capture_output=True,
                          text=True, timeout=170)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    assert "'driver': 'XenAPIDriver'" in out
    assert out.count("-> match") == 5
    assert "OK: the simulator and the database agree" in out
    for state in ("building", "spawning", "powering_off", "stopped", "powering_on",
                  "rebooting", "rebooting_hard", "deleting", "deleted",
                  "pausing", "paused", "unpausing", "suspending", "suspended", "resuming",
                  "rescuing", "rescued", "unrescuing", "resize_migrating", "resized",
                  "resize_confirming", "resize_reverting"):
        assert state in out
    assert "INSTANCE_BUSY" in out and "INSTANCE_NOT_FOUND" in out
    # a build from an image over HTTP, then one from the image cache
    assert "demo-img-1 active" in out and "image downloads during this build: 1" in out
    assert "image downloads during this build: 0" in out
    assert "second build cloned the cached base VDI: nothing downloaded" in out
    # the revert brought back the flavor of the confirmed resize
    assert "demo-2 after the revert: {'vcpus': 3, 'memory_mb': 1536, 'root_gb': 3}" in out
    assert "pause, unpause, suspend, resume, rescue, unrescue" in out
    assert "console: 3 lines" in out and "diagnostics: instance_uuid=" in out
    assert "attached: port_id=demo-port-1, status=attached" in out and "detached: True" in out
