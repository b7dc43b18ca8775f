"""Real databases for functional tests: SQLite, PostgreSQL and MariaDB.

Import the fixtures into the conftest.py of your test directory (importing
them into a test module works too, but ruff then flags each use as F811)::

    # tests/functional/<yours>/conftest.py
    from tests.functional.db_fixtures import database, database_url  # noqa: F401

    # tests/functional/<yours>/test_x.py
    def test_something(database_url):      # runs three times: sqlite, postgresql, mysql
        db = Database(database_url)         # schema migrated to head, tables empty
        ...

    def test_other(database):               # the same, as a ready compute_agent.db.api.Database
        database.create_instance({...})

Fixtures
  ``database_url``  function scope, parametrized over BACKENDS (ids "sqlite",
                    "postgresql", "mysql"). One database per backend is created
                    per test session (named ``ca_<random>``, a temp file for
                    SQLite), migrated once, emptied before every test, and
                    dropped when the session ends.
  ``database``      a ``Database`` on ``database_url``, disposed after the test.
  ``empty_database_url``  function scope, parametrized the same way: a new, EMPTY
                    (unmigrated) database of the test's own, dropped after it.

To pick backends in one module, parametrize indirectly::

    @pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

Helpers (no pytest needed)
  ``make_database_url(backend) -> (url, cleanup)``  a new EMPTY (unmigrated) database;
                    call ``cleanup()`` to drop it.
  ``make_migrated_database_url(backend) -> (url, cleanup)``  the same, migrated to head.

Server addresses come from CA_TEST_POSTGRES_URL (default
postgresql+psycopg2://postgres@127.0.0.1:5432/postgres) and CA_TEST_MYSQL_URL
(default mysql+pymysql://root@127.0.0.1:3306/); the URLs handed to tests name
the created database. If a server is unreachable the test errors (it is never
skipped).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from compute_agent.db import migration, models
from compute_agent.db.api import Database

BACKENDS = ("sqlite", "postgresql", "mysql")

POSTGRES_ADMIN_URL = os.environ.get(
    "CA_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
MYSQL_ADMIN_URL = os.environ.get("CA_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/")

Cleanup = Callable[[], None]


def unique_name() -> str:
    return f"ca_{secrets.token_hex(6)}"


def _server_database(admin_url: str, create_sql: str, drop_sql: str,
                     isolation: str = "AUTOCOMMIT") -> tuple[str, Cleanup]:
    name = unique_name()
    admin = sa.create_engine(admin_url, isolation_level=isolation, poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(create_sql.format(name=name))
    finally:
        admin.dispose()
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    def cleanup() -> None:
        engine = sa.create_engine(admin_url, isolation_level=isolation,
                                  poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(drop_sql.format(name=name))
        finally:
            engine.dispose()

    return url, cleanup


def make_database_url(backend: str) -> tuple[str, Cleanup]:
    """Create a new, empty database on ``backend`` ("sqlite", "postgresql" or
    "mysql"). Returns its URL and a function that drops it."""
    if backend == "sqlite":
        tmpdir = tempfile.mkdtemp(prefix="ca_sqlite_")
        url = "sqlite:///" + os.path.join(tmpdir, "compute-agent.sqlite")
        return url, lambda: shutil.rmtree(tmpdir, ignore_errors=True)
    if backend == "postgresql":
        # WITH (FORCE) ends connections a test left open (PostgreSQL 13+).
        return _server_database(POSTGRES_ADMIN_URL, 'CREATE DATABASE "{name}"',
                                'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if backend == "mysql":
        return _server_database(
            MYSQL_ADMIN_URL,
            "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
            "DROP DATABASE IF EXISTS `{name}`")
    raise ValueError(f"unknown database backend {backend!r}; expected one of {BACKENDS}")


def make_migrated_database_url(backend: str) -> tuple[str, Cleanup]:
    """Like make_database_url, with the schema migrated to head."""
    url, cleanup = make_database_url(backend)
    try:
        migration.upgrade(url)
    except BaseException:
        cleanup()
        raise
    return url, cleanup


def empty_tables(url: str) -> None:
    """Delete every row of the agent's tables (children first)."""
    engine = sa.create_engine(make_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            for table in reversed(models.Base.metadata.sorted_tables):
                conn.execute(table.delete())
    finally:
        engine.dispose()


_STASH_KEY = pytest.StashKey[dict[str, str]]()


def _session_database(config: pytest.Config, backend: str) -> str:
    """The session's migrated database on ``backend``, created on first use;
    dropped when pytest unconfigures (the end of the session)."""
    urls = config.stash.setdefault(_STASH_KEY, {})
    if backend not in urls:
        url, cleanup = make_migrated_database_url(backend)
        config.add_cleanup(cleanup)
        urls[backend] = url
    return urls[backend]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a migrated, empty database; see the module docstring."""
    url = _session_database(request.config, request.param)
    empty_tables(url)
    yield url


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a new, empty (unmigrated) database of its own, dropped after
    the test; parametrized over BACKENDS like ``database_url``."""
    url, cleanup = make_database_url(request.param)
    try:
        yield url
    finally:
        cleanup()


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A Database on ``database_url``."""
    db = Database(database_url)
    try:
        yield db
    finally:
        db.dispose()
