"""The tracked_tasks table: every dom0 task the agent starts, recorded
before anyone waits on it (an intent row first, bound to the task's ref
once the Async call returned), so an agent restarted at any moment finds
its in-flight work. A mixin of :class:`compute_agent.db.api.Database`.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from compute_agent import exceptions
from compute_agent.db import errors, models
from compute_agent.db.guard import _api
from compute_agent.db.rows import DUPLICATE, check_fields, plain
from compute_agent.db.types import utcnow

_tasks = models.TrackedTask.__table__
_TASK_FIELDS = frozenset(_tasks.c.keys()) - {"id"}


class TrackedTaskRecords:
    """Tracked dom0 tasks; needs the host class's ``_read``/``_write``."""

    @_api
    def add_tracked_task(self, values: dict[str, Any]) -> dict[str, Any]:
        """Record a dom0 task before waiting on it; ``ref`` is required.
        Raises TrackedTaskExists for a ref that is already tracked."""
        check_fields(values, _TASK_FIELDS, "a tracked task")
        if not values.get("ref"):
            raise exceptions.InvalidInput("ref", "required")
        now = utcnow()
        row = {"status": "pending", "progress": 0.0, "created_at": now, "updated_at": now,
               **values}
        try:
            with self._write() as conn:
                conn.execute(sa.insert(_tasks).values(**row))
                return self._task(conn, values["ref"])  # type: ignore[return-value]
        except DUPLICATE as exc:
            raise errors.TrackedTaskExists(values["ref"]) from exc

    @staticmethod
    def _task(conn: Connection, ref: str) -> dict[str, Any] | None:
        row = conn.execute(sa.select(_tasks).where(_tasks.c.ref == ref)).mappings().first()
        return None if row is None else plain(row)

    @_api
    def update_tracked_task(self, ref: str, values: dict[str, Any]) -> dict[str, Any]:
        """Update a tracked task. Raises TrackedTaskNotFound."""
        check_fields(values, _TASK_FIELDS - {"ref", "created_at"}, "a tracked task")
        values = {"updated_at": utcnow(), **values}
        with self._write() as conn:
            conn.execute(sa.update(_tasks).where(_tasks.c.ref == ref).values(**values))
            task = self._task(conn, ref)
        if task is None:
            raise errors.TrackedTaskNotFound(ref)
        return task

    @_api
    def bind_tracked_task(self, intent_ref: str, ref: str,
                          values: dict[str, Any] | None = None) -> dict[str, Any]:
        """Give a recorded intent (a row under a placeholder ref, written
        before its Async call) the ref of the task the call started.
        Raises TrackedTaskNotFound if no row has ``intent_ref``."""
        values = {**(values or {}), "ref": ref, "updated_at": utcnow()}
        check_fields(values, _TASK_FIELDS - {"created_at"}, "a tracked task")
        with self._write() as conn:
            conn.execute(sa.update(_tasks).where(_tasks.c.ref == intent_ref).values(**values))
            task = self._task(conn, ref)
        if task is None:
            raise errors.TrackedTaskNotFound(intent_ref)
        return task

    @_api
    def get_tracked_task(self, ref: str) -> dict[str, Any] | None:
        with self._read() as conn:
            return self._task(conn, ref)

    @_api
    def list_tracked_tasks(self, agent_host: str | None = None, status: str | None = "pending",
                           instance_uuid: str | None = None) -> list[dict[str, Any]]:
        """Tracked tasks, oldest first; each filter given as None is not applied."""
        query = sa.select(_tasks).order_by(_tasks.c.created_at, _tasks.c.id)
        if agent_host is not None:
            query = query.where(_tasks.c.agent_host == agent_host)
        if status is not None:
            query = query.where(_tasks.c.status == status)
        if instance_uuid is not None:
            query = query.where(_tasks.c.instance_uuid == instance_uuid)
        with self._read() as conn:
            return [plain(r) for r in conn.execute(query).mappings()]
