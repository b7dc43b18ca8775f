"""Engines configured for each supported backend.

- SQLite: WAL journal and a busy timeout, so the agent and the client CLI
  (separate processes) can read while the other writes; write transactions
  start with BEGIN IMMEDIATE so two writers queue on the busy timeout instead
  of failing with "database is locked" when a read lock cannot be upgraded.
- MariaDB/MySQL: PyMySQL, utf8mb4 and READ COMMITTED, so a fresh read in a
  new transaction always sees rows other agents have committed.
- PostgreSQL: psycopg2, made cooperative under eventlet (see green.py).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url

from compute_agent.db import green

SQLITE_BUSY_TIMEOUT_S = 30
CONNECT_TIMEOUT_S = 10

# Key of the execution option that asks for BEGIN IMMEDIATE on SQLite.
_IMMEDIATE = "compute_agent_sqlite_immediate"

# In-memory SQLite engines share one connection; threads take turns with it
# so their transactions do not interleave on it.
_MEMORY_LOCKS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()

_DEFAULT_DRIVERS = {"mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql",
                    "postgresql": "postgresql+psycopg2", "postgres": "postgresql+psycopg2"}


def normalize_url(url: str | URL) -> URL:
    """Pin the supported drivers (PyMySQL, psycopg2) and utf8mb4 for MySQL."""
    parsed = make_url(url)
    if parsed.drivername in _DEFAULT_DRIVERS:
        parsed = parsed.set(drivername=_DEFAULT_DRIVERS[parsed.drivername])
    if parsed.get_backend_name() in ("mysql", "mariadb") and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL for messages and logs: the password is replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparseable URL is shown as nothing rather than leaked
        return "<invalid database URL>"


def is_sqlite_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def make_engine(url: str | URL, debug: bool = False, pool_size: int | None = None) -> Engine:
    """Create an engine for ``url`` with the per-backend settings above."""
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {"echo": debug, "future": True}
    if backend == "sqlite":
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
        if is_sqlite_memory(parsed):
            # One shared connection, or every connection would see its own empty database.
            kwargs["poolclass"] = sa.pool.StaticPool
        elif parsed.database:
            # Create state_path on first use; if that fails, SQLite's own
            # "unable to open database file" says so when it connects.
            parent = os.path.dirname(os.path.abspath(parsed.database))
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError:
                pass
        engine = sa.create_engine(parsed, **kwargs)
        _setup_sqlite(engine, memory=is_sqlite_memory(parsed))
        if is_sqlite_memory(parsed):
            _MEMORY_LOCKS[engine] = threading.RLock()
        return engine
    kwargs["pool_pre_ping"] = True
    if pool_size:
        kwargs["pool_size"] = pool_size
    if backend in ("mysql", "mariadb"):
        kwargs["isolation_level"] = "READ COMMITTED"
        if "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    elif backend == "postgresql":
        if green.eventlet_active():
            green.enable_psycopg2()
        if "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    return sa.create_engine(parsed, **kwargs)


def _setup_sqlite(engine: Engine, memory: bool) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself (pysqlite
        # would otherwise start transactions lazily and only before DML).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_IMMEDIATE):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


@contextmanager
def transaction(engine: Engine, write: bool) -> Iterator[Connection]:
    """A connection inside a transaction, committed on success and rolled
    back on error. ``write=True`` takes SQLite's write lock up front."""
    lock = _MEMORY_LOCKS.get(engine)
    if lock is not None:
        with lock:
            yield from _transaction(engine, write)
    else:
        yield from _transaction(engine, write)


def _transaction(engine: Engine, write: bool) -> Iterator[Connection]:
    with engine.connect() as conn:
        if write and engine.dialect.name == "sqlite":
            conn.execution_options(**{_IMMEDIATE: True})
        with conn.begin():
            yield conn


# MariaDB/MySQL: 1213 deadlock, 1205 lock wait timeout. PostgreSQL: 40P01
# deadlock detected, 40001 serialization failure. The server rolled the
# whole transaction back, so running it again from the start is safe.
_MYSQL_RETRY_CODES = frozenset({1205, 1213})
_PG_RETRY_CODES = frozenset({"40P01", "40001"})


def is_deadlock(exc: BaseException) -> bool:
    """Whether ``exc`` is a transaction the server aborted to break a
    deadlock (and that succeeds if simply retried)."""
    orig = getattr(exc, "orig", None)
    if orig is None:
        return False
    if getattr(orig, "pgcode", None) in _PG_RETRY_CODES:
        return True
    args = getattr(orig, "args", ())
    return bool(args) and args[0] in _MYSQL_RETRY_CODES
