"""Column types that behave the same on SQLite, PostgreSQL and MariaDB.

Timestamps are stored as naive UTC (SQLite has no time zones) with
microseconds (MariaDB's DATETIME drops them unless declared DATETIME(6)) and
come back as aware UTC datetimes. JSON documents use the generic JSON type,
which is JSON on PostgreSQL, a checked LONGTEXT on MariaDB and TEXT on
SQLite; Python ``None`` is stored as SQL NULL rather than JSON ``null``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect

UTC = dt.UTC


def utcnow() -> dt.datetime:
    """The current time as an aware UTC datetime."""
    return dt.datetime.now(UTC)


def parse_time(value: str | dt.datetime) -> dt.datetime:
    """An aware UTC datetime from an ISO-8601 string (``Z`` allowed) or a
    datetime; naive datetimes are taken to be UTC already."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_time(value: dt.datetime | str | None) -> str | None:
    """ISO-8601 in UTC with a ``Z`` suffix and microseconds, or None."""
    if value is None:
        return None
    return parse_time(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """A timestamp stored as naive UTC and returned as aware UTC."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime(timezone=False))

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return parse_time(value).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return parse_time(value)


def JSONDocument() -> sa.JSON:  # noqa: N802 - reads like a type in column definitions
    """A JSON column where Python None is SQL NULL."""
    return sa.JSON(none_as_null=True)
