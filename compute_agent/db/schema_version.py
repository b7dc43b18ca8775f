"""Which schema revision the code expects and the database is at, without
Alembic.

The daemon checks the revision every time its worker starts; Alembic's
runtime (with Mako and Pygments behind it) costs ~11 MB in a process that
never migrates, so the check reads Alembic's version table itself.
``migration.py`` (Alembic) remains what migrates, and what ``manage`` and
``status`` report with; a unit test keeps :data:`HEAD` equal to Alembic's
head of ``migrations/versions``.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

# The newest migration; change it with every new file in migrations/versions
# (tests/unit/db/test_schema_version.py fails until it is).
HEAD = "0004_attachments"

# Alembic's default version table: one row, one column.
VERSION_TABLE = "alembic_version"


def current(conn: Connection) -> str | None:
    """The revision the database is at; None when it was never migrated
    (no version table, or an empty one). Several rows (branches, which this
    project does not have) come back joined with "+", never equal to HEAD."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    table = sa.table(VERSION_TABLE, sa.column("version_num"))
    rows = sorted(r[0] for r in conn.execute(sa.select(table.c.version_num)))
    return "+".join(rows) or None
