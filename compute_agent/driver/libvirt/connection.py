"""One libvirt connection per agent, re-opened after it drops.

libvirt tells a remote connection's loss through its close callback (run on
the event loop thread); a local one (``test:///``, and any call failing with
a connection error) is noticed by ``isAlive``. Either way the next
:meth:`Connection.get` opens a new connection, and while nobody asks, a
background thread keeps trying every ``reconnect_interval`` so that events
resume on their own. ``on_open`` runs for every new connection (the event
registrations live on the connection); ``on_reconnect`` after every re-open
(not the first), so that the agent re-reads what it may have missed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import libvirt

from compute_agent import exceptions
from compute_agent.driver.libvirt.errors import is_connection_error

LOG = logging.getLogger(__name__)

OpenHook = Callable[[libvirt.virConnect], None]


def _quiet(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr unless a handler takes it; the
    agent reports errors itself, as structured data."""


class Connection:
    def __init__(self, uri: str, reconnect_interval: float = 2.0,
                 on_open: OpenHook | None = None,
                 on_reconnect: Callable[[str], None] | None = None,
                 call_soon: Callable[[Callable[[], None]], None] | None = None):
        self.uri = uri
        # How the close callback (on libvirt's event loop thread, a native
        # thread even under eventlet) hands its work to the agent's threads.
        self.call_soon = call_soon or (lambda fn: fn())
        self.reconnect_interval = reconnect_interval
        self.on_open = on_open
        self.on_reconnect = on_reconnect
        self._conn: libvirt.virConnect | None = None
        self._opened = 0
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._reconnecting = False
        libvirt.registerErrorHandler(_quiet, None)

    @property
    def opened(self) -> int:
        """How many times a connection was opened (1 until the first drop)."""
        return self._opened

    def get(self) -> libvirt.virConnect:
        """The open connection, re-opened if it dropped; raises
        HypervisorUnavailable when libvirt cannot be reached."""
        with self._lock:
            if self._closed.is_set():
                raise exceptions.HypervisorUnavailable(self.uri, "connection closed")
            conn = self._conn
            if conn is not None and self._alive(conn):
                return conn
            return self._open()

    def dropped(self, exc: libvirt.libvirtError) -> bool:
        """Tell the connection a call failed; True (and a re-open is under
        way) when the failure was the connection's."""
        if not is_connection_error(exc):
            return False
        self._lost("call failed: " + (exc.get_error_message() or str(exc)))
        return True

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.unregisterCloseCallback()
            except libvirt.libvirtError:
                pass
            try:
                conn.close()
            except libvirt.libvirtError:
                pass

    # -- internals -------------------------------------------------------------

    @staticmethod
    def _alive(conn: libvirt.virConnect) -> bool:
        try:
            return bool(conn.isAlive())
        except libvirt.libvirtError:
            return False

    def _open(self) -> libvirt.virConnect:
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            raise exceptions.HypervisorUnavailable(
                self.uri, exc.get_error_message() or str(exc)) from None
        try:
            conn.registerCloseCallback(self._on_close, None)
        except libvirt.libvirtError:
            pass  # local drivers have no transport to lose
        if self.on_open is not None:
            self.on_open(conn)
        old, self._conn = self._conn, conn
        self._opened += 1
        if old is not None:
            try:
                old.close()
            except libvirt.libvirtError:
                pass
        if self._opened > 1:
            LOG.info("libvirt connection to %s re-opened", self.uri)
            if self.on_reconnect is not None:
                self.on_reconnect(self.uri)
        return conn

    def _on_close(self, _conn: libvirt.virConnect, reason: int, _opaque: object) -> None:
        self.call_soon(lambda: self._lost(f"closed by libvirt (reason {reason})"))

    def _lost(self, why: str) -> None:
        with self._lock:
            if self._reconnecting or self._closed.is_set():
                return
            self._reconnecting = True
        LOG.warning("libvirt connection to %s lost: %s", self.uri, why)
        threading.Thread(target=self._reconnect_loop, name="libvirt-reconnect",
                         daemon=True).start()

    def _reconnect_loop(self) -> None:
        try:
            while not self._closed.wait(self.reconnect_interval):
                try:
                    with self._lock:
                        if self._conn is None or not self._alive(self._conn):
                            self._open()
                    return
                except exceptions.HypervisorUnavailable as exc:
                    LOG.debug("libvirt still unreachable: %s", exc.message)
        finally:
            with self._lock:
                self._reconnecting = False
