"""URL handling and migration metadata (no database server needed)."""

import pytest
from sqlalchemy.engine import make_url

from compute_agent.db import engine, migration


@pytest.mark.parametrize("url,expected", [
    ("mysql://root@db/ca", "mysql+pymysql://root@db/ca?charset=utf8mb4"),
    ("mysql+pymysql://root@db/ca?charset=utf8", "mysql+pymysql://root@db/ca?charset=utf8"),
    ("postgresql://u@db/ca", "postgresql+psycopg2://u@db/ca"),
    ("sqlite:////var/lib/ca.sqlite", "sqlite:////var/lib/ca.sqlite"),
])
def test_normalize_url(url, expected):
    assert engine.normalize_url(url) == make_url(expected)


def test_safe_url_hides_the_password():
    text = engine.safe_url("postgresql+psycopg2://ca:s3cret@db/ca")
    assert "s3cret" not in text and "***" in text
    assert engine.safe_url("not a url") == "<invalid database URL>"


def test_migrations_have_a_single_head():
    assert migration.head() == "0004_attachments"


def test_memory_sqlite_shares_one_database():
    # In-memory SQLite (handy in unit tests) must keep its schema across
    # connections, which only a single shared connection does.
    eng = engine.make_engine("sqlite://")
    try:
        migration.upgrade(eng)
        assert migration.current(eng) == migration.head()
    finally:
        eng.dispose()


def test_memory_sqlite_database_is_safe_across_threads():
    # Unit tests of other layers use Database("sqlite://") from several
    # threads; their transactions must not interleave on the shared connection.
    import threading

    from compute_agent.db.api import Database

    db = Database("sqlite://")
    migration.upgrade(db.engine)
    failures = []

    def worker(n):
        try:
            uuid = f"00000000-0000-4000-8000-{n:012d}"
            db.create_instance({"uuid": uuid, "name": str(n)})
            for p in range(20):
                db.update_instance(uuid, {"progress": p}, expected_task_state=None)
                db.list_instances()
        except Exception as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not failures, failures
    assert [i["progress"] for i in db.list_instances()] == [19] * 4
    db.dispose()
