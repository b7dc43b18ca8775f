"""The proxy's systemd unit, checked with systemd's own tools as the
agent's is (tests/functional/test_systemd.py), the console script it names,
and the proxy's refusals to start (exit 2: configuration, 3: database)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.functional.harness import write_config
from tests.functional.test_systemd import parse_unit

REPO = Path(__file__).resolve().parents[3]
UNIT = REPO / "systemd" / "compute-agent-novncproxy.service"


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart's program swapped for one that exists here."""
    program = parse_unit(UNIT)["Service"]["ExecStart"][0].split()[0]
    stand_in = tmp_path / "compute-agent-novncproxy"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(program, str(stand_in)))
    return copy


def test_verify_is_clean_and_sandbox_exposure_low(unit_copy: Path):
    proc = subprocess.run(["systemd-analyze", "verify", str(unit_copy)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20",
                           "--no-pager", str(unit_copy)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr


def test_unit_runs_the_console_script_declared_in_the_package():
    service = parse_unit(UNIT)["Service"]
    assert service["ExecStart"][0].split()[0].endswith("/bin/compute-agent-novncproxy")
    scripts = (REPO / "pyproject.toml").read_text()
    assert 'compute-agent-novncproxy = "compute_agent.cmd.novncproxy:main"' in scripts


def _run_proxy(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compute_agent.cmd.novncproxy",
                           "--config-file", str(config)],
                          capture_output=True, text=True, timeout=60)


def test_proxy_refuses_to_start_without_dom0_url_or_migrated_database(tmp_path: Path):
    no_url = write_config(tmp_path / "a.conf", {
        "database": {"connection": f"sqlite:///{tmp_path}/a.sqlite"}})
    done = _run_proxy(no_url)
    assert done.returncode == 2 and "xenserver.connection_url" in done.stderr
    unmigrated = write_config(tmp_path / "b.conf", {
        "database": {"connection": f"sqlite:///{tmp_path}/b.sqlite"},
        "xenserver": {"connection_url": "https://192.0.2.1"}})
    done = _run_proxy(unmigrated)
    assert done.returncode == 3 and "db sync" in done.stderr
