"""XenAPI failures and transport errors as the agent's structured errors.

A ``XenAPI.Failure`` is data (code + params) and becomes a
``HypervisorError`` with exactly those; anything that means "could not talk
to dom0" (sockets, TLS, HTTP, XML-RPC faults of the transport) becomes
``HypervisorUnavailable(url, reason)``. Neither may carry the password or a
session reference: both end up in logs, fault records and RPC replies.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.parse
import xml.parsers.expat
import xmlrpc.client
from collections.abc import Iterable

import XenAPI

from compute_agent import exceptions

# Errors that mean the call never produced an answer from xapi.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # socket errors, timeouts, refused connections, ssl.SSLError
    http.client.HTTPException,
    xmlrpc.client.ProtocolError,
    xmlrpc.client.Fault,  # the SDK's own "could not log in again" and bad envelopes
    xmlrpc.client.ResponseError,
    xml.parsers.expat.ExpatError,  # an answer cut short by a dropped connection
    json.JSONDecodeError,  # the same over JSON-RPC
)

SESSION_PLACEHOLDER = "<session>"


def redact_url(url: str) -> str:
    """``url`` without user info (a URL may be written user:pass@host)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _scrub(values: Iterable[object], secrets: Iterable[str]) -> list[str]:
    hidden = [s for s in secrets if s]
    out = []
    for v in values:
        text = str(v)
        for s in hidden:
            if s in text:
                text = text.replace(s, SESSION_PLACEHOLDER)
        out.append(text)
    return out


# What of a dom0 error is kept in a record (tracked task, fault): xapi's
# params are short; a longer one is a dump that must not fill a database.
MAX_STORED_PARAMS = 16
MAX_STORED_PARAM = 1024


def scrub_for_storage(values: Iterable[object], secrets: Iterable[str]) -> list[str]:
    """A dom0 error (code and params) as it may be stored: secrets replaced
    as in logged errors, at most MAX_STORED_PARAMS entries of at most
    MAX_STORED_PARAM characters each."""
    out = _scrub(list(values)[:MAX_STORED_PARAMS], secrets)
    return [v if len(v) <= MAX_STORED_PARAM else v[: MAX_STORED_PARAM - 1] + "\u2026"
            for v in out]


def from_failure(
    failure: XenAPI.Failure, secrets: Iterable[str] = ()
) -> exceptions.HypervisorError:
    """The structured error for a XenAPI failure; any of ``secrets`` (the
    session ref, the password) is replaced in the params."""
    details = list(failure.details or [])
    return exceptions.hypervisor_error(_scrub(details, secrets) if details else details)


def from_error_info(
    error_info: list, secrets: Iterable[str] = ()
) -> exceptions.HypervisorError:
    """The structured error for a task's ``error_info``: the same as a
    synchronous failure of the same call would give."""
    return exceptions.hypervisor_error(_scrub(error_info or [], secrets))


def describe_transport_error(exc: BaseException) -> str:
    """A short reason for an unreachable dom0, without secrets: the class
    of error and what the OS/TLS/HTTP layer said."""
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = getattr(exc, "verify_message", None) or str(exc)
        return f"TLS certificate verification failed: {detail}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {getattr(exc, 'reason', None) or exc}"
    if isinstance(exc, xmlrpc.client.ProtocolError):
        return f"HTTP {exc.errcode} {exc.errmsg}"
    if isinstance(exc, xmlrpc.client.Fault):
        return f"XML-RPC fault {exc.faultCode}: {exc.faultString}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def unavailable(
    url: str, exc: BaseException, secrets: Iterable[str] = ()
) -> exceptions.HypervisorUnavailable:
    reason = _scrub([describe_transport_error(exc)], secrets)[0]
    return exceptions.HypervisorUnavailable(redact_url(url), reason)
