"""HTTP(S) front door: one threaded server per simulated host address.

POST ``/`` and ``/RPC2`` carry XML-RPC, POST ``/jsonrpc`` JSON-RPC; every
other path goes to the routes of ``xapisim.handlers``."""

from __future__ import annotations

import base64
import logging
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from xapisim import handlers, wire
from xapisim.errors import XenAPIError
from xapisim.faults import DropConnection, HangConnection

if TYPE_CHECKING:
    from xapisim.services import SimServices

LOG = logging.getLogger("xapisim.http")
_CURRENT = threading.local()


def current_connection() -> socket.socket | None:
    """The connection the calling handler thread is serving, if any."""
    return getattr(_CURRENT, "connection", None)
MAX_RPC_BODY = 32 * 1024 * 1024
SECRET_METHODS = ("session.login_with_password", "session.slave_local_login_with_password")


class HTTPRequest:
    """What a route handler sees of one request."""

    def __init__(self, h: _Handler):
        self._h = h
        self.sim: SimServices = h.server.sim
        self.host_ref: str = h.server.host_ref
        self.method = h.command
        parsed = urllib.parse.urlsplit(h.path)
        self.path = parsed.path
        self.query_all = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        self.query = {k: v[0] for k, v in self.query_all.items()}
        self.headers = h.headers
        self.rfile = h.rfile
        self.wfile = h.wfile
        self.connection: socket.socket = h.connection

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        if value is None:
            return None
        try:
            n = int(value)
        except ValueError:
            return None
        return n if n >= 0 else None

    def read_body(self, limit: int) -> bytes | None:
        """The whole body, or None after answering 411/413 when it is
        missing or too large."""
        n = self.content_length
        if n is None:
            self.send_error(411, "Content-Length required")
            return None
        if n > limit:
            self.send_error(413, "request body too large")
            return None
        return self.rfile.read(n)

    def session(self) -> str | None:
        """The caller's session from ``session_id`` or HTTP basic auth, or
        None after answering 401."""
        sim = self.sim
        ref = self.query.get("session_id")
        if ref is None:
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                try:
                    user, _, pwd = base64.b64decode(auth[6:]).decode().partition(":")
                    ref = sim.sessions.login(self.host_ref, user, pwd, "http-basic")
                except (XenAPIError, ValueError, UnicodeDecodeError):
                    ref = None
        if ref is not None:
            try:
                return sim.sessions.validate(ref)
            except XenAPIError:
                pass
        self.send_error(401, "unauthorised")
        return None

    def send(self, status: int, body: bytes = b"", content_type: str = "text/plain",
             headers: dict[str, str] | None = None) -> None:
        h = self._h
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if body and self.method != "HEAD":
            h.wfile.write(body)

    def send_headers(self, status: int, headers: dict[str, str]) -> None:
        h = self._h
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()

    def send_error(self, status: int, message: str) -> None:
        self._h.close_connection = True
        self.send(status, (message + "\n").encode(), headers={"Connection": "close"})

    def close_connection(self) -> None:
        self._h.close_connection = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A client that goes silent mid-request or idles on a keep-alive
    # connection gives its thread back after this long (xapi drops idle
    # connections too); long-running calls are unaffected, as the timeout
    # only bounds socket reads and writes.
    timeout = 300
    server_version = "xapi"
    sys_version = ""
    # Headers and body go out in separate writes: with Nagle on, the body
    # waits for the client's delayed ACK (~40 ms per keep-alive call).
    disable_nagle_algorithm = True

    def log_message(self, fmt: str, *args: Any) -> None:  # routed to logging
        LOG.debug("%s %s", self.address_string(), fmt % args)

    def setup(self) -> None:
        super().setup()
        _CURRENT.connection = self.connection
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def _host_is_down(self) -> bool:
        """A failed host drops every connection except the control API's."""
        if self.server.host_ref not in self.server.sim.failed_hosts:
            return False
        if urllib.parse.urlsplit(self.path).path.startswith("/_sim/"):
            return False
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return True

    # -- RPC ------------------------------------------------------------------
    def do_POST(self) -> None:
        if self._host_is_down():
            return
        path = urllib.parse.urlsplit(self.path).path
        if path in ("/", "/RPC2"):
            self._rpc(wire.decode_xmlrpc, self._xml_ok, self._xml_fail, "text/xml")
        elif path == "/jsonrpc":
            self._rpc(wire.decode_jsonrpc, self._json_ok, self._json_fail, "application/json")
        else:
            self._route()

    @staticmethod
    def _xml_ok(req, value):
        return wire.encode_xmlrpc_success(value)

    @staticmethod
    def _xml_fail(req, err):
        return wire.encode_xmlrpc_failure(err)

    @staticmethod
    def _json_ok(req, value):
        return wire.encode_jsonrpc_success(req, value)

    @staticmethod
    def _json_fail(req, err):
        return wire.encode_jsonrpc_failure(req or wire.Request("", [], None, "2.0"), err)

    def _rpc(self, decode, ok, fail, ctype: str) -> None:
        req = HTTPRequest(self)
        body = req.read_body(MAX_RPC_BODY)
        if body is None:
            return
        sim = self.server.sim
        request = None
        try:
            request = decode(body)
            _log_call(request)
            value = sim.dispatcher.call(self.server.host_ref, request.method, request.params)
            out = ok(request, value)
        except XenAPIError as e:
            LOG.debug("-> %s", e.code)
            out = fail(request, e)
        except DropConnection:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        except HangConnection as h:
            time.sleep(h.seconds)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        except Exception as e:  # a simulator bug answers INTERNAL_ERROR, never a hang
            LOG.exception("internal error")
            out = fail(request, XenAPIError("INTERNAL_ERROR", repr(e)))
        if not sim.running:
            self.close_connection = True
        try:
            req.send(200, out, ctype)
        except (BrokenPipeError, ConnectionResetError):
            # the caller hung up before its answer (as _route handles it)
            self.close_connection = True

    # -- other handlers ----------------------------------------------------------
    def do_GET(self) -> None:
        self._route()

    def do_PUT(self) -> None:
        self._route()

    def do_HEAD(self) -> None:
        self._route()

    def do_DELETE(self) -> None:
        self._route()

    def do_CONNECT(self) -> None:
        self._route()

    def _route(self) -> None:
        if self._host_is_down():
            return
        req = HTTPRequest(self)
        fn = handlers.find(self.command, req.path)
        if fn is None:
            req.send_error(404, f"no handler for {self.command} {req.path}")
            return
        try:
            fn(req)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            LOG.exception("handler %s failed", req.path)
            self.close_connection = True
            try:
                req.send(500, b"internal error\n")
            except OSError:
                pass


def _log_call(request: wire.Request) -> None:
    if not LOG.isEnabledFor(logging.DEBUG):
        return
    if request.method.endswith(SECRET_METHODS):
        LOG.debug("call %s (credentials hidden)", request.method)
    else:
        # params[0] is normally the session ref: a secret too
        LOG.debug("call %s (%d params)", request.method, len(request.params))


class HostServer(ThreadingHTTPServer):
    """The listener of one simulated host."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, addr: tuple[str, int], sim: SimServices, host_ref: str,
                 tls: ssl.SSLContext | None = None):
        self.sim = sim
        self.host_ref = host_ref
        self.tls = tls
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def get_request(self):
        sock, addr = super().get_request()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up mid-answer is ordinary; anything else is
        logged with its traceback (never printed raw to stderr)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, TimeoutError)):
            LOG.debug("connection from %s ended: %r", client_address[0], exc)
        else:
            LOG.exception("error serving %s", client_address[0])

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def drop_all_connections(self, keep: socket.socket | None = None) -> int:
        with self._conns_lock:
            conns = [c for c in self._conns if c is not keep]
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return len(conns)
