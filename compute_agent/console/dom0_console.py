"""Opening a VM's console on dom0 the way xapi expects: a session of our
own (logged in with the [xenserver] credentials), then ``CONNECT
<console location>&session_id=<session>`` over HTTP(S) to the host the
location names, TLS verified as for every XenAPI call. After ``200 OK``
the socket carries RFB.

The session is the caller's to log out when the console closes; the
session reference never reaches a log line or an error.
"""

from __future__ import annotations

import socket
import urllib.parse
from dataclasses import dataclass

from compute_agent import exceptions
from compute_agent.driver.xenapi import errors
from compute_agent.driver.xenapi.session import ConnectionSettings, Coordinator, XenAPISession

MAX_HEADER_BYTES = 16 * 1024


class ConsoleUnavailable(exceptions.ComputeAgentError):
    """params: the console's host (no query string), why."""

    code = "CONSOLE_UNAVAILABLE"
    msg_fmt = "The console at {0} could not be opened: {1}"


@dataclass
class Dom0Console:
    sock: socket.socket
    session: XenAPISession

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            self.session.logout()


def _read_head(sock: socket.socket) -> bytes:
    """The response head, read byte by byte so that no RFB byte after it
    is consumed."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        b = sock.recv(1)
        if not b:
            raise OSError("dom0 closed the connection before answering")
        head += b
        if len(head) > MAX_HEADER_BYTES:
            raise OSError("dom0's answer has an oversized header")
    return head


def open_console(location: str, settings: ConnectionSettings, timeout: float) -> Dom0Console:
    parts = urllib.parse.urlsplit(location)
    where = f"{parts.scheme}://{parts.netloc}{parts.path}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConsoleUnavailable(where, "the console location is not an http(s) URL")
    session = XenAPISession(settings, Coordinator(settings.url), call_timeout=timeout)
    session.login()
    try:
        handle = session.handle()
        query = parts.query + ("&" if parts.query else "") + urllib.parse.urlencode(
            {"session_id": handle})
        port = parts.port or (443 if parts.scheme == "https" else 80)
        raw = socket.create_connection((parts.hostname, port), timeout=timeout)
        try:
            sock = raw
            if parts.scheme == "https":
                sock = settings.tls.context().wrap_socket(raw, server_hostname=parts.hostname)
            sock.sendall(f"CONNECT {parts.path}?{query} HTTP/1.0\r\n"
                         f"Host: {parts.netloc}\r\n\r\n".encode())
            status = _read_head(sock).split(b"\r\n", 1)[0].split()
            if len(status) < 2 or status[1] != b"200":
                code = status[1].decode(errors="replace") if len(status) > 1 else "?"
                raise ConsoleUnavailable(where, f"dom0 answered HTTP {code}")
            sock.settimeout(None)
            return Dom0Console(sock, session)
        except BaseException:
            raw.close()
            raise
    except ConsoleUnavailable:
        session.logout()
        raise
    except OSError as e:
        session.logout()
        raise ConsoleUnavailable(where, errors.describe_transport_error(e)) from None
    except BaseException:
        session.logout()
        raise
