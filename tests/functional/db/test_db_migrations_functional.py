"""Migrations on real SQLite, PostgreSQL and MariaDB databases."""

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from compute_agent import exceptions
from compute_agent.db import engine as db_engine
from compute_agent.db import migration, models
from compute_agent.db.api import Database
from tests.functional.harness import free_port


def test_migrate_from_empty_and_check_migrated(empty_database_url):
    db = Database(empty_database_url)
    try:
        assert migration.current(empty_database_url) is None
        with pytest.raises(exceptions.DatabaseNotMigrated) as err:
            db.check_migrated()
        assert err.value.params == ["none", migration.head()]
        assert "compute-agent-manage db sync" in err.value.message

        migration.upgrade(empty_database_url)
        assert migration.current(empty_database_url) == migration.head()
        db.check_migrated()

        migration.upgrade(empty_database_url)  # idempotent
        db.check_migrated()
    finally:
        db.dispose()


def test_migrated_schema_matches_the_models(empty_database_url):
    migration.upgrade(empty_database_url)
    engine = db_engine.make_engine(empty_database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, models.Base.metadata) == []
            tables = set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert tables == {
        "alembic_version", "instances", "instance_faults", "instance_actions",
        "instance_action_events", "tracked_tasks", "compute_nodes", "services", "console_tokens",
        "instance_migrations",
        "volume_attachments", "port_attachments",
    }


def test_downgrade_to_base_and_upgrade_again(empty_database_url):
    migration.upgrade(empty_database_url)
    migration.downgrade(empty_database_url, "base")
    assert migration.current(empty_database_url) is None
    engine = db_engine.make_engine(empty_database_url)
    try:
        with engine.connect() as conn:
            assert set(sa.inspect(conn).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    migration.upgrade(empty_database_url)
    assert migration.current(empty_database_url) == migration.head()


def test_a_database_ahead_of_the_code_is_refused(empty_database_url):
    migration.upgrade(empty_database_url)
    engine = db_engine.make_engine(empty_database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff_future'"))
    finally:
        engine.dispose()
    db = Database(empty_database_url)
    try:
        with pytest.raises(exceptions.DatabaseNotMigrated) as err:
            db.check_migrated()
        assert err.value.params == ["ffff_future", migration.head()]
    finally:
        db.dispose()


@pytest.mark.parametrize("scheme", ["postgresql+psycopg2", "mysql+pymysql"])
def test_check_migrated_on_an_unreachable_server(scheme):
    from compute_agent.db import errors

    db = Database(f"{scheme}://ca:s3cret@127.0.0.1:{free_port()}/ca")
    try:
        with pytest.raises(errors.DatabaseUnavailable) as err:
            db.check_migrated()
    finally:
        db.dispose()
    assert err.value.code == "DATABASE_UNAVAILABLE"
    assert "s3cret" not in err.value.message and "***" in err.value.message
