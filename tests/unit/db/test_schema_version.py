"""The daemon's schema check without Alembic (schema_version.py) agrees with
Alembic (migration.py) on SQLite files."""

import sqlalchemy as sa

from compute_agent.db import migration, schema_version


def test_head_is_alembics_head():
    assert schema_version.HEAD == migration.head()


def test_current_agrees_with_alembic_before_and_after_migrating(tmp_path):
    url = f"sqlite:///{tmp_path}/ca.sqlite"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert schema_version.current(conn) is None
        assert migration.current(url) is None
        migration.upgrade(url, "0002_console_tokens")
        with engine.connect() as conn:
            assert schema_version.current(conn) == migration.current(url) == (
                "0002_console_tokens")
        migration.upgrade(url)
        with engine.connect() as conn:
            assert schema_version.current(conn) == migration.current(url) == (
                schema_version.HEAD)
        migration.downgrade(url, "base")
        with engine.connect() as conn:
            assert schema_version.current(conn) is None
    finally:
        engine.dispose()
