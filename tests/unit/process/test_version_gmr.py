"""Version string and the Guru Meditation Report hook."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

from compute_agent.process import version


def test_version_matches_installed_metadata():
    assert version.version_string() == metadata.version("compute-agent")


def test_version_object_for_reports():
    assert version.version_string_with_package() == f"compute-agent {version.version_string()}"
    assert version.vendor_string() and version.product_string() == "compute-agent"


def test_sigusr2_dumps_a_report_with_version_and_masked_secrets():
    # A child interpreter, so the signal handler is not installed in the test runner.
    code = """
import os, signal
from oslo_config import cfg
from compute_agent.process import gmr
conf = cfg.CONF  # the report prints the global configuration
conf.register_opts([cfg.StrOpt('pw', secret=True, default='hunter2')])
conf([], project='compute-agent-test', default_config_files=[])
gmr.setup(conf)
os.kill(os.getpid(), signal.SIGUSR2)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    report = proc.stdout + proc.stderr
    assert "Guru Meditation" in report
    assert f"compute-agent {version.version_string()}" in report
    assert "hunter2" not in report
    assert "pw = ***" in report
