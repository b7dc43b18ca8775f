"""Is the database reachable and at the schema revision this code needs?"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from oslo_db import exception as db_exc

from compute_agent.checks import Result, failure, first_line, success
from compute_agent.db import engine as db_engine
from compute_agent.db import migration
from compute_agent.db.guard import reason_of

NAME = "database"


def check(url: str, timeout: float, migrations_dir: str = migration.MIGRATIONS_DIR) -> Result:
    """``migrations_dir``: the Alembic scripts the code ships (tests pass others)."""
    shown = db_engine.safe_url(url)
    try:
        parsed = db_engine.normalize_url(url)
    except (sa.exc.ArgumentError, ValueError) as exc:
        return failure(NAME, f"[database] connection is not a valid URL: {first_line(exc)}")

    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if db_engine.is_sqlite_memory(parsed):
            return failure(NAME, "in-memory SQLite is lost when the agent exits; "
                                 "set [database] connection to a file or a server")
        # Connecting would create an empty file; say what is missing instead.
        if not os.path.exists(parsed.database):
            return failure(NAME, f"{shown}: file {parsed.database} does not exist; "
                                 "run 'compute-agent-manage db sync'")
    elif "connect_timeout" not in parsed.query:
        parsed = parsed.update_query_dict({"connect_timeout": str(max(1, int(timeout)))})

    engine = db_engine.make_engine(parsed)
    try:
        current = migration.current(engine)
    except (sa.exc.DBAPIError, db_exc.DBError) as exc:
        return failure(NAME, f"cannot connect to {shown}: {reason_of(exc)}")
    except sa.exc.SQLAlchemyError as exc:
        return failure(NAME, f"{shown}: {first_line(exc)}")
    finally:
        engine.dispose()
    return _compare(shown, current, ScriptDirectory(migrations_dir))


def _compare(shown: str, current: str | None, script: ScriptDirectory) -> Result:
    head = script.get_current_head()
    if current == head:
        return success(NAME, f"{shown} is at revision {head} (current)")
    if current is None:
        return failure(NAME, f"{shown} has no schema; run 'compute-agent-manage db sync'")
    try:
        script.get_revision(current)
    except CommandError:
        return failure(NAME, f"{shown} is at revision {current}, which this code does not "
                             f"know (newer code migrated it?); this code needs {head}")
    pending = sum(1 for rev in script.iterate_revisions(head, current)
                  if rev.revision != current)
    return failure(NAME, f"{shown} is at revision {current}, {pending} migration(s) behind "
                         f"{head}; run 'compute-agent-manage db sync'")

