"""The compute_nodes and services tables: each agent's resource report and
heartbeat, what a scheduler reads to place work and to tell live agents
from dead ones. A mixin of :class:`compute_agent.db.api.Database`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from compute_agent import exceptions
from compute_agent.db import models
from compute_agent.db.guard import _api
from compute_agent.db.rows import DUPLICATE, is_alive, plain
from compute_agent.db.types import utcnow

_nodes = models.ComputeNode.__table__
_services = models.Service.__table__
_NODE_FIELDS = frozenset(_nodes.c.keys()) - {"id", "host", "extra", "created_at", "updated_at"}


class HostRecords:
    """Compute nodes and services; needs the host class's ``_read``/``_write``."""

    @_api
    def upsert_compute_node(self, host: str, resources: dict[str, Any]) -> dict[str, Any]:
        """Create or replace the host's resource report. Keys beyond the
        known columns are kept too (in ``extra``) and returned flat."""
        columns: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in resources.items():
            if key in _NODE_FIELDS:
                columns[key] = _coerce(_nodes.c[key], value)
            else:
                extra[key] = value
        now = utcnow()
        columns["updated_at"] = now
        if extra:  # a report without extra keys leaves earlier ones alone
            columns["extra"] = extra
        with self._write() as conn:
            _update_or_insert(
                conn,
                sa.update(_nodes).where(_nodes.c.host == host).values(**columns),
                sa.insert(_nodes).values(host=host, created_at=now, **columns),
            )
            row = conn.execute(sa.select(_nodes).where(_nodes.c.host == host)).mappings().one()
        return _node_dict(row)

    @_api
    def list_compute_nodes(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            rows = conn.execute(sa.select(_nodes).order_by(_nodes.c.host)).mappings()
            return [_node_dict(r) for r in rows]

    @_api
    def service_heartbeat(self, host: str, binary: str, topic: str) -> dict[str, Any]:
        """Create the service record or bump its updated_at and report_count."""
        now = utcnow()
        where = (_services.c.host == host, _services.c.binary == binary)
        with self._write() as conn:
            _update_or_insert(
                conn,
                sa.update(_services).where(*where).values(
                    topic=topic, updated_at=now, report_count=_services.c.report_count + 1),
                sa.insert(_services).values(host=host, binary=binary, topic=topic,
                                            report_count=1, disabled=False,
                                            created_at=now, updated_at=now),
            )
            row = conn.execute(sa.select(_services).where(*where)).mappings().one()
        return plain(row)

    @_api
    def set_service_disabled(self, host: str, binary: str, disabled: bool) -> dict[str, Any]:
        """Take a service out of scheduling (or back in); it must exist."""
        where = (_services.c.host == host, _services.c.binary == binary)
        with self._write() as conn:
            conn.execute(sa.update(_services).where(*where).values(disabled=bool(disabled)))
            row = conn.execute(sa.select(_services).where(*where)).mappings().first()
        if row is None:
            raise exceptions.InvalidInput("host", f"no service {binary} on {host}")
        return plain(row)

    @_api
    def list_services(self, down_time: int = 60) -> list[dict[str, Any]]:
        """Services, each with ``alive``: a heartbeat within ``down_time`` s."""
        now = utcnow()
        with self._read() as conn:
            rows = conn.execute(sa.select(_services)
                                .order_by(_services.c.host, _services.c.binary)).mappings()
            return [{**plain(r), "alive": is_alive(r["updated_at"], down_time, now)}
                    for r in rows]



def _coerce(column: sa.Column[Any], value: Any) -> Any:
    """Drivers report numbers and versions loosely; PostgreSQL will not cast."""
    if value is None:
        return None
    if isinstance(column.type, sa.Integer):
        return int(value)
    if isinstance(column.type, sa.String):
        return str(value)
    return value


def _node_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    extra = row["extra"] or {}
    out = {**extra, **plain({k: v for k, v in row.items() if k != "extra"})}
    return out


def _update_or_insert(conn: Connection, update: sa.Update, insert: sa.Insert) -> None:
    """Portable upsert keyed on a unique constraint: UPDATE, and INSERT if no
    row matched; a concurrent INSERT that won makes us UPDATE again."""
    if conn.execute(update).rowcount:
        return
    try:
        with conn.begin_nested():
            conn.execute(insert)
    except DUPLICATE:
        conn.execute(update)
