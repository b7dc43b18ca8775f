"""Cooperative database I/O under the eventlet concurrency backend.

psycopg2 is a C extension: left alone, a query blocks the whole eventlet hub
(every green thread of the agent) until PostgreSQL answers. psycopg2 lets an
application take over the waiting through a "wait callback"; the one here
hands each wait to the eventlet hub, so other green threads run meanwhile.
PyMySQL is pure Python and turns green with eventlet's socket patching;
SQLite is local and needs nothing (but a busy wait on a lock held by another
process does block the hub for up to the busy timeout).

``eventlet.monkey_patch()`` installs such a callback itself unless called
with ``psycopg=False``; ``make_engine`` installs this one whenever the process
is monkey-patched and no callback is set, so callers need not call anything.
"""

from __future__ import annotations

import sys
from typing import Any


def eventlet_active() -> bool:
    """True when eventlet is imported and has patched the socket module."""
    eventlet = sys.modules.get("eventlet")
    if eventlet is None:
        return False
    from eventlet import patcher

    return bool(patcher.is_monkey_patched("socket"))


def _wait_on_hub(conn: Any, timeout: float | None = None) -> None:
    """psycopg2 wait callback: poll the connection, and while it needs the
    socket to become readable or writable, let the eventlet hub wait for it."""
    from eventlet.hubs import trampoline
    from psycopg2 import OperationalError, extensions

    while True:
        state = conn.poll()
        if state == extensions.POLL_OK:
            return
        if state == extensions.POLL_READ:
            trampoline(conn.fileno(), read=True)
        elif state == extensions.POLL_WRITE:
            trampoline(conn.fileno(), write=True)
        else:
            raise OperationalError(f"unexpected psycopg2 poll state {state!r}")


def enable_psycopg2() -> bool:
    """Make psycopg2 wait on the eventlet hub, unless a wait callback (such
    as eventlet's own) is already installed. Returns False when psycopg2 is
    not installed."""
    try:
        from psycopg2 import extensions
    except ImportError:
        return False
    if extensions.get_wait_callback() is None:
        extensions.set_wait_callback(_wait_on_hub)
    return True
