"""The compute-agent entry point, as a process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def run_agent(*args, timeout=60):
    return subprocess.run([str(BIN / "compute-agent"), *args], capture_output=True, text=True,
                          timeout=timeout, start_new_session=True)


def test_refuses_to_start_on_unmigrated_database(tmp_path):
    conf = tmp_path / "agent.conf"
    conf.write_text(f"[DEFAULT]\nhost = t\ncompute_driver = fake\ntransport_url = fake:///\n"
                    f"[database]\nconnection = sqlite:///{tmp_path}/db.sqlite\n")
    proc = run_agent("--config-file", str(conf))
    assert proc.returncode == 3
    assert "Refusing to start: the database is not migrated" in proc.stderr
    assert "compute-agent-manage db sync" in proc.stderr


def test_bad_backend_is_a_configuration_error(tmp_path):
    conf = tmp_path / "agent.conf"
    conf.write_text("[DEFAULT]\nconcurrency_backend = gevent\n")
    proc = run_agent("--config-file", str(conf))
    assert proc.returncode == 2
    assert "concurrency_backend must be one of" in proc.stderr


def test_version():
    proc = run_agent("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() or proc.stderr.strip()
