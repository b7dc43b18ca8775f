"""Sessions: login, logout, validation and xapi's per-user session cap."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from xapisim import log_redaction
from xapisim.errors import XenAPIError
from xapisim.store import now_datetime

if TYPE_CHECKING:
    from xapisim.store import Store

DEFAULT_SESSION_LIMIT = 500
# What PAM answers xapi for a wrong password or an unknown user; xapi puts
# it, after the user name, in SESSION_AUTHENTICATION_FAILED.
PAM_FAILURE = "Authentication failure"


class SessionManager:
    """Sessions live in ``store``; ``legacy_events`` (the legacy event
    API's queues, one per session) loses a session's queue with it."""

    def __init__(self, store: Store, users: dict[str, str],
                 limit: int = DEFAULT_SESSION_LIMIT,
                 legacy_events: dict[str, Any] | None = None):
        self.store = store
        self.legacy_events = legacy_events if legacy_events is not None else {}
        self.users = dict(users)
        self.limit = limit
        self.last_used: dict[str, float] = {}
        self.lock = threading.Lock()

    def login(self, host_ref: str, uname: str, pwd: str, originator: str = "",
              local: bool = False, trusted: bool = False) -> str:
        """A new session, or SESSION_AUTHENTICATION_FAILED [uname, PAM's
        message] as xapi's local authentication answers. ``trusted``: the
        caller is dom0's root on xapi's local socket, whom xapi logs in
        without checking the credentials."""
        if trusted:
            uname = uname or "root"
        elif self.users.get(uname) != pwd:
            raise XenAPIError("SESSION_AUTHENTICATION_FAILED", uname, PAM_FAILURE)
        store = self.store
        ref = store.create(
            "session",
            {
                "this_host": host_ref,
                "last_active": now_datetime(),
                "validation_time": now_datetime(),
                "pool": False,
                "is_local_superuser": True,
                "auth_user_name": uname,
                "originator": originator,
                "rbac_permissions": [],
                "other_config": {"local": "true"} if local else {},
            },
        )
        log_redaction.add_session(ref)
        with self.lock:
            self.last_used[ref] = time.monotonic()
        self._enforce_limit(uname, originator)
        return ref

    def _enforce_limit(self, uname: str, originator: str) -> None:
        """xapi keeps at most ``limit`` sessions per (user, originator) and
        destroys the least recently used ones past that."""
        store = self.store
        with store.lock:
            mine = [
                ref
                for ref, rec in store.tables["session"].items()
                if rec["auth_user_name"] == uname and rec["originator"] == originator
            ]
            if len(mine) <= self.limit:
                return
            with self.lock:
                mine.sort(key=lambda r: self.last_used.get(r, 0.0))
            for ref in mine[: len(mine) - self.limit]:
                self.destroy(ref)

    def validate(self, ref: object) -> str:
        if not isinstance(ref, str) or not self.store.has("session", ref):
            raise XenAPIError("SESSION_INVALID", ref if isinstance(ref, str) else str(ref))
        with self.lock:
            self.last_used[ref] = time.monotonic()
        return ref

    def destroy(self, ref: str) -> None:
        store = self.store
        with store.lock:
            if store.has("session", ref):
                store.destroy("session", ref)
        with self.lock:
            self.last_used.pop(ref, None)
        self.legacy_events.pop(ref, None)
        log_redaction.forget_session(ref)

    def forget_all(self) -> None:
        """Simulated xapi restart: every session becomes invalid."""
        store = self.store
        with store.lock:
            for ref in list(store.tables["session"]):
                store.destroy("session", ref)
                log_redaction.forget_session(ref)
        with self.lock:
            self.last_used.clear()
        self.legacy_events.clear()
