"""Alembic environment of compute-agent.

compute_agent.db.migration runs Alembic programmatically and hands over an
open connection in ``config.attributes["connection"]``. Developers running the
``alembic`` command (with compute_agent/db/alembic.ini) give the database as
``-x url=...``, in ``sqlalchemy.url`` or in COMPUTE_AGENT_DB_URL.
"""

import os

from alembic import context

from compute_agent.db import engine as db_engine
from compute_agent.db import models

config = context.config
target_metadata = models.Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    url = url or os.environ.get("COMPUTE_AGENT_DB_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database URL: pass -x url=... or set COMPUTE_AGENT_DB_URL")
    return url


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(url=str(db_engine.normalize_url(_url())), target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = db_engine.make_engine(_url())
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
