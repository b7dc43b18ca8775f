"""Bounded build concurrency: at most ``[DEFAULT] max_concurrent_builds``
builds talk to the hypervisor at once, the others queue.

A queued build has not reached dom0 yet, so it can still be cancelled
(OPERATION_CANCELLED) or, when the agent shuts down, handed back
(BUILD_ABORTED) without leaving anything behind.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from compute_agent import exceptions


class BuildSlots:
    """Thread-safe; one per manager. ``stopping`` is the manager's shutdown flag."""

    def __init__(self, size: int, stopping: threading.Event, host: str):
        self.size = size
        self._slots = threading.BoundedSemaphore(size)
        self._stopping = stopping
        self._host = host
        self._lock = threading.Lock()
        self._running = 0
        self._queued: set[str] = set()  # builds waiting for a slot
        self._cancelled: set[str] = set()  # ...of which these are cancelled

    @property
    def running(self) -> int:
        with self._lock:
            return self._running

    def queue(self, uuid: str) -> None:
        """Queued from acceptance on, so a cancel that arrives before the
        worker thread runs is not lost."""
        with self._lock:
            self._queued.add(uuid)

    def cancel_queued(self, uuid: str) -> bool:
        """Cancel the build of ``uuid`` if it waits for a slot; True if it did."""
        with self._lock:
            queued = uuid in self._queued
            if queued:
                self._cancelled.add(uuid)
        return queued

    @contextmanager
    def slot(self, uuid: str) -> Iterator[None]:
        """Hold a slot for the build of ``uuid`` (waiting for one first)."""
        self._wait(uuid)
        try:
            with self._lock:
                self._running += 1
            yield
        finally:
            with self._lock:
                self._running -= 1
            self._slots.release()

    def _wait(self, uuid: str) -> None:
        """While queued, the build can still be handed back (shutdown) or
        cancelled; both flags are checked under the same lock that
        cancel_queued uses, so a cancel is either seen here or left to the
        driver, never lost in between."""
        acquired = False
        try:
            while not acquired:
                acquired = self._slots.acquire(timeout=0.2)
                with self._lock:
                    cancelled = uuid in self._cancelled
                    if acquired or cancelled or self._stopping.is_set():
                        self._queued.discard(uuid)
                        self._cancelled.discard(uuid)
                if cancelled:
                    raise exceptions.OperationCancelled("spawn", uuid)
                if self._stopping.is_set():
                    raise exceptions.ComputeAgentError(
                        uuid, self._host, code="BUILD_ABORTED",
                        message=f"Build of {uuid} handed back: the agent on {self._host} "
                        "is shutting down and had not started it")
        except BaseException:
            if acquired:
                self._slots.release()
            raise
