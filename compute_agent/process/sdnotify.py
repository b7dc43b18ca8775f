"""systemd service notifications (the sd_notify protocol), in pure Python.

The agent runs as a ``Type=notify`` unit: it tells systemd when it is ready,
reloading or stopping, and pings the watchdog. The protocol is one datagram
of ``KEY=VALUE`` lines sent to the AF_UNIX socket named in ``NOTIFY_SOCKET``
(a path, or ``@name`` for the abstract namespace). Outside systemd the
variable is unset and every call here is a silent no-op, so callers never
need to test for it.

Capture the environment once, early (:meth:`Notifier.from_environment`):
libraries that launch services (cotyledon, oslo.service) send their own
premature ``READY=1`` and then delete ``NOTIFY_SOCKET``; unsetting it first
keeps them quiet and leaves the timing to the agent.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping

LOG = logging.getLogger(__name__)

_ENV_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def socket_address(value: str) -> str | None:
    """Turn a NOTIFY_SOCKET value into an address ``socket.connect`` takes.

    ``@name`` means the Linux abstract namespace (a leading NUL byte). Other
    schemes systemd knows (``vsock:``) are not for services: return None.
    """
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def watchdog_period(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds of the watchdog timeout systemd asked for, or None.

    WATCHDOG_PID, when present, names the process that must ping; another
    process (a child that inherited the environment) must not.
    """
    usec = env.get("WATCHDOG_USEC", "")
    wpid = env.get("WATCHDOG_PID", "")
    if wpid:
        try:
            if int(wpid) != pid:
                return None
        except ValueError:
            return None
    try:
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    return value / 1_000_000


class Notifier:
    """Sends notifications to one systemd notify socket (or nowhere)."""

    def __init__(self, address: str | None = None, watchdog_usec: int | None = None):
        self._raw_address = address
        self._address = socket_address(address) if address else None
        if address and self._address is None:
            LOG.warning("Unsupported NOTIFY_SOCKET %r; systemd notifications disabled", address)
        self.watchdog_interval = watchdog_usec / 1_000_000 if watchdog_usec else None
        self._lock = threading.Lock()

    @classmethod
    def from_environment(
        cls, unset: bool = False, environ: MutableMapping[str, str] | None = None
    ) -> Notifier:
        """Build a notifier from NOTIFY_SOCKET / WATCHDOG_USEC / WATCHDOG_PID.

        ``unset=True`` removes the three variables, so that neither child
        processes nor other libraries act on them.
        """
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        period = watchdog_period(env, os.getpid())
        if unset:
            for name in _ENV_VARS:
                env.pop(name, None)
        return cls(address, int(period * 1_000_000) if period else None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields in one datagram. True if it was sent.

        Failures are logged, never raised: a daemon must not die because its
        supervisor went away.
        """
        if self._address is None:
            return False
        payload = "\n".join(fields).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._address)
                sock.sendall(payload)
        except OSError as exc:
            LOG.warning("systemd notification %s failed: %s", fields[0] if fields else "", exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """The service is up (or finished reloading)."""
        fields = ["READY=1"]
        if status:
            fields.append(_status_field(status))
        return self.notify(*fields)

    def reloading(self) -> bool:
        """A reload starts; finish it with :meth:`ready`.

        MONOTONIC_USEC lets systemd (Type=notify-reload) match the reload to
        the request that caused it.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        """Shutdown has begun."""
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        """Free-form one-line status shown by ``systemctl status``."""
        return self.notify(_status_field(text))

    def watchdog(self) -> bool:
        """Keep-alive ping for WatchdogSec=."""
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time to finish starting, reloading or stopping."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def start_watchdog(self, healthy: Callable[[], bool] | None = None) -> Watchdog | None:
        """Ping the watchdog from a daemon thread at half the timeout.

        Returns None when systemd set no watchdog (or no socket).
        """
        if not self.enabled or not self.watchdog_interval:
            return None
        dog = Watchdog(self, self.watchdog_interval / 2, healthy)
        dog.start()
        return dog


class Watchdog:
    """A thread that pings while ``healthy()`` says so.

    A skipped ping is the point: if the agent is wedged, systemd kills and
    restarts it after WatchdogSec.
    """

    def __init__(
        self, notifier: Notifier, interval: float, healthy: Callable[[], bool] | None = None
    ):
        self._notifier = notifier
        self.interval = interval
        self._healthy = healthy
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._is_healthy():
                self._notifier.watchdog()
            else:
                LOG.warning("Agent unhealthy; withholding the systemd watchdog ping")
            self._stop.wait(self.interval)

    def _is_healthy(self) -> bool:
        if self._healthy is None:
            return True
        try:
            return bool(self._healthy())
        except Exception:  # a broken health probe means unhealthy, not a dead thread
            LOG.exception("Health probe for the systemd watchdog failed")
            return False


def _status_field(text: str) -> str:
    # One datagram line per field: a newline in the text would start a new,
    # bogus assignment.
    return "STATUS=" + " ".join(text.splitlines())
