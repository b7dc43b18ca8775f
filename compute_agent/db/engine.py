"""Engines for each supported backend: oslo.db's, with the agent's additions.

oslo.db's ``create_engine`` sets the engine up (pool sizes and timeouts,
pre-ping and recycling of connections, MySQL's strict ``sql_mode``, the
[database] options) and installs its error translation, so a dropped
connection is ``DBConnectionError``, a deadlock ``DBDeadlock`` and a
duplicate key ``DBDuplicateEntry`` on every backend; db/api.py retries the
first two with oslo.db's ``wrap_db_retry``. What the agent adds:

- SQLite: WAL journal and a busy timeout, so the agent and the client CLI
  (separate processes) can read while the other writes; write transactions
  start with BEGIN IMMEDIATE so two writers queue on the busy timeout instead
  of failing with "database is locked" when a read lock cannot be upgraded;
  a file database keeps a connection pool (oslo.db would open a connection
  per transaction, which costs its PRAGMAs each time: 1,000 get_instance
  calls took 4.5 s that way against 0.83 s pooled, measured 2026-11-30).
- MariaDB/MySQL: PyMySQL, utf8mb4 and READ COMMITTED, so a fresh read in a
  new transaction always sees rows other agents have committed.
- PostgreSQL: psycopg2, made cooperative under eventlet (see green.py).
- A connect timeout of 10 s on server databases.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from oslo_db.sqlalchemy import engines as oslo_engines
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


def make_engine(url: str | URL, debug: bool | int = False, pool_size: int | None = None,
                **options: Any) -> Engine:
    """An engine for ``url``: oslo.db's ``create_engine`` with the
    per-backend settings above. ``options`` are create_engine's (the
    [database] options: max_overflow, pool_timeout, mysql_sql_mode, ...);
    ``debug`` is connection_debug (True: every statement)."""
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    memory = is_sqlite_memory(parsed)
    if backend == "sqlite" and not memory and parsed.database:
        # Create state_path on first use; if that fails, SQLite's own
        # "unable to open database file" says so when it connects.
        try:
            os.makedirs(os.path.dirname(os.path.abspath(parsed.database)), exist_ok=True)
        except OSError:
            pass
    if backend in ("mysql", "mariadb", "postgresql") and "connect_timeout" not in parsed.query:
        parsed = parsed.update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT_S)})
    if backend == "postgresql" and green.eventlet_active():
        green.enable_psycopg2()
    options.setdefault("mysql_sql_mode", "TRADITIONAL")
    level = 50 if debug is True else int(debug or 0)
    engine = oslo_engines.create_engine(
        parsed.render_as_string(hide_password=False),
        connection_debug=level,
        max_pool_size=pool_size,
        max_retries=0,  # connect lazily: the first use says if the database is there
        _engine_target=_engine_target,
        **options,
    )
    if backend == "sqlite":
        _setup_sqlite(engine, memory=memory)
        if memory:
            _MEMORY_LOCKS[engine] = threading.RLock()
    return engine


def _engine_target(url: URL, **engine_args: Any) -> tuple[Engine, Engine]:
    """oslo.db's engine constructor, but a SQLite file keeps a pool of
    connections (oslo.db replaces it with NullPool), SQLite connections
    wait on locks for SQLITE_BUSY_TIMEOUT_S, and MariaDB/MySQL ones read
    committed."""
    if url.get_backend_name() in ("mysql", "mariadb"):
        # Set once per new connection (when the pool opens it), where a
        # dropped connection is an error oslo.db translates and retries.
        engine_args["isolation_level"] = "READ COMMITTED"
    if url.get_backend_name() == "sqlite":
        engine_args.setdefault("connect_args", {})
        engine_args["connect_args"]["timeout"] = SQLITE_BUSY_TIMEOUT_S
        engine_args["connect_args"]["check_same_thread"] = False
        if engine_args.get("poolclass") is sa.pool.NullPool:
            del engine_args["poolclass"]
    engine = sa.create_engine(url, **engine_args)
    return engine, engine


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

    # Instead of oslo.db's own "begin" listener, which emits a plain BEGIN:
    # a writer must take the write lock up front (BEGIN IMMEDIATE).
    for listener in list(engine.dispatch.begin):
        if getattr(listener, "__module__", "").startswith("oslo_db"):
            sa.event.remove(engine, "begin", listener)

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
