"""The database API of volume and port attachments.

One small class serves both tables: a row is keyed by its instance and the
attached thing's id (``volume_id`` or ``port_id``), carries a ``status``
(``attaching``, ``attached``, ``detaching``) and what dom0 made of it.
Like ``Database``, every method is one short transaction and returns plain
dicts with ISO-8601 timestamps.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from compute_agent import exceptions
from compute_agent.db import models
from compute_agent.db.api import DUPLICATE
from compute_agent.db.types import format_time, utcnow

ATTACHING = "attaching"
ATTACHED = "attached"
DETACHING = "detaching"
STATUSES = (ATTACHING, ATTACHED, DETACHING)


class AttachmentExists(exceptions.ComputeAgentError):
    """params: kind ('volume' or 'port'), its id, the instance it is on."""

    code = "ATTACHMENT_EXISTS"
    msg_fmt = "The {0} {1} is already attached to instance {2}"


class AttachmentNotFound(exceptions.ComputeAgentError):
    """params: kind, its id, instance uuid."""

    code = "ATTACHMENT_NOT_FOUND"
    msg_fmt = "The {0} {1} is not attached to instance {2}"


def _plain(row: Any) -> dict[str, Any]:
    out = dict(row)
    for key in ("created_at", "updated_at"):
        if out.get(key) is not None:
            out[key] = format_time(out[key])
    out.pop("id", None)
    return out


class AttachmentTable:
    """Rows of one attachment table (``kind`` 'volume' or 'port')."""

    def __init__(self, db: Any, kind: str):
        self.db = db
        self.kind = kind
        model = models.VolumeAttachment if kind == "volume" else models.PortAttachment
        self.table = model.__table__
        self.key = "volume_id" if kind == "volume" else "port_id"
        self._fields = frozenset(self.table.c.keys()) - {"id", "created_at", "updated_at"}
        # Each method is one transaction: retried on a dropped connection and
        # reported as DATABASE_UNAVAILABLE like the Database API's (db/guard.py).
        guard = getattr(db, "_guarded", None)
        if guard is not None:
            for name in ("add", "update", "delete", "find", "list"):
                setattr(self, name, guard(getattr(self, name)))

    def _where(self, instance_uuid: str | None, item_id: str) -> sa.ColumnElement[bool]:
        cond = self.table.c[self.key] == item_id
        if instance_uuid is not None:
            cond = sa.and_(cond, self.table.c.instance_uuid == instance_uuid)
        return cond

    def _get(self, conn: Any, instance_uuid: str | None, item_id: str) -> dict[str, Any] | None:
        row = conn.execute(sa.select(self.table).where(
            self._where(instance_uuid, item_id))).mappings().first()
        return None if row is None else _plain(row)

    def add(self, values: dict[str, Any]) -> dict[str, Any]:
        """Insert a row; raises AttachmentExists when the volume is already
        on that instance (the port on any instance)."""
        unknown = set(values) - self._fields
        if unknown:
            raise exceptions.InvalidInput(sorted(unknown)[0], "not a column")
        now = utcnow()
        row = {"status": ATTACHING, "created_at": now, "updated_at": now, **values}
        try:
            with self.db._write() as conn:
                conn.execute(sa.insert(self.table).values(**row))
                return self._get(conn, values["instance_uuid"], values[self.key])  # type: ignore
        except DUPLICATE:  # oslo.db's DBDuplicateEntry on every backend
            existing = self.find(values[self.key],
                                 values["instance_uuid"] if self.kind == "volume" else None)
            on = existing["instance_uuid"] if existing else values["instance_uuid"]
            raise AttachmentExists(self.kind, values[self.key], on) from None

    def update(self, instance_uuid: str, item_id: str, values: dict[str, Any]) -> dict[str, Any]:
        unknown = set(values) - self._fields
        if unknown:
            raise exceptions.InvalidInput(sorted(unknown)[0], "not a column")
        with self.db._write() as conn:
            conn.execute(sa.update(self.table).where(self._where(instance_uuid, item_id))
                         .values(updated_at=utcnow(), **values))
            row = self._get(conn, instance_uuid, item_id)
        if row is None:
            raise AttachmentNotFound(self.kind, item_id, instance_uuid)
        return row

    def delete(self, instance_uuid: str, item_id: str) -> bool:
        with self.db._write() as conn:
            result = conn.execute(sa.delete(self.table).where(
                self._where(instance_uuid, item_id)))
            return bool(result.rowcount)

    def find(self, item_id: str, instance_uuid: str | None = None) -> dict[str, Any] | None:
        with self.db._read() as conn:
            return self._get(conn, instance_uuid, item_id)

    def list(self, instance_uuid: str | None = None, host: str | None = None,
             status: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(self.table).order_by(self.table.c.id)
        if instance_uuid is not None:
            query = query.where(self.table.c.instance_uuid == instance_uuid)
        if host is not None:
            query = query.where(self.table.c.host == host)
        if status is not None:
            query = query.where(self.table.c.status == status)
        with self.db._read() as conn:
            return [_plain(r) for r in conn.execute(query).mappings()]
