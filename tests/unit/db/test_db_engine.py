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
    assert migration.head() == "0001_initial"


def test_memory_sqlite_shares_one_database():
    # In-memory SQLite (handy in unit tests) must keep its schema across
    # connections, which only a single shared connection does.
    eng = engine.make_engine("sqlite://")
    try:
        migration.upgrade(eng)
        assert migration.current(eng) == migration.head()
    finally:
        eng.dispose()
