"""Outcomes.persist: how long the end of an operation is retried while the
database cannot be reached ([tasks] outcome_record_timeout)."""

from __future__ import annotations

import pytest

from compute_agent.compute import outcomes as outcomes_mod
from compute_agent.compute.outcomes import Outcomes
from compute_agent.db.errors import DatabaseUnavailable


class FlakyWrite:
    """Fails with DatabaseUnavailable ``failures`` times, then answers."""

    def __init__(self, failures: int):
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise DatabaseUnavailable("postgresql://***@db/agent", "connection refused")
        return "written"


@pytest.fixture(autouse=True)
def short_pauses(monkeypatch):
    monkeypatch.setattr(outcomes_mod, "OUTCOME_RETRY_FIRST", 0.01)
    monkeypatch.setattr(outcomes_mod, "OUTCOME_RETRY_MAX", 0.02)


def make(retry_for: float, stopping: bool = False) -> Outcomes:
    return Outcomes(db=None, notifier=None, release=lambda uuid: None,
                    stopping=lambda: stopping, retry_for=retry_for)


def test_retries_until_the_database_answers():
    write = FlakyWrite(failures=3)
    assert make(retry_for=5.0).persist("the end", write) == "written"
    assert write.calls == 4


def test_zero_tries_once_and_leaves_it_to_recovery():
    write = FlakyWrite(failures=1)
    with pytest.raises(DatabaseUnavailable):
        make(retry_for=0.0).persist("the end", write)
    assert write.calls == 1


def test_gives_up_once_the_window_is_over():
    write = FlakyWrite(failures=10_000)
    with pytest.raises(DatabaseUnavailable):
        make(retry_for=0.2).persist("the end", write)
    # it retried, then gave up at the window's end, long before the
    # database would have answered
    assert 1 < write.calls < 100


def test_a_stopping_agent_does_not_wait():
    write = FlakyWrite(failures=1)
    with pytest.raises(DatabaseUnavailable):
        make(retry_for=300.0, stopping=True).persist("the end", write)
    assert write.calls == 1


def test_other_errors_are_not_retried():
    def broken() -> None:
        raise ValueError("not a connection problem")

    with pytest.raises(ValueError):
        make(retry_for=300.0).persist("the end", broken)
