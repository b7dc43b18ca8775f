"""Console tokens: issued by the agent for get_vnc_console, claimed once by
compute-agent-novncproxy.

A token is 32 random bytes (URL-safe base64). The database keeps only its
SHA-256, so neither a database dump nor a log line can open a console; the
row names the instance the token opens, the agent host that issued it, the
dom0 location of the VM's console and the expiry time. Any proxy process
that shares the database can check a token (behind a load balancer).

``claim`` is one conditional UPDATE (unused and unexpired, else nothing
changes), so of two connections racing with the same token exactly one
wins, on every backend; an expired, unknown or already used token is
refused with CONSOLE_TOKEN_INVALID [reason] and the proxy never reaches
dom0 for it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

import sqlalchemy as sa

from compute_agent.db import engine as db_engine
from compute_agent.db import models
from compute_agent.db.api import Database
from compute_agent.db.types import format_time, utcnow
from compute_agent.exceptions import ComputeAgentError

_tokens = models.ConsoleToken.__table__
# expired rows are removed this long after their expiry, on the next issue
KEEP_EXPIRED = dt.timedelta(hours=1)
MAX_TOKEN_LENGTH = 128


class ConsoleTokenInvalid(ComputeAgentError):
    """params: why (unknown, expired, used). Never the token itself."""

    code = "CONSOLE_TOKEN_INVALID"
    msg_fmt = "Console token refused: {0}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ConsoleTokens:
    def __init__(self, db: Database):
        self.db = db

    def issue(self, instance_uuid: str, host: str, console_location: str,
              ttl: int) -> dict[str, Any]:
        """A new token for ``instance_uuid``: ``{token, expires_at}``."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        expires = now + dt.timedelta(seconds=ttl)
        with db_engine.transaction(self.db.engine, write=True) as conn:
            conn.execute(sa.delete(_tokens).where(_tokens.c.expires_at < now - KEEP_EXPIRED))
            conn.execute(sa.insert(_tokens).values(
                token_hash=token_hash(token), instance_uuid=instance_uuid, host=host,
                console_location=console_location, expires_at=expires, created_at=now))
        return {"token": token, "expires_at": format_time(expires)}

    def claim(self, token: str) -> dict[str, Any]:
        """Mark ``token`` used and return its row (instance_uuid, host,
        console_location, expires_at), or raise ConsoleTokenInvalid."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise ConsoleTokenInvalid("unknown")
        digest = token_hash(token)
        now = utcnow()
        with db_engine.transaction(self.db.engine, write=True) as conn:
            won = conn.execute(
                sa.update(_tokens)
                .where(_tokens.c.token_hash == digest, _tokens.c.used_at.is_(None),
                       _tokens.c.expires_at > now)
                .values(used_at=now)
            ).rowcount
            row = conn.execute(sa.select(_tokens).where(_tokens.c.token_hash == digest)
                               ).mappings().first()
        if row is None:
            raise ConsoleTokenInvalid("unknown")
        if won != 1:
            raise ConsoleTokenInvalid("used" if row["used_at"] is not None else "expired")
        return {"instance_uuid": row["instance_uuid"], "host": row["host"],
                "console_location": row["console_location"],
                "expires_at": format_time(row["expires_at"])}
