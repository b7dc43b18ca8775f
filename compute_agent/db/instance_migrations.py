"""The instance_migrations table: where an instance is going, how far its
move got. The source agent writes a row before it asks the destination
anything; status changes are compare-and-set, so a recovery and a late
writer cannot both move one row on.

Statuses: ``preparing`` (the destination is being asked), ``migrating``
(the dom0 task runs), then ``completed`` or ``failed``. Rows are kept as
history (``list_for``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from compute_agent import exceptions
from compute_agent.db import models
from compute_agent.db.api import Database, _plain
from compute_agent.db.types import utcnow

PREPARING = "preparing"
MIGRATING = "migrating"
COMPLETED = "completed"
FAILED = "failed"
ACTIVE = (PREPARING, MIGRATING)
KINDS = ("live", "cold", "resize")

_table = models.InstanceMigration.__table__
_WRITABLE = frozenset({"status", "dest_info", "error"})


class MigrationChanged(exceptions.ComputeAgentError):
    """params: migration id, the status expected, the status found."""

    code = "MIGRATION_CHANGED"
    msg_fmt = "Migration {0} is {2}, not {1}"


class InstanceMigrations:
    """Rows of instance_migrations, as plain dicts (see db.api)."""

    def __init__(self, db: Database):
        self.db = db

    def create(self, instance_uuid: str, kind: str, source_host: str, dest_host: str,
               request_id: str | None = None) -> dict[str, Any]:
        if kind not in KINDS:
            raise exceptions.InvalidInput("kind", f"must be one of {KINDS}")
        now = utcnow()
        with self.db._write() as conn:
            result = conn.execute(sa.insert(_table).values(
                instance_uuid=instance_uuid, request_id=request_id, kind=kind,
                source_host=source_host, dest_host=dest_host, status=PREPARING,
                created_at=now, updated_at=now))
            (row_id,) = result.inserted_primary_key
            return self._get(conn, row_id)

    def update(self, row_id: int, values: dict[str, Any],
               expected_status: str | tuple[str, ...] | None = None) -> dict[str, Any]:
        """Write ``values``; with ``expected_status``, only if the row is
        (one of) that, else MigrationChanged."""
        unknown = sorted(set(values) - _WRITABLE)
        if unknown:
            raise exceptions.InvalidInput(unknown[0], "not a writable field of a migration")
        query = sa.update(_table).where(_table.c.id == row_id).values(
            updated_at=utcnow(), **values)
        if expected_status is not None:
            allowed = (expected_status,) if isinstance(expected_status, str) else expected_status
            query = query.where(_table.c.status.in_(allowed))
        with self.db._write() as conn:
            changed = conn.execute(query).rowcount
            row = self._get(conn, row_id)
        if not changed:
            raise MigrationChanged(row_id, expected_status, row["status"])
        return row

    def get(self, row_id: int) -> dict[str, Any]:
        with self.db._read() as conn:
            return self._get(conn, row_id)

    def active_for(self, instance_uuid: str) -> dict[str, Any] | None:
        """The instance's unfinished migration, newest first, or None."""
        query = (sa.select(_table)
                 .where(_table.c.instance_uuid == instance_uuid, _table.c.status.in_(ACTIVE))
                 .order_by(_table.c.id.desc()).limit(1))
        with self.db._read() as conn:
            row = conn.execute(query).mappings().first()
        return _plain(row) if row is not None else None

    def list_for(self, instance_uuid: str) -> list[dict[str, Any]]:
        query = (sa.select(_table).where(_table.c.instance_uuid == instance_uuid)
                 .order_by(_table.c.id))
        with self.db._read() as conn:
            return [_plain(r) for r in conn.execute(query).mappings()]

    def list_active(self, host: str) -> list[dict[str, Any]]:
        """Unfinished migrations from or to ``host``."""
        query = (sa.select(_table)
                 .where(_table.c.status.in_(ACTIVE),
                        sa.or_(_table.c.source_host == host, _table.c.dest_host == host))
                 .order_by(_table.c.id))
        with self.db._read() as conn:
            return [_plain(r) for r in conn.execute(query).mappings()]

    def list_of_kind(self, kind: str, host: str) -> list[dict[str, Any]]:
        """Completed migrations of ``kind`` from or to ``host``."""
        query = (sa.select(_table)
                 .where(_table.c.kind == kind, _table.c.status == COMPLETED,
                        sa.or_(_table.c.source_host == host, _table.c.dest_host == host))
                 .order_by(_table.c.id))
        with self.db._read() as conn:
            return [_plain(r) for r in conn.execute(query).mappings()]

    @staticmethod
    def _get(conn: Any, row_id: int) -> dict[str, Any]:
        row = conn.execute(sa.select(_table).where(_table.c.id == row_id)).mappings().first()
        if row is None:
            raise exceptions.InvalidInput("migration", f"no migration {row_id}")
        return _plain(row)
