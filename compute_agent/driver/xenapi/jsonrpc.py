"""XenAPI over JSON-RPC 2.0 (xapi's ``/jsonrpc``), shaped like the SDK's
``XenAPI.Session`` so that session.py drives either one the same way.

Why a second protocol: the TaskWatcher's event.from answers carry full VM
and task records, hundreds at a time. Unmarshalling them from XML-RPC in
Python costs about 30 times more than ``json.loads`` of the same answer
(2 MB of XML against 0.6 MB of JSON for 200 VMs), and that delay is what a
waiter sees. Everything else goes through the official SDK. A session made
over one protocol is valid on the other, and a dom0 without ``/jsonrpc``
makes session.py fall back to XML-RPC.

Only what session.py uses of the SDK is mirrored: ``xenapi.<method>(...)``,
``xenapi.login_with_password``, ``xenapi.session.logout``, ``_session``,
``last_login_method`` (the SDK's automatic re-login on SESSION_INVALID, off
when None) and failures as ``XenAPI.Failure``.
"""

from __future__ import annotations

import http.client
import itertools
import json
import socket
import ssl
import urllib.parse
import xmlrpc.client
from typing import Any

import XenAPI

from compute_agent.driver.xenapi.transport import TLSSettings

PATH = "/jsonrpc"
_RELOGIN = object()
# Errors of a kept-alive connection the server closed meanwhile: the request
# did not reach it, so it may be sent again once on a new connection.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
          ConnectionAbortedError)


class JsonRpcTransport:
    """One keep-alive HTTP(S) connection with a changeable timeout, which
    another thread may interrupt (as transport.py's XML-RPC transports)."""

    def __init__(self, url: str, timeout: float | None, tls: TLSSettings):
        parts = urllib.parse.urlsplit(url)
        self.https = parts.scheme.lower() == "https"
        self.host = parts.hostname or ""
        self.port = parts.port
        self.url = url
        self.timeout = timeout
        self.interrupted = False
        self._context: ssl.SSLContext | None = tls.context() if self.https else None
        self._conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self.interrupted:
            raise ConnectionAbortedError("connection interrupted by the agent")
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                               context=self._context)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def post(self, body: bytes) -> bytes:
        for attempt in (0, 1):
            reused = self._conn is not None
            conn = self._conn or self._connect()
            self._conn = conn
            conn.timeout = self.timeout
            if conn.sock is not None:
                conn.sock.settimeout(self.timeout)
            try:
                conn.request("POST", PATH, body, {"Content-Type": "application/json",
                                                  "Accept": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
            except _STALE:
                self.close()
                if attempt or not reused or self.interrupted:
                    raise
                continue
            except BaseException:
                self.close()
                raise
            if resp.will_close:
                self.close()
            if resp.status != 200:
                raise xmlrpc.client.ProtocolError(
                    f"{self.host}{PATH}", resp.status, resp.reason, dict(resp.getheaders())
                )
            return data
        raise AssertionError("unreachable")

    def interrupt(self) -> None:
        self.interrupted = True
        conn = self._conn
        sock = getattr(conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def resume(self) -> None:
        self.interrupted = False

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class _Dispatcher:
    def __init__(self, send, name: str | None = None):  # type: ignore[no-untyped-def]
        self._send = send
        self._name = name

    def __getattr__(self, name: str) -> _Dispatcher:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Dispatcher(self._send, name if self._name is None else f"{self._name}.{name}")

    def __call__(self, *args: Any) -> Any:
        return self._send(self._name, args)


def parse_answer(doc: Any) -> Any:
    """The result of a JSON-RPC 1.0 or 2.0 answer, _RELOGIN for
    SESSION_INVALID, or XenAPI.Failure for any other error."""
    if not isinstance(doc, dict):
        raise xmlrpc.client.ResponseError(f"JSON-RPC answer is not an object: {doc!r:.100}")
    error = doc.get("error")
    if error:
        if isinstance(error, dict):  # 2.0: {code, message: CODE, data: [params]}
            data = error.get("data")
            details = [str(error.get("message", "")), *(data if isinstance(data, list) else [])]
        elif isinstance(error, list):  # 1.0: [CODE, params...]
            details = [str(x) for x in error]
        else:
            details = [str(error)]
        if details[0] == "SESSION_INVALID":
            return _RELOGIN
        raise XenAPI.Failure(details)
    if "result" not in doc:
        raise xmlrpc.client.ResponseError("JSON-RPC answer without result or error")
    return doc["result"]


class JsonRpcSession:
    """The subset of ``XenAPI.Session`` that session.py uses, over JSON-RPC."""

    def __init__(self, url: str, transport: JsonRpcTransport):
        self.url = url
        self.transport = transport
        self._session: str | None = None
        self.last_login_method: str | None = None
        self.last_login_params: tuple[Any, ...] | None = None
        self._ids = itertools.count(1)

    @property
    def xenapi(self) -> _Dispatcher:
        return _Dispatcher(self.xenapi_request)

    def _rpc(self, method: str, params: tuple[Any, ...]) -> Any:
        body = json.dumps(
            {"jsonrpc": "2.0", "method": method, "params": list(params), "id": next(self._ids)}
        ).encode()
        return parse_answer(json.loads(self.transport.post(body)))

    def _login(self, method: str, params: tuple[Any, ...]) -> None:
        result = self._rpc(f"session.{method}", params)
        if result is _RELOGIN:
            raise xmlrpc.client.Fault(500, "Received SESSION_INVALID when logging in")
        self._session = result
        self.last_login_method, self.last_login_params = method, params

    def xenapi_request(self, method: str, params: tuple[Any, ...]) -> Any:
        if method.startswith("login"):
            self._login(method, params)
            return None
        if method in ("logout", "session.logout"):
            try:
                result = self._rpc("session.logout", (self._session,))
                return None if result is _RELOGIN else result
            finally:
                self._session = None
                self.last_login_method = self.last_login_params = None
        for _ in range(3):
            result = self._rpc(method, (self._session, *params))
            if result is not _RELOGIN:
                return result
            if not self.last_login_method:
                raise xmlrpc.client.Fault(401, "You must log in")
            self._login(self.last_login_method, self.last_login_params or ())
        raise xmlrpc.client.Fault(500, "Tried 3 times to get a valid session, but failed")
