"""HTTP(S) transports for the XenAPI SDK: a socket timeout that can change
between calls (short for a login, long for an event.from long-poll) and TLS
verified against a configured CA file unless explicitly told not to."""

from __future__ import annotations

import socket
import ssl
import urllib.parse
import xmlrpc.client
from dataclasses import dataclass


@dataclass(frozen=True)
class TLSSettings:
    """How to check dom0's certificate: ``ca_file`` (None = the system's
    trust store) unless ``insecure``."""

    ca_file: str | None = None
    insecure: bool = False

    def context(self) -> ssl.SSLContext:
        if self.insecure:
            # Explicit opt-out for test set-ups; never the default.
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        return ssl.create_default_context(cafile=self.ca_file or None)


class _TimeoutMixin:
    """Applies ``self.timeout`` to new and to kept-alive connections, so a
    session can tighten or relax its timeout without reconnecting; and lets
    another thread interrupt a call blocked on the connection."""

    timeout: float | None = None
    interrupted = False

    def make_connection(self, host):  # type: ignore[no-untyped-def]
        if self.interrupted:
            # xmlrpc.client retries a dropped keep-alive connection once on
            # its own; after interrupt() that retry must not reconnect.
            raise ConnectionAbortedError("connection interrupted by the agent")
        conn = super().make_connection(host)  # type: ignore[misc]
        conn.timeout = self.timeout
        if conn.sock is not None:
            conn.sock.settimeout(self.timeout)
        return conn

    def interrupt(self) -> None:
        """Wake a thread blocked reading this transport's connection (a
        long-poll) by shutting its socket down; close() alone would not.
        No new connection is made until resume()."""
        self.interrupted = True
        conn = self._connection[1] if getattr(self, "_connection", None) else None
        sock = getattr(conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed

    def resume(self) -> None:
        self.interrupted = False


class HTTPTransport(_TimeoutMixin, xmlrpc.client.Transport):
    def __init__(self, timeout: float | None):
        super().__init__()
        self.timeout = timeout


class HTTPSTransport(_TimeoutMixin, xmlrpc.client.SafeTransport):
    def __init__(self, timeout: float | None, tls: TLSSettings):
        super().__init__(context=tls.context())
        self.timeout = timeout


def make_transport(url: str, timeout: float | None, tls: TLSSettings) -> xmlrpc.client.Transport:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme == "https":
        return HTTPSTransport(timeout, tls)
    if scheme == "http":
        return HTTPTransport(timeout)
    raise ValueError(f"unsupported XenAPI URL scheme {scheme!r} (http or https)")


def with_host(url: str, address: str) -> str:
    """``url`` pointed at another host (a pool coordinator's address), with
    the same scheme, port and path."""
    parts = urllib.parse.urlsplit(url)
    host = f"[{address}]" if ":" in address and not address.startswith("[") else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def host_of(url: str) -> str:
    return urllib.parse.urlsplit(url).hostname or ""
