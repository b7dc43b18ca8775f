"""Secrets never reach the simulator's logs, however it is started (the
CLI, in-process in tests, the demo, benchmarks): every ``xapisim`` logger
carries ``RedactSecrets``, a filter that rewrites each record before any
handler sees it, wherever the handlers are.

What it hides: the refs of live sessions (registered at login, forgotten
at logout), the configured users' passwords, ``session_id=`` in URLs,
HTTP basic credentials, and values of keys named like passwords or
secrets in logged mappings (CHAP secrets in a device_config). Tracebacks
attached to a record are redacted too."""

from __future__ import annotations

import logging
import re
import threading

HIDDEN = "<hidden>"
# Passwords shorter than this are not masked: hiding every "a" in a log
# would destroy it and protect nothing.
MIN_SECRET_LEN = 4

_REF = re.compile(r"OpaqueRef:[0-9a-fA-F-]{36}")
_PATTERNS = [
    (re.compile(r"(session_id=)[^&\s\"']+"), r"\1" + HIDDEN),
    (re.compile(r"(Basic\s+)[A-Za-z0-9+/=]+"), r"\1" + HIDDEN),
    (re.compile(r"""(['"]?[\w-]*(?:password|secret|passwd)[\w-]*['"]?\s*[:=]\s*)"""
                r"""(['"])(?:(?!\2).)*\2""", re.IGNORECASE), r"\1\2" + HIDDEN + r"\2"),
]

_lock = threading.Lock()
_session_refs: set[str] = set()
_passwords: set[str] = set()


def add_session(ref: str) -> None:
    with _lock:
        _session_refs.add(ref)


def forget_session(ref: str) -> None:
    with _lock:
        _session_refs.discard(ref)


def add_password(secret: str) -> None:
    if len(secret) >= MIN_SECRET_LEN:
        with _lock:
            _passwords.add(secret)


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    with _lock:
        sessions = _session_refs & set(_REF.findall(text)) if "OpaqueRef:" in text else ()
        passwords = [p for p in _passwords if p in text]
    for ref in sessions:
        text = text.replace(ref, HIDDEN)
    for secret in sorted(passwords, key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    return text


class RedactSecrets(logging.Filter):
    """Rewrites a record's message (and traceback) without its secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = RedactSecrets()


def logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with the redaction filter on it."""
    log = logging.getLogger(name)
    protect(log)
    return log


def protect(log: logging.Logger) -> None:
    if _FILTER not in log.filters:
        log.addFilter(_FILTER)


def protect_all() -> None:
    """Put the filter on every ``xapisim`` logger that exists now (those a
    module made with plain logging.getLogger included)."""
    protect(logging.getLogger("xapisim"))
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("xapisim."):
            protect(logging.getLogger(name))
