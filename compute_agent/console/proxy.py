"""The websocket-to-VNC proxy behind compute-agent-novncproxy, built on
websockify (the library OpenStack's noVNC proxy uses).

One threaded HTTP server does two things:

* ``GET /vnc_lite.html``, ``/core/...``: noVNC's static files from
  ``[console] novnc_web`` (files only, no directory listings);
* ``GET /websockify?token=T`` with a websocket upgrade: the token is
  claimed in the database (console.tokens) BEFORE anything else; a wrong,
  expired or used token gets ``403`` and no connection to dom0 is made.
  A claimed token opens the console its row names (console.dom0_console:
  our own XenAPI session, ``CONNECT`` to the console location, TLS
  verified) and websockify relays the bytes both ways through its bounded
  buffers until either side closes; then the session is logged out.

Tokens never reach a log: lines name the instance, not the token.
"""

from __future__ import annotations

import logging
import socket
import threading
import urllib.parse
from http.server import ThreadingHTTPServer
from typing import Any

from websockify.websocketproxy import ProxyRequestHandler

from compute_agent.console import dom0_console
from compute_agent.console.tokens import ConsoleTokenInvalid, ConsoleTokens
from compute_agent.driver.xenapi.session import ConnectionSettings
from compute_agent.exceptions import ComputeAgentError

LOG = logging.getLogger(__name__)
WEBSOCKET_PATH = "/websockify"


class ConsoleProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # read by websockify's request handler
    only_upgrade = False
    file_only = True
    verbose = False
    web_auth = False
    record = ""
    run_once = False
    heartbeat = None
    token_plugin = None
    auth_plugin = None
    logger = LOG

    def __init__(self, address: tuple[str, int], tokens: ConsoleTokens,
                 settings: ConnectionSettings, web_dir: str, connect_timeout: float = 10.0):
        self.tokens = tokens
        self.settings = settings
        self.web_dir = web_dir
        self.connect_timeout = connect_timeout
        self.handler_id = 0
        self.opened = 0  # consoles opened on dom0, for the operator's log
        self._count_lock = threading.Lock()
        super().__init__(address, ConsoleProxyHandler)

    def count_open(self) -> int:
        with self._count_lock:
            self.opened += 1
            return self.opened


class ConsoleProxyHandler(ProxyRequestHandler):
    server: ConsoleProxyServer

    def translate_path(self, path: str) -> str:
        self.directory = self.server.web_dir
        return super().translate_path(path)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        # the request line holds the token: log the path only
        path = urllib.parse.urlsplit(getattr(self, "path", "")).path
        LOG.debug("%s %s %s", self.client_address[0], getattr(self, "command", ""), path)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        self.log_message("%s", code)

    def handle_upgrade(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        token = urllib.parse.parse_qs(parts.query).get("token", [""])[0]
        if parts.path.rstrip("/") != WEBSOCKET_PATH:
            self.send_error(404, "no websocket here")
            return
        try:
            self.claim = self.server.tokens.claim(token)
        except ConsoleTokenInvalid as e:
            LOG.info("console connection from %s refused: %s", self.client_address[0],
                     e.params[0])
            self.send_error(403, "console token refused")
            return
        except ComputeAgentError as e:  # the database is down, say
            LOG.warning("console token check failed: %s", e)
            self.send_error(503, "console tokens cannot be checked")
            return
        super().handle_upgrade()

    def new_websocket_client(self) -> None:
        claim = self.claim
        uuid = claim["instance_uuid"]
        try:
            console = dom0_console.open_console(claim["console_location"], self.server.settings,
                                                self.server.connect_timeout)
        except ComputeAgentError as e:
            LOG.warning("console of instance %s: %s", uuid, e)
            raise self.CClose(1011, "the console could not be opened") from None
        n = self.server.count_open()
        LOG.info("console of instance %s opened for %s (#%d)", uuid, self.client_address[0], n)
        try:
            console.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.do_proxy(console.sock)
        finally:
            console.close()
            LOG.info("console of instance %s closed", uuid)


def make_server(host: str, port: int, tokens: ConsoleTokens, settings: ConnectionSettings,
                web_dir: str, connect_timeout: float = 10.0) -> ConsoleProxyServer:
    return ConsoleProxyServer((host, port), tokens, settings, web_dir, connect_timeout)
