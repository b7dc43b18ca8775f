"""The instance_actions and instance_action_events tables: what happened to
an instance, request by request (nova's instance actions). Each request the
manager accepts is an action; each step it runs is an event with its
start, finish, result and traceback. A mixin of
:class:`compute_agent.db.api.Database`.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from compute_agent import exceptions
from compute_agent.db import errors, models
from compute_agent.db.guard import _api
from compute_agent.db.rows import DUPLICATE, plain
from compute_agent.db.types import utcnow

ACTION_RESULTS = ("success", "error")

_actions = models.InstanceAction.__table__
_events = models.InstanceActionEvent.__table__


class ActionRecords:
    """Instance actions and their events; needs the host class's
    ``_read``/``_write``."""

    def _action_row(self, conn: Connection, uuid: str, request_id: str) -> dict[str, Any]:
        query = sa.select(_actions).where(
            _actions.c.instance_uuid == uuid, _actions.c.request_id == request_id)
        row = conn.execute(query).mappings().first()
        if row is None:
            raise errors.InstanceActionNotFound(uuid, request_id)
        return dict(row)

    def _action_with_events(self, conn: Connection, action: dict[str, Any]) -> dict[str, Any]:
        events = conn.execute(sa.select(_events).where(_events.c.action_id == action["id"])
                              .order_by(_events.c.id)).mappings()
        out = plain(action)
        out["events"] = [plain({k: v for k, v in e.items() if k != "action_id"})
                         for e in events]
        return out

    @_api
    def action_start(self, uuid: str, action: str, request_id: str) -> dict[str, Any]:
        """Record the start of a request's action. Starting the same request
        again returns the existing record (a retried request is one action)."""
        with self._write() as conn:
            self._instance_row(conn, uuid)
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(_actions).values(
                        instance_uuid=uuid, action=action, request_id=request_id,
                        start_time=utcnow()))
            except DUPLICATE:
                pass  # already recorded by an earlier delivery of the same request
            return self._action_with_events(conn, self._action_row(conn, uuid, request_id))

    @_api
    def action_finish(self, uuid: str, request_id: str, result: str,
                      message: str | None = None) -> dict[str, Any]:
        if result not in ACTION_RESULTS:
            raise exceptions.InvalidInput("result", f"must be one of {ACTION_RESULTS}")
        with self._write() as conn:
            action = self._action_row(conn, uuid, request_id)
            conn.execute(sa.update(_actions).where(_actions.c.id == action["id"]).values(
                finish_time=utcnow(), result=result, message=message))
            return self._action_with_events(conn, self._action_row(conn, uuid, request_id))

    @_api
    def action_event_start(self, uuid: str, request_id: str, event: str) -> dict[str, Any]:
        with self._write() as conn:
            action = self._action_row(conn, uuid, request_id)
            result = conn.execute(sa.insert(_events).values(
                action_id=action["id"], event=event, start_time=utcnow()))
            return self._event(conn, result.inserted_primary_key[0])

    @_api
    def action_event_finish(self, uuid: str, request_id: str, event: str, result: str,
                            traceback: str | None = None) -> dict[str, Any]:
        """Finish the latest unfinished event of that name (recording one
        that starts and finishes now if it was never started)."""
        if result not in ACTION_RESULTS:
            raise exceptions.InvalidInput("result", f"must be one of {ACTION_RESULTS}")
        now = utcnow()
        with self._write() as conn:
            action = self._action_row(conn, uuid, request_id)
            event_id = conn.execute(
                sa.select(_events.c.id).where(
                    _events.c.action_id == action["id"], _events.c.event == event,
                    _events.c.finish_time.is_(None)).order_by(_events.c.id.desc()).limit(1)
            ).scalar()
            if event_id is None:
                event_id = conn.execute(sa.insert(_events).values(
                    action_id=action["id"], event=event, start_time=now)).inserted_primary_key[0]
            conn.execute(sa.update(_events).where(_events.c.id == event_id).values(
                finish_time=now, result=result, traceback=traceback))
            return self._event(conn, event_id)

    @staticmethod
    def _event(conn: Connection, event_id: int) -> dict[str, Any]:
        row = conn.execute(sa.select(_events).where(_events.c.id == event_id)).mappings().one()
        return plain({k: v for k, v in row.items() if k != "action_id"})

    @_api
    def list_actions(self, uuid: str) -> list[dict[str, Any]]:
        """Actions of the instance, oldest first, each with its ``events``."""
        with self._read() as conn:
            rows = conn.execute(sa.select(_actions).where(_actions.c.instance_uuid == uuid)
                                .order_by(_actions.c.id)).mappings()
            return [self._action_with_events(conn, dict(r)) for r in rows]
