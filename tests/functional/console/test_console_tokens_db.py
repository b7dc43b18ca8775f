"""Console tokens on SQLite, PostgreSQL and MariaDB: only the hash is
stored, a token opens its instance once, racing claims have exactly one
winner, expired tokens are refused and purged later."""

from __future__ import annotations

import datetime as dt
import threading
import uuid as uuidlib

import pytest
import sqlalchemy as sa

from compute_agent.console import tokens as tokens_mod
from compute_agent.console.tokens import ConsoleTokenInvalid, ConsoleTokens
from compute_agent.db import models
from compute_agent.db.types import utcnow

LOCATION = "https://192.0.2.10/console?uuid=0d7c"


def _instance(database) -> str:
    uuid = str(uuidlib.uuid4())
    database.create_instance({"uuid": uuid, "name": "tok", "host": "h1"})
    return uuid


def test_issue_stores_only_the_hash_and_claims_once(database):
    uuid = _instance(database)
    store = ConsoleTokens(database)
    issued = store.issue(uuid, "h1", LOCATION, ttl=60)
    with database.engine.connect() as conn:
        rows = conn.execute(sa.select(models.ConsoleToken.__table__)).mappings().all()
    assert len(rows) == 1 and issued["token"] not in str(dict(rows[0]))
    assert rows[0]["token_hash"] == tokens_mod.token_hash(issued["token"])
    claim = store.claim(issued["token"])
    assert claim["instance_uuid"] == uuid and claim["console_location"] == LOCATION
    with pytest.raises(ConsoleTokenInvalid) as e:
        store.claim(issued["token"])
    assert e.value.params == ["used"]
    with pytest.raises(ConsoleTokenInvalid) as e:
        store.claim("nonsense")
    assert e.value.params == ["unknown"]


def test_racing_claims_have_one_winner(database):
    store = ConsoleTokens(database)
    token = store.issue(_instance(database), "h1", LOCATION, ttl=60)["token"]
    results: list[str] = []
    barrier = threading.Barrier(6)

    def claim() -> None:
        barrier.wait()
        try:
            store.claim(token)
            results.append("won")
        except ConsoleTokenInvalid as e:
            results.append(e.params[0])

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["used"] * 5 + ["won"]


def test_expired_tokens_are_refused_and_purged(database):
    uuid = _instance(database)
    store = ConsoleTokens(database)
    old = store.issue(uuid, "h1", LOCATION, ttl=60)
    table = models.ConsoleToken.__table__
    with database.engine.begin() as conn:
        conn.execute(sa.update(table).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    with pytest.raises(ConsoleTokenInvalid) as e:
        store.claim(old["token"])
    assert e.value.params == ["expired"]
    with database.engine.begin() as conn:
        conn.execute(sa.update(table).values(
            expires_at=utcnow() - tokens_mod.KEEP_EXPIRED - dt.timedelta(seconds=1)))
    store.issue(uuid, "h1", LOCATION, ttl=60)
    with database.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 1
