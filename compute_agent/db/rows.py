"""Helpers every table module of the database API shares: rows as plain
dicts, the field check of writes, what a duplicate key raises, and when a
service counts as alive."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from oslo_db import exception as db_exc

from compute_agent import exceptions
from compute_agent.db.types import format_time, parse_time, utcnow


def plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """Row mapping -> dict with datetimes rendered as ISO-8601 'Z' strings."""
    return {k: format_time(v) if isinstance(v, dt.datetime) else v for k, v in row.items()}


def check_fields(values: Mapping[str, Any], allowed: Iterable[str], what: str) -> None:
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise exceptions.InvalidInput(unknown[0], f"not a field of {what}")


def is_alive(updated_at: dt.datetime | str | None, down_time: float,
             now: dt.datetime | None = None) -> bool:
    """Whether a service whose last heartbeat was at ``updated_at`` is up."""
    if updated_at is None:
        return False
    now = now or utcnow()
    return (now - parse_time(updated_at)).total_seconds() <= down_time



# What a duplicate key raises: oslo.db's translation, or SQLAlchemy's own
# where the translation does not apply (a savepoint's release).
DUPLICATE = (sa.exc.IntegrityError, db_exc.DBDuplicateEntry, db_exc.DBReferenceError)
