"""compute-agent-manage run as a real subprocess against each backend."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from compute_agent.db import migration
from compute_agent.db.api import Database
from tests.functional.db_fixtures import BACKENDS, make_database_url

MANAGE = str(Path(sys.executable).parent / "compute-agent-manage")


def _manage(conf_file, *args):
    return subprocess.run([MANAGE, "--config-file", str(conf_file), *args],
                          capture_output=True, text=True, timeout=50,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def _conf_file(tmp_path, url):
    path = tmp_path / "compute-agent.conf"
    path.write_text(f"[database]\nconnection = {url}\n")
    return path


@pytest.fixture(params=BACKENDS)
def empty_url(request):
    url, cleanup = make_database_url(request.param)
    yield url
    cleanup()


def test_db_sync_and_version(empty_url, tmp_path):
    conf = _conf_file(tmp_path, empty_url)
    head = migration.head()

    proc = _manage(conf, "db", "version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"current: none\nhead: {head}\n"

    proc = _manage(conf, "db", "sync")
    assert proc.returncode == 0, proc.stderr
    assert f"upgraded from empty to revision {head}" in proc.stdout

    proc = _manage(conf, "db", "sync")  # idempotent
    assert proc.returncode == 0, proc.stderr
    assert "already at revision" in proc.stdout

    proc = _manage(conf, "db", "version")
    assert proc.stdout == f"current: {head}\nhead: {head}\n"

    db = Database(empty_url)
    try:
        db.check_migrated()
    finally:
        db.dispose()


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("url", [
    "postgresql+psycopg2://ca:s3cret@127.0.0.1:{port}/ca",
    "mysql+pymysql://ca:s3cret@127.0.0.1:{port}/ca",
    "sqlite:////proc/no-such-dir/ca.sqlite",
])
@pytest.mark.parametrize("command", ["sync", "version"])
def test_unreachable_database_is_a_clear_error(tmp_path, url, command):
    conf = _conf_file(tmp_path, url.format(port=_closed_port()))
    proc = _manage(conf, "db", command)
    assert proc.returncode == 1
    assert proc.stderr.startswith("compute-agent-manage: Cannot reach the database at ")
    assert "Traceback" not in proc.stderr
    assert "s3cret" not in proc.stderr + proc.stdout


def test_usage_error(tmp_path):
    proc = _manage(_conf_file(tmp_path, "sqlite://"), "db")
    assert proc.returncode == 2
    assert "usage:" in proc.stderr
