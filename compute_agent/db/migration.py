"""Schema migrations, driven through Alembic's Python API.

No alembic.ini is needed at run time: the script location is the
``migrations`` directory shipped inside this package and the database is
handed to Alembic as an open connection.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Connection, Engine

from compute_agent.db import engine as db_engine

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")

Target = str | URL | Engine


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS_DIR)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The revision the code expects (the single head of the migrations)."""
    heads = ScriptDirectory.from_config(_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"migrations must have exactly one head, found {heads}")
    return heads[0]


@contextmanager
def _engine(target: Target) -> Iterator[Engine]:
    if isinstance(target, Engine):
        yield target
        return
    engine = db_engine.make_engine(target)
    try:
        yield engine
    finally:
        engine.dispose()


def current(target: Target) -> str | None:
    """The revision the database is at, or None for a database that was
    never migrated (no tables at all)."""
    with _engine(target) as engine, engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(target: Target, revision: str = "head") -> None:
    """Create or upgrade the schema to ``revision``; a no-op at that revision."""
    with _engine(target) as engine, engine.begin() as conn:
        command.upgrade(_config(conn), revision)


def downgrade(target: Target, revision: str) -> None:
    """Downgrade the schema to ``revision`` ("base" drops every table)."""
    with _engine(target) as engine, engine.begin() as conn:
        command.downgrade(_config(conn), revision)
