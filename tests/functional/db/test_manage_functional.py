"""compute-agent-manage run as a real subprocess against each backend."""

import os

import pytest

from compute_agent.db import migration
from compute_agent.db.api import Database
from tests.functional.harness import free_port, manage, write_config


def _manage(conf_file, *args):
    return manage(conf_file, *args, timeout=50, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def _conf_file(tmp_path, url):
    return write_config(tmp_path / "compute-agent.conf", {"database": {"connection": url}})


def test_db_sync_and_version(empty_database_url, tmp_path):
    conf = _conf_file(tmp_path, empty_database_url)
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

    db = Database(empty_database_url)
    try:
        db.check_migrated()
    finally:
        db.dispose()


@pytest.mark.parametrize("url", [
    "postgresql+psycopg2://ca:s3cret@127.0.0.1:{port}/ca",
    "mysql+pymysql://ca:s3cret@127.0.0.1:{port}/ca",
    "sqlite:////proc/no-such-dir/ca.sqlite",
])
@pytest.mark.parametrize("command", ["sync", "version"])
def test_unreachable_database_is_a_clear_error(tmp_path, url, command):
    conf = _conf_file(tmp_path, url.format(port=free_port()))
    proc = _manage(conf, "db", command)
    assert proc.returncode == 1
    assert proc.stderr.startswith("compute-agent-manage: Cannot reach the database at ")
    assert "Traceback" not in proc.stderr
    assert "s3cret" not in proc.stderr + proc.stdout


def test_usage_error(tmp_path):
    proc = _manage(_conf_file(tmp_path, "sqlite://"), "db")
    assert proc.returncode == 2
    assert "usage:" in proc.stderr
