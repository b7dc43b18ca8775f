"""libvirt's domain lifecycle events, fed to the agent.

libvirt delivers events only to a process that registered an event loop
implementation before opening its connection and runs it. :class:`EventLoop`
registers libvirt's default implementation once per process and runs it on a
native thread of its own (under eventlet too: it blocks in poll(2), which a
green thread must never do).

Callbacks run on that native thread, so they only queue: :class:`Bridge`
carries each callback over a pipe to a dispatcher thread of the agent's
concurrency model, where the work runs. There :class:`DomainEvents` turns a
lifecycle event into the domain's InstanceInfo for the power-state listener
(the same one the XenAPI driver's event.from watcher feeds) and wakes the
operations waiting for a domain to reach a state (a clean shutdown waits for
the domain to stop, not by polling).
"""

from __future__ import annotations

import collections
import logging
import os
import select
import sys
import threading
import time
from collections.abc import Callable

import libvirt

from compute_agent.driver.base import InstanceInfo

LOG = logging.getLogger(__name__)

_registered = False
_register_lock = threading.Lock()


def _native_thread_class() -> type[threading.Thread]:
    if "eventlet" not in sys.modules:
        return threading.Thread  # not monkey-patched: threads are native
    try:
        import eventlet.patcher
    except ImportError:
        return threading.Thread
    if eventlet.patcher.is_monkey_patched("thread"):
        return eventlet.patcher.original("threading").Thread
    return threading.Thread


class EventLoop:
    """libvirt's default event loop on a native thread (one per process)."""

    _thread: threading.Thread | None = None

    @classmethod
    def ensure_running(cls) -> None:
        """Register and start the loop; call before opening a connection."""
        global _registered
        with _register_lock:
            if not _registered:
                libvirt.virEventRegisterDefaultImpl()
                _registered = True
            if cls._thread is None:
                cls._thread = _native_thread_class()(
                    target=cls._run, name="libvirt-event-loop", daemon=True)
                cls._thread.start()

    @staticmethod
    def _run() -> None:
        while True:
            try:
                libvirt.virEventRunDefaultImpl()
            except Exception:  # keep events flowing; one bad round is logged
                LOG.exception("libvirt event loop iteration failed")
                time.sleep(0.1)


class Bridge:
    """Runs callables queued from any thread on one dispatcher thread."""

    def __init__(self, name: str = "libvirt-events") -> None:
        self._queue: collections.deque[Callable[[], None]] = collections.deque()
        self._read_fd, self._write_fd = os.pipe()
        # Non-blocking, read after select(): under eventlet both are green,
        # so the dispatcher never blocks the hub.
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call_soon(self, fn: Callable[[], None]) -> None:
        if self._stopped:
            return
        self._queue.append(fn)  # deque.append is atomic across native threads
        try:
            os.write(self._write_fd, b"x")
        except OSError:
            pass

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            os.write(self._write_fd, b"q")
        except OSError:
            pass
        if self._thread is not threading.current_thread():
            self._thread.join(5.0)
        for fd in (self._read_fd, self._write_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def _run(self) -> None:
        while not self._stopped:
            try:
                select.select([self._read_fd], [], [], 1.0)
                os.read(self._read_fd, 512)
            except BlockingIOError:
                pass
            except (OSError, ValueError):
                return
            while self._queue:
                fn = self._queue.popleft()
                try:
                    fn()
                except Exception:
                    LOG.exception("libvirt event handler failed")


# libvirt lifecycle event -> the shutdown reason the agent records.
STOP_REASONS = {
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: "halted",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED: "destroyed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED: "suspended",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED: "crashed",
}

InfoReader = Callable[[libvirt.virDomain], InstanceInfo | None]


class DomainEvents:
    """Lifecycle events of the domains the agent owns.

    ``read_info(domain)`` gives the InstanceInfo of one of the agent's
    domains (None for a domain that is not the agent's); ``listener`` gets
    ``(instance_uuid, info)`` for every change.
    """

    def __init__(self, bridge: Bridge, read_info: InfoReader) -> None:
        self.bridge = bridge
        self.read_info = read_info
        self.listener: Callable[[str, InstanceInfo], None] | None = None
        self._cond = threading.Condition()
        self._generation: dict[str, int] = {}
        self._stops: dict[str, str] = {}  # uuid -> marker of its last stop
        self._count = 0
        # The connection whose events count, and its registration.
        self._conn: libvirt.virConnect | None = None
        self._callback_id: int | None = None
        self.registrations = 0

    def register(self, conn: libvirt.virConnect) -> None:
        """Subscribe to ``conn``'s lifecycle events (on every new connection)
        and stop listening to the one it replaces. libvirt keeps a connection
        that still has callbacks registered open after its close, and would
        go on delivering its events: those of a replaced connection are
        ignored, and its registration dropped when libvirt still can."""
        old, old_id = self._conn, self._callback_id
        callback_id = conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None)
        self._conn, self._callback_id = conn, callback_id
        self.registrations += 1
        if old is not None and old is not conn and old_id is not None:
            self._deregister(old, old_id)

    def unregister(self) -> None:
        """Stop listening (before the connection closes, or it would stay
        open for the callback)."""
        conn, callback_id = self._conn, self._callback_id
        self._conn = self._callback_id = None
        if conn is not None and callback_id is not None:
            self._deregister(conn, callback_id)

    @staticmethod
    def _deregister(conn: libvirt.virConnect, callback_id: int) -> None:
        try:
            conn.domainEventDeregisterAny(callback_id)
        except (libvirt.libvirtError, KeyError, TypeError):
            pass  # gone with its connection

    def last_stop(self, uuid: str) -> str | None:
        """A marker that changes with every stop of the domain seen."""
        return self._stops.get(uuid)

    def wait_for(self, uuid: str, check: Callable[[], bool], timeout: float) -> bool:
        """Block until ``check()`` holds (True) or ``timeout`` seconds pass
        (False); ``check`` runs now and after every event of the domain."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                generation = self._generation.get(uuid, 0)
            if check():
                return True
            with self._cond:
                while self._generation.get(uuid, 0) == generation:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return check()
                    self._cond.wait(left)

    def poke(self, uuid: str) -> None:
        """Wake the waiters of ``uuid`` to re-check (e.g. after a cancel)."""
        with self._cond:
            self._generation[uuid] = self._generation.get(uuid, 0) + 1
            self._cond.notify_all()

    # -- on the event loop thread: hand over, nothing else ---------------------------

    def _on_lifecycle(self, conn: libvirt.virConnect, dom: libvirt.virDomain, event: int,
                      detail: int, _opaque: object) -> None:
        if conn is not self._conn:
            return  # a replaced connection's: the current one reports it too
        self.bridge.call_soon(lambda: self._handle(dom, event, detail))

    # -- on the dispatcher thread ----------------------------------------------------

    def _handle(self, dom: libvirt.virDomain, event: int, detail: int) -> None:
        uuid = dom.UUIDString()
        if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            self._count += 1
            self._stops[uuid] = f"{time.time():.6f}-{self._count}-" + STOP_REASONS.get(
                detail, "halted")
        with self._cond:
            self._generation[uuid] = self._generation.get(uuid, 0) + 1
            self._cond.notify_all()
        if event in (libvirt.VIR_DOMAIN_EVENT_UNDEFINED, libvirt.VIR_DOMAIN_EVENT_DEFINED):
            return  # no power change; a domain gone is the periodic sync's to see
        listener = self.listener
        if listener is None:
            return
        try:
            info = self.read_info(dom)
        except Exception as exc:  # the domain may be gone already
            LOG.debug("No info for domain %s after event %s: %s", uuid, event, exc)
            return
        if info is None:
            return
        if event == libvirt.VIR_DOMAIN_EVENT_STOPPED and info.shutdown_reason is None:
            info.shutdown_reason = STOP_REASONS.get(detail, "halted")
        listener(uuid, info)
