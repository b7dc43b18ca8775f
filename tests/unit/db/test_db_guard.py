"""db/guard.py: transient errors retried with oslo.db's wrap_db_retry, an
unreachable database as DATABASE_UNAVAILABLE, and the reconnect listeners
called once it answers again."""

from __future__ import annotations

import threading

import pytest
from oslo_db import exception as db_exc

from compute_agent.db import errors
from compute_agent.db.guard import GuardedCalls, RetryPolicy, _api


class Flaky(GuardedCalls):
    def __init__(self, failures: int, error: type[Exception] = db_exc.DBConnectionError):
        self.failures, self.calls, self.error = failures, 0, error
        self._guard_api(RetryPolicy(max_retries=2, interval=0.01, max_interval=0.01),
                        "postgresql://***@db/x")

    @_api
    def read(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error("connection dropped")
        return "row"


def test_a_transient_disconnect_is_retried():
    db = Flaky(failures=2)
    assert db.read() == "row" and db.calls == 3 and db.reachable


def test_deadlocks_are_retried_too():
    db = Flaky(failures=1, error=db_exc.DBDeadlock)
    assert db.read() == "row" and db.calls == 2


def test_unreachable_then_back_calls_the_reconnect_listeners():
    db = Flaky(failures=3)
    back = threading.Event()
    db.add_reconnect_listener(back.set)
    with pytest.raises(errors.DatabaseUnavailable) as info:
        db.read()
    assert info.value.code == "DATABASE_UNAVAILABLE"
    assert info.value.params == ["postgresql://***@db/x", "connection dropped"]
    assert not db.reachable and not back.is_set()
    assert db.read() == "row"
    assert back.wait(5) and db.reachable


def test_other_errors_are_not_retried():
    db = Flaky(failures=5, error=ValueError)
    with pytest.raises(ValueError):
        db.read()
    assert db.calls == 1


def test_an_untranslated_lost_connection_is_retried_and_reported_too():
    import sqlalchemy as sa

    class Lost(sa.exc.OperationalError):
        def __init__(self, *_args):
            super().__init__("SET SESSION ...", {}, Exception("Lost connection"),
                             connection_invalidated=True)

    db = Flaky(failures=5, error=Lost)
    with pytest.raises(errors.DatabaseUnavailable):
        db.read()
    assert db.calls == 3 and not db.reachable
