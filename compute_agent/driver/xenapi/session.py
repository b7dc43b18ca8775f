"""XenAPI sessions over the official SDK, and a bounded pool of them.

The SDK's ``XenAPI.Session`` is not thread-safe (one HTTP connection, one
session handle), so each concurrent user borrows a whole session from the
pool and gives it back; the pool never holds more than
``[xenserver] connection_concurrent`` of them.

What a session takes care of so callers do not have to:

* ``SESSION_INVALID`` (xapi restarted, session expired): the SDK logs in
  again with the same credentials and retries the call, transparently.
* ``HOST_IS_SLAVE [address]``: the URL names a pool member, or the pool's
  coordinator changed. The session logs in at that address (same scheme and
  port) and retries; the new address is shared by every session of the pool.
* Errors: ``XenAPI.Failure`` becomes ``HypervisorError(code, params)``,
  transport trouble ``HypervisorUnavailable(url, reason)``; neither carries
  the password or the session handle.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import XenAPI

from compute_agent import exceptions
from compute_agent.driver.xenapi import errors
from compute_agent.driver.xenapi.coordinator import CallStats, Coordinator
from compute_agent.driver.xenapi.jsonrpc import JsonRpcSession, JsonRpcTransport
from compute_agent.driver.xenapi.transport import TLSSettings, make_transport, with_host

LOG = logging.getLogger(__name__)

API_VERSION = "2.0"
ORIGINATOR = "compute-agent"
# A login that is redirected more often than this is a loop, not a pool.
MAX_REDIRECTS = 3
# Socket timeout of ordinary calls once logged in. Long work runs as Async.*
# tasks, so a call that takes this long means dom0 is stuck.
DEFAULT_CALL_TIMEOUT = 120.0


@dataclass(frozen=True)
class ConnectionSettings:
    url: str
    username: str
    password: str = field(repr=False)
    login_timeout: float = 10.0
    call_timeout: float | None = DEFAULT_CALL_TIMEOUT
    tls: TLSSettings = field(default_factory=TLSSettings)
    originator: str = ORIGINATOR


def is_read_only(method: str) -> bool:
    """Whether repeating ``method`` is harmless (a read): such a call is
    retried once on a new connection when the old one broke under it."""
    if method.startswith("Async."):
        return False
    name = method.rsplit(".", 1)[-1]
    return name.startswith("get_")


XMLRPC = "xmlrpc"
JSONRPC = "jsonrpc"


class XenAPISession:
    """One logged-in session: the official SDK (XML-RPC), or its JSON-RPC
    twin (jsonrpc.py) for the event stream. Use from one thread at a time."""

    def __init__(
        self,
        settings: ConnectionSettings,
        coordinator: Coordinator,
        stats: CallStats | None = None,
        call_timeout: float | None = None,
        protocol: str = XMLRPC,
    ):
        self.settings = settings
        self.coordinator = coordinator
        self.stats = stats or CallStats()
        self.call_timeout = call_timeout if call_timeout is not None else settings.call_timeout
        self._sdk: XenAPI.Session | None = None
        self._transport: Any = None
        self._interrupted = False
        self.url = coordinator.url
        self.protocol = protocol
        # How often this session logged in (itself or through the SDK's
        # automatic re-login): a change means xapi may have restarted.
        self.logins = 0

    @property
    def logged_in(self) -> bool:
        return self._sdk is not None

    def _secrets(self) -> list[str]:
        handle = getattr(self._sdk, "_session", None) if self._sdk is not None else None
        return [s for s in (handle, self.settings.password) if s]

    # -- login / logout ----------------------------------------------------
    def login(self) -> None:
        """Log in at the coordinator, following HOST_IS_SLAVE redirects."""
        url = self.coordinator.url
        fell_back = False
        redirects = 0
        while True:
            transport, sdk = self._connect(url)
            try:
                self.stats.count_login()
                sdk.xenapi.login_with_password(
                    self.settings.username,
                    self.settings.password,
                    API_VERSION,
                    self.settings.originator,
                )
            except XenAPI.Failure as f:
                transport.close()
                details = list(f.details or [])
                if details[:1] == ["HOST_IS_SLAVE"] and len(details) > 1:
                    redirects += 1
                    if redirects > MAX_REDIRECTS:
                        raise errors.from_failure(f, [self.settings.password]) from None
                    url = with_host(url, str(details[1]))
                    continue
                raise errors.from_failure(f, [self.settings.password]) from None
            except errors.TRANSPORT_ERRORS as e:
                transport.close()
                if (self.protocol == JSONRPC and isinstance(e, xmlrpc.client.ProtocolError)
                        and e.errcode in (404, 405, 501)):
                    LOG.info("dom0 has no JSON-RPC endpoint; using XML-RPC")
                    self.protocol = XMLRPC
                    continue
                # A remembered coordinator may be gone (the pool elected a new
                # one); the configured address still knows where it is now.
                if url != self.coordinator.configured_url and not fell_back:
                    fell_back = True
                    url = self.coordinator.configured_url
                    continue
                raise errors.unavailable(url, e, [self.settings.password]) from None
            self._sdk, self._transport, self.url = sdk, transport, url
            self.logins += 1
            self.coordinator.logged_in_at(url)
            return

    def _connect(self, url: str) -> tuple[Any, Any]:
        timeout = self.settings.login_timeout
        transport: Any
        sdk: Any
        if self.protocol == JSONRPC:
            transport = JsonRpcTransport(url, timeout, self.settings.tls)
            sdk = JsonRpcSession(url, transport)
        else:
            transport = make_transport(url, timeout, self.settings.tls)
            sdk = XenAPI.Session(url, transport=transport)
        transport.interrupted = self._interrupted  # stopping: no new connections
        return transport, sdk

    def logout(self) -> None:
        """Log out (best effort: dom0 may already be gone) and close."""
        sdk, transport = self._sdk, self._transport
        self._sdk = self._transport = None
        if sdk is None:
            return
        try:
            transport.timeout = self.settings.login_timeout
            if hasattr(transport, "resume"):
                transport.resume()  # after interrupt(): one more call, the logout
            sdk.xenapi.session.logout()
        except (XenAPI.Failure, *errors.TRANSPORT_ERRORS) as e:
            LOG.debug("XenAPI logout failed: %s", errors.describe_transport_error(e))
        finally:
            transport.close()

    def handle(self) -> str:
        """The session reference (logging in first if needed), for dom0's
        HTTP handlers' ``session_id``. A secret: it must reach no log."""
        if self._sdk is None:
            self.login()
        assert self._sdk is not None
        return str(self._sdk._session)

    def forget(self) -> None:
        """dom0 refused the handle (HTTP 401): the next use logs in anew."""
        self._drop_dead_session()

    def _drop_dead_session(self) -> None:
        """Forget a session xapi no longer knows (no logout to send)."""
        transport = self._transport
        self._sdk = self._transport = None
        if transport is not None:
            transport.close()

    def interrupt(self) -> None:
        """Make a call blocked in another thread (event.from) return with a
        transport error now."""
        self._interrupted = True
        transport = self._transport
        if transport is not None and hasattr(transport, "interrupt"):
            transport.interrupt()

    def close_connection(self) -> None:
        """Drop the HTTP connection but keep the session handle (the next
        call reconnects). Used after a transport error and to interrupt."""
        if self._transport is not None:
            self._transport.close()

    # -- calls ---------------------------------------------------------------
    def call(self, method: str, *args: Any, timeout: float | None = None,
             relogin: bool = True) -> Any:
        """Call ``method`` ("VM.get_record", "Async.VM.start", "event.from",
        ...) with ``args`` (after the session handle, which is added).

        ``relogin=False``: a dead session raises SESSION_INVALID instead of
        being replaced silently (the next call logs in) -- for a caller
        whose state depends on the session, like an event stream.
        """
        redirects = 0
        retried = False
        while True:
            if self._sdk is None:
                self.login()
            assert self._sdk is not None
            self._transport.timeout = timeout if timeout is not None else self.call_timeout
            target: Any = self._sdk.xenapi
            for part in method.split("."):
                target = getattr(target, part)
            handle = self._sdk._session
            saved_login = self._sdk.last_login_method
            if not relogin:
                # The SDK re-logs in on SESSION_INVALID only when it knows how.
                self._sdk.last_login_method = None
            try:
                self.stats.count(method)
                if method != "event.from":  # the watcher logs its batches
                    LOG.debug("XenAPI %s", method)  # never the arguments: they hold secrets
                result = target(*args)
            except xmlrpc.client.Fault as f:
                if relogin or f.faultCode != 401:
                    secrets = self._secrets()
                    self.close_connection()
                    raise errors.unavailable(self.url, f, secrets) from None
                # The SDK's "You must log in": the session is gone.
                self._drop_dead_session()
                raise exceptions.HypervisorError(code="SESSION_INVALID") from None
            except XenAPI.Failure as f:
                details = list(f.details or [])
                if details[:1] == ["HOST_IS_SLAVE"] and len(details) > 1:
                    # Raised before the call ran (or by the SDK's re-login):
                    # safe to repeat at the coordinator.
                    redirects += 1
                    if redirects <= MAX_REDIRECTS:
                        self.coordinator.moved_to(with_host(self.url, str(details[1])))
                        self.logout()
                        continue
                raise errors.from_failure(f, self._secrets()) from None
            except errors.TRANSPORT_ERRORS as e:
                secrets = self._secrets()
                self.close_connection()
                if not retried and not self._interrupted and is_read_only(method):
                    # A kept-alive connection dropped by dom0 (e.g. an xapi
                    # restart) breaks the next call; a read can go again.
                    retried = True
                    LOG.debug("%s: connection broke (%s); retrying once", method,
                              errors.describe_transport_error(e))
                    continue
                raise errors.unavailable(self.url, e, secrets) from None
            finally:
                if self._sdk is not None:
                    self._sdk.last_login_method = saved_login
            if self._sdk is not None and self._sdk._session != handle:
                # The SDK met SESSION_INVALID and logged in again by itself.
                self.logins += 1
                self.stats.count_login()
                LOG.info("XenAPI session was invalid (xapi restarted?); logged in again")
                self.coordinator.reconnected("relogin")
            return result


class SessionPool:
    """At most ``size`` sessions, each lent to one user at a time."""

    def __init__(self, settings: ConnectionSettings, size: int = 5):
        if size < 1:
            raise ValueError("session pool size must be at least 1")
        self.settings = settings
        self.size = size
        self.coordinator = Coordinator(settings.url)
        self.stats = CallStats()
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[XenAPISession] = []
        self._dedicated: list[XenAPISession] = []
        self._closed = False

    @property
    def url(self) -> str:
        """The coordinator's URL as currently known."""
        return self.coordinator.url

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise exceptions.HypervisorUnavailable(
                errors.redact_url(self.url), "session pool is closed"
            )

    @contextlib.contextmanager
    def session(self, wait: float | None = None) -> Iterator[XenAPISession]:
        """Borrow a session (logging one in if none is idle). ``wait``:
        seconds to wait for a free one, None = as long as it takes."""
        self._check_open()
        got = self._slots.acquire() if wait is None else self._slots.acquire(timeout=wait)
        if not got:
            raise exceptions.HypervisorUnavailable(
                errors.redact_url(self.url), f"no free XenAPI session within {wait} s"
            )
        try:
            with self._lock:
                sess = self._idle.pop() if self._idle else None
            if sess is None:
                sess = XenAPISession(self.settings, self.coordinator, self.stats)
            try:
                yield sess
            finally:
                if self._closed:
                    sess.logout()
                else:
                    with self._lock:
                        self._idle.append(sess)
        finally:
            self._slots.release()

    def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Borrow a session for one call."""
        with self.session() as sess:
            return sess.call(method, *args, timeout=timeout)

    def reset_idle(self) -> None:
        """Log out the idle sessions: the next users log in afresh at the
        coordinator as now known (the host joined or left a pool)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for sess in idle:
            sess.logout()

    def dedicated(self, call_timeout: float | None = None,
                  protocol: str = XMLRPC) -> XenAPISession:
        """A session outside the pool's bound, for a long-lived user (the
        task watcher's event.from loop); logged out by close()."""
        self._check_open()
        sess = XenAPISession(self.settings, self.coordinator, self.stats, call_timeout,
                             protocol)
        with self._lock:
            self._dedicated.append(sess)
        return sess

    def release_dedicated(self, sess: XenAPISession) -> None:
        with self._lock:
            if sess in self._dedicated:
                self._dedicated.remove(sess)
        sess.logout()

    def close(self) -> None:
        """Log out every session; sessions in use are logged out when they
        come back. Safe to call twice."""
        self._closed = True
        with self._lock:
            idle, self._idle = self._idle, []
            dedicated, self._dedicated = self._dedicated, []
        for sess in idle + dedicated:
            sess.logout()
