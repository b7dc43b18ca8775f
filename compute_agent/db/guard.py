"""The database API's resilience: oslo.db's retry of transient errors, and
knowing when the database is back.

Every method of db/api.Database marked ``@_api`` is one transaction that is
rolled back as a whole on failure, so running it again is safe. Each is
wrapped (per Database object, with the [database] retry options) in
oslo.db's ``wrap_db_retry``: a dropped connection (``DBConnectionError``,
from oslo.db's error translation) or a deadlock (``DBDeadlock``) is retried
with a growing pause. A call that still cannot reach the database raises
``DATABASE_UNAVAILABLE [url, reason]`` and marks the database down; the
next call that succeeds marks it up and calls the reconnect listeners (the
manager runs recovery then, as after a dom0 reconnect, so an operation
whose outcome could not be written is settled as soon as the database is
back).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from oslo_db import api as oslo_db_api
from oslo_db import exception as db_exc

from compute_agent.db import errors

LOG = logging.getLogger(__name__)
_F = TypeVar("_F", bound=Callable[..., Any])


def _api(func: _F) -> _F:
    """Mark a Database method as one call of the API (see the module)."""
    func.__db_api__ = True  # type: ignore[attr-defined]
    return func


@dataclass(frozen=True)
class RetryPolicy:
    """How a transient database error is retried ([database] db_max_retries,
    db_retry_interval, db_inc_retry_interval, db_max_retry_interval)."""

    max_retries: int = 3
    interval: float = 1.0
    increase: bool = True
    max_interval: float = 2.0


def reason_of(exc: BaseException) -> str:
    """The driver's own message, first line only (it never holds the password)."""
    inner = getattr(exc, "inner_exception", None) or exc
    orig = getattr(inner, "orig", None)
    text = str(orig) if orig is not None else str(inner)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _untranslated_disconnect(exc: BaseException) -> bool:
    """A lost connection that reached us as SQLAlchemy's own error (raised
    where oslo.db's translation does not run, e.g. while the pool sets a
    new connection up)."""
    return isinstance(exc, sa.exc.DBAPIError) and bool(exc.connection_invalidated)


class GuardedCalls:
    """Mixed into Database: wraps its ``@_api`` methods (``_guard_api``)."""

    def _guard_api(self, policy: RetryPolicy, shown_url: str) -> None:
        self.retry = policy
        self._shown_url = shown_url
        self._down = threading.Event()
        self._back_lock = threading.Lock()
        self._reconnect_listeners: list[Callable[[], None]] = []
        for name in dir(type(self)):
            if getattr(getattr(type(self), name), "__db_api__", False):
                setattr(self, name, self._guarded(getattr(self, name)))

    def add_reconnect_listener(self, cb: Callable[[], None]) -> None:
        """``cb()`` is called (in a thread of its own) when the database
        answers again after a call failed because it could not be reached."""
        self._reconnect_listeners.append(cb)

    @property
    def reachable(self) -> bool:
        """False from a call that could not reach the database until one that could."""
        return not self._down.is_set()

    def _guarded(self, method: Callable[..., Any]) -> Callable[..., Any]:
        p = self.retry
        retried = oslo_db_api.wrap_db_retry(
            max_retries=p.max_retries, retry_interval=p.interval, inc_retry_interval=p.increase,
            max_retry_interval=p.max_interval, retry_on_disconnect=True,
            retry_on_deadlock=True, exception_checker=_untranslated_disconnect)(method)

        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                result = retried(*args, **kwargs)
            except (db_exc.DBConnectionError, sa.exc.DBAPIError) as exc:
                if not isinstance(exc, db_exc.DBConnectionError) and \
                        not _untranslated_disconnect(exc):
                    raise
                if not self._down.is_set():
                    LOG.warning("Database unreachable: %s", reason_of(exc))
                self._down.set()
                raise errors.DatabaseUnavailable(self._shown_url, reason_of(exc)) from exc
            if self._down.is_set():
                self._back()
            return result

        return call

    def _back(self) -> None:
        with self._back_lock:
            if not self._down.is_set():
                return
            self._down.clear()
        LOG.info("Database reachable again")
        for cb in list(self._reconnect_listeners):
            threading.Thread(target=self._notify_back, args=(cb,), name="db-reconnect",
                             daemon=True).start()

    @staticmethod
    def _notify_back(cb: Callable[[], None]) -> None:
        try:
            cb()
        except Exception:
            LOG.exception("Database reconnect listener failed")
