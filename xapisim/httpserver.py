"""HTTP(S) front door: one threaded server per simulated host address, and
xapi's local Unix socket in each host's dom0 root.

POST ``/`` and ``/RPC2`` carry XML-RPC, POST ``/jsonrpc`` JSON-RPC; every
other path goes to the routes of ``xapisim.handlers``. The local socket
speaks the same; xapi trusts root there (a login needs no credentials)
and, on a pool member, forwards calls to the coordinator."""

from __future__ import annotations

import base64
import os
import pathlib
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from xapisim import handlers, log_redaction, rpc_answer
from xapisim.errors import XenAPIError
from xapisim.faults import DropConnection, HangConnection

if TYPE_CHECKING:
    from xapisim.services import SimServices

LOG = log_redaction.logger("xapisim.http")
_CURRENT = threading.local()


def current_connection() -> socket.socket | None:
    """The connection the calling handler thread is serving, if any."""
    return getattr(_CURRENT, "connection", None)
MAX_RPC_BODY = 32 * 1024 * 1024


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
            self._rpc(rpc_answer.XMLRPC, "text/xml")
        elif path == "/jsonrpc":
            self._rpc(rpc_answer.JSONRPC, "application/json")
        else:
            self._route()

    def _rpc(self, protocol: str, ctype: str) -> None:
        req = HTTPRequest(self)
        body = req.read_body(MAX_RPC_BODY)
        if body is None:
            return
        sim = self.server.sim
        try:
            out = rpc_answer.answer(sim.dispatcher, self.server.host_ref, body, protocol,
                                    local_socket=self.server.local,
                                    peer_root=self.server.peer_is_root(self.connection))
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
        if not req.path.startswith("/_sim/"):
            self.server.sim.http_counts.add(self.server.label, self.command, req.path)
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


class _Connections:
    """The open connections of a listener, to drop them all at once."""

    host_ref: str
    local = False

    @property
    def label(self) -> str:
        """Where it listens: the host's address, or the socket's path."""
        return str(self.server_address[0])

    def _init_connections(self) -> None:
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def peer_is_root(self, conn: socket.socket) -> bool:
        return False

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


class HostServer(_Connections, ThreadingHTTPServer):
    """The listener of one simulated host."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, addr: tuple[str, int], sim: SimServices, host_ref: str,
                 tls: ssl.SSLContext | None = None):
        self.sim = sim
        self.host_ref = host_ref
        self.tls = tls
        self._init_connections()
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


class _LocalHandler(_Handler):
    disable_nagle_algorithm = False  # no TCP here

    def address_string(self) -> str:
        return "local"


class LocalServer(_Connections, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """xapi's Unix socket (``var/lib/xcp/xapi`` in a host's dom0 root)."""

    daemon_threads = True
    local = True

    def __init__(self, path: pathlib.Path, sim: SimServices, host_ref: str):
        self.sim = sim
        self.host_ref = host_ref
        self.path = path
        self._init_connections()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        super().__init__(str(path), _LocalHandler)
        os.chmod(path, 0o600)  # as xapi's: dom0's root only

    @property
    def label(self) -> str:
        return str(self.path)

    def peer_is_root(self, conn: socket.socket) -> bool:
        """The caller is dom0's root: uid 0, or the simulator's own user
        (who plays root in the simulated dom0)."""
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                    struct.calcsize("3i"))
        except OSError:
            return False
        _pid, uid, _gid = struct.unpack("3i", creds)
        return uid in (0, os.getuid())

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            LOG.debug("local connection ended: %r", exc)
        else:
            LOG.exception("error serving a local connection")

    def server_close(self) -> None:
        super().server_close()
        self.path.unlink(missing_ok=True)
