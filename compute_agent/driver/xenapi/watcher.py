"""TaskWatcher: one ``event.from`` stream per dom0 pool that follows every
task (and every VM) and wakes whoever waits on them.

One thread, on a session of its own, long-polls ``event.from(["task",
"vm"], token, timeout)`` and keeps the latest record of every task and VM
(of a VM, the fields power_events.VM_FIELDS names).
``track(ref)`` registers interest in a task and returns a
:class:`WatchedTask` whose future the stream resolves when the task ends
(success, failure, cancelled) -- or as lost when it disappears without an
outcome. So N concurrent operations cost one long-poll, not N polling loops.

What can go wrong, and what the watcher does about it:

* The task ended (or was even destroyed) before ``track`` was called: the
  cache has its final record (or remembers its deletion) -> resolved at once.
* The task vanished unseen (created and destroyed between two polls, lost
  in an xapi restart): a registered task the stream has not shown within
  ``UNSEEN_GRACE`` is read directly; HANDLE_INVALID means lost.
* The cache drifted (``valid_ref_counts`` disagrees with it), the token is
  refused (``EVENTS_LOST``, a new xapi run) or the session died
  (``SESSION_INVALID``; the SDK logs in again): re-sync -- a fresh token
  from ``event.inject``, then ``get_all_records`` of tasks and VMs, so no
  change between the two is missed. Registered tasks absent from the new
  snapshot are lost.
* The connection dropped or dom0 is unreachable: back off (0.1 s doubling
  to 5 s) and reconnect with the same token; waiters meanwhile read their
  task directly every few seconds.
* The coordinator changed (``HOST_IS_SLAVE``): the session follows it
  (session.py); an invalid token then means a re-sync.

VM records that belong to this agent and change power state, shutdown
reason/time or domain are handed to ``on_power_change(instance_uuid,
InstanceInfo)`` on a delivery thread of its own, so a slow listener never
delays the stream.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.base import InstanceInfo
from compute_agent.driver.xenapi import errors
from compute_agent.driver.xenapi.power_events import PowerDeliveries, kept_fields, power_change
from compute_agent.driver.xenapi.session import JSONRPC, SessionPool, XenAPISession
from compute_agent.driver.xenapi.task_result import TaskOutcome
from compute_agent.driver.xenapi.watched_task import (
    BACKOFF_MAX,
    BACKOFF_MIN,
    CALL_MARGIN,
    CLASSES,
    DELETED_MEMORY,
    RESYNC_CODES,
    RESYNC_MIN_INTERVAL,
    WatchedTask,
    WatcherStats,
)

LOG = logging.getLogger(__name__)

PowerChange = Callable[[str, InstanceInfo], None]
Reconnect = Callable[[str], None]


class TaskWatcher:
    """The per-pool event stream. ``start()`` it, ``track()`` tasks,
    ``close()`` it on shutdown (which logs its session out)."""

    def __init__(
        self,
        pool: SessionPool,
        agent_host: str | None = None,
        poll_timeout: float = 30.0,
        on_power_change: PowerChange | None = None,
        on_reconnect: Reconnect | None = None,
        batch_interval: float = 0.01,
        protocol: str = JSONRPC,
    ):
        self.pool = pool
        self.agent_host = agent_host
        self.poll_timeout = float(poll_timeout)
        self.on_power_change = on_power_change
        self.on_reconnect = on_reconnect
        # After a poll that brought events, wait this long before the next
        # so that a burst of changes arrives in one answer, not hundreds.
        self.batch_interval = batch_interval
        # JSON-RPC: answers full of records parse ~30x faster than XML-RPC
        # (see jsonrpc.py); falls back to XML-RPC where dom0 lacks it.
        self.protocol = protocol
        self.stats = WatcherStats()
        self._lock = threading.Lock()
        self._waiting: dict[str, WatchedTask] = {}
        self._tasks: dict[str, dict[str, Any]] = {}
        self._vms: dict[str, dict[str, Any]] = {}
        self._deleted: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._token = ""
        self._need_sync = True
        self._restart = False  # restart(): a new session at the coordinator
        self._last_count_resync = 0.0
        self._session: XenAPISession | None = None
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._connected = False
        self._thread: threading.Thread | None = None
        self._deliveries = PowerDeliveries(lambda: self.on_power_change)

    # -- life cycle ---------------------------------------------------------------
    def start(self) -> TaskWatcher:
        self._thread = threading.Thread(target=self._run, name="xenapi-task-watcher",
                                        daemon=True)
        self._thread.start()
        self._deliveries.start()
        return self

    def wait_synced(self, timeout: float) -> bool:
        """True once the first snapshot of tasks and VMs is in."""
        return self._synced.wait(timeout)

    @property
    def healthy(self) -> bool:
        return self._connected and not self._need_sync

    def close(self) -> None:
        """Stop the stream, log its session out and fail whoever still
        waits (the operation reports dom0 as unavailable)."""
        if self._stop.is_set():
            return
        self._stop.set()
        sess = self._session
        if sess is not None:
            sess.interrupt()
        if self._thread is not None:
            self._thread.join(CALL_MARGIN)
        if sess is not None:
            self.pool.release_dedicated(sess)
        self._deliveries.close()
        stopped = exceptions.HypervisorUnavailable(
            errors.redact_url(self.pool.url), "task watcher stopped"
        )
        with self._lock:
            waiting = list(self._waiting.values())
            self._waiting.clear()
            for wt in waiting:
                wt._finish(exc=stopped)

    def restart(self) -> None:
        """Start the stream over with a new session at the coordinator as
        now known (the host joined or left a pool: the old session's pool
        is not this host's any more)."""
        self._restart = True
        sess = self._session
        if sess is not None:
            sess.interrupt()

    # -- registering -----------------------------------------------------------------
    def track(self, ref: str) -> WatchedTask:
        wt = WatchedTask(self, ref)
        with self._lock:
            self._waiting[ref] = wt
            record = self._tasks.get(ref)
            if record is not None:
                wt._update(record)  # it may well have ended already
            elif ref in self._deleted:
                wt._finish(TaskOutcome.lost(ref))
        return wt

    def forget(self, wt: WatchedTask) -> None:
        with self._lock:
            if self._waiting.get(wt.ref) is wt:
                del self._waiting[wt.ref]

    def read_directly(self, wt: WatchedTask) -> None:
        """Read a task's record outside the stream (it has not shown the
        task, or the stream is down)."""
        self.stats.direct_reads += 1
        try:
            record = self.pool.call("task.get_record", wt.ref)
        except exceptions.HypervisorError as e:
            if e.code == "HANDLE_INVALID":
                with self._lock:
                    wt._finish(TaskOutcome.lost(wt.ref))
            else:
                LOG.warning("Reading task directly: %s", e)
            return
        except exceptions.HypervisorUnavailable as e:
            LOG.debug("Reading task directly: %s", e)
            return
        with self._lock:
            # Not put into the cache: only the stream and re-syncs write it,
            # so it stays comparable with valid_ref_counts.
            wt._update(record)

    def task_record(self, ref: str) -> dict[str, Any] | None:
        """The latest record of a task as the stream showed it, or None."""
        with self._lock:
            return self._tasks.get(ref)

    def vm_record(self, ref: str) -> dict[str, Any] | None:
        with self._lock:
            return self._vms.get(ref)

    def vm_records(self) -> dict[str, dict[str, Any]] | None:
        """Every VM record as the stream keeps them (ref -> its VM_FIELDS),
        or None while the stream is not in step with dom0 (then ask dom0)."""
        with self._lock:
            if not (self._connected and self._synced.is_set()) or self._need_sync:
                return None
            return dict(self._vms)

    # -- the stream ------------------------------------------------------------------
    def _run(self) -> None:
        backoff = BACKOFF_MIN
        failed = False
        first = True
        logins: int | None = None
        while not self._stop.is_set():
            try:
                if self._restart:
                    self._restart = False
                    old, self._session = self._session, None
                    if old is not None:
                        self.pool.release_dedicated(old)
                    self._need_sync = True
                if self._session is None:
                    self._session = self.pool.dedicated(self.poll_timeout + CALL_MARGIN,
                                                        self.protocol)
                sess = self._session
                was_connected = self._connected
                if logins is not None and sess.logins != logins:
                    # Logged in again: the old session died, likely with the
                    # xapi that held it; events may be missing even if the
                    # token is still accepted.
                    self._need_sync = True
                if self._need_sync:
                    self._resync(sess)
                    self._synced.set()
                    if not was_connected:
                        self.stats.connections += 1
                        self._connected = was_connected = True
                logins = sess.logins
                self.stats.event_from_calls += 1
                result = sess.call(
                    "event.from", list(CLASSES), self._token, self.poll_timeout,
                    timeout=self.poll_timeout + CALL_MARGIN, relogin=False,
                )
                if not was_connected:
                    self.stats.connections += 1
                self._connected = True
                if sess.logins != logins:
                    self._need_sync = True  # re-logged in during this call
                self._apply(result)
                if failed and not first:
                    self._reconnected("stream")
                failed = first = False
                backoff = BACKOFF_MIN
                if result.get("events") and self.batch_interval > 0:
                    self._stop.wait(self.batch_interval)
            except exceptions.HypervisorError as e:
                if self._stop.is_set():
                    break
                self.stats.failures += 1
                failed = True
                if e.code in RESYNC_CODES:
                    LOG.info("Task event stream lost its place (%s); re-syncing", e.code)
                    self._need_sync = True
                else:
                    LOG.warning("Task event stream: %s; retrying in %.1f s", e, backoff)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
            except exceptions.HypervisorUnavailable as e:
                if self._stop.is_set():
                    break
                self.stats.failures += 1
                failed = True
                self._connected = False
                LOG.warning("Task event stream disconnected: %s; retrying in %.1f s",
                            e, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            except Exception:
                if self._stop.is_set():
                    break
                self.stats.failures += 1
                failed = True
                self._connected = False
                LOG.exception("Task event stream failed; retrying in %.1f s", backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _resync(self, sess: XenAPISession) -> None:
        """A fresh token first, then every task and VM record: changes made
        after the token are delivered again by the stream (harmless), none
        is missed."""
        started = time.monotonic()
        pool_ref = sess.call("pool.get_all")[0]
        token = sess.call("event.inject", "pool", pool_ref)
        tasks = sess.call("task.get_all_records")
        vms = {ref: kept_fields(rec) for ref, rec in sess.call("VM.get_all_records").items()}
        changes: list[tuple[str, InstanceInfo]] = []
        with self._lock:
            old_vms = self._vms
            self._tasks, self._vms, self._token = tasks, vms, token
            self._need_sync = False
            for ref, wt in list(self._waiting.items()):
                if ref in tasks:
                    wt._update(tasks[ref])
                elif wt.registered < started:
                    # It existed when registered and is gone now.
                    wt._finish(TaskOutcome.lost(ref))
            for ref, rec in vms.items():
                change = self._power_change(ref, old_vms.get(ref), rec)
                if change is not None:
                    changes.append(change)
        self.stats.resyncs += 1
        was_synced = self._synced.is_set()
        self._deliveries.put(changes)
        if was_synced:
            self._reconnected("resync")

    def _apply(self, result: dict[str, Any]) -> None:
        events = result.get("events") or []
        self.stats.events += len(events)
        if events and LOG.isEnabledFor(logging.DEBUG):
            kinds: dict[str, int] = {}
            for ev in events:
                key = f"{str(ev.get('class', '?')).lower()}.{ev.get('operation', '?')}"
                kinds[key] = kinds.get(key, 0) + 1
            LOG.debug("event.from batch: %d events %s", len(events), kinds)
        changes: list[tuple[str, InstanceInfo]] = []
        with self._lock:
            for ev in events:
                cls = str(ev.get("class", "")).lower()
                ref = ev.get("ref", "")
                op = ev.get("operation")
                if cls == "task":
                    self._apply_task(ref, op, ev.get("snapshot"))
                elif cls == "vm":
                    if op == "del":
                        self._vms.pop(ref, None)
                        continue
                    snap = kept_fields(ev.get("snapshot") or {})
                    change = self._power_change(ref, self._vms.get(ref), snap)
                    self._vms[ref] = snap
                    if change is not None:
                        changes.append(change)
            self._token = result.get("token", self._token)
            self._check_counts(result.get("valid_ref_counts") or {})
        self._deliveries.put(changes)

    def _apply_task(self, ref: str, op: str | None, snap: dict[str, Any] | None) -> None:
        wt = self._waiting.get(ref)
        if op == "del" or snap is None:
            self._tasks.pop(ref, None)
            self._deleted[ref] = None
            while len(self._deleted) > DELETED_MEMORY:
                self._deleted.popitem(last=False)
            if wt is not None:
                wt._finish(TaskOutcome.lost(ref))  # no-op if it had ended
            return
        self._tasks[ref] = snap
        if wt is not None:
            wt._update(snap)

    def _check_counts(self, counts: dict[str, Any]) -> None:
        mismatch = [
            (cls, counts[cls], len(cache))
            for cls, cache in (("task", self._tasks), ("vm", self._vms))
            if cls in counts and int(counts[cls]) != len(cache)
        ]
        now = time.monotonic()
        if mismatch and now - self._last_count_resync >= RESYNC_MIN_INTERVAL:
            LOG.info("Event cache out of step with dom0 %s; re-syncing", mismatch)
            self._last_count_resync = now
            self._need_sync = True

    def _reconnected(self, why: str) -> None:
        if self.on_reconnect is not None:
            try:
                self.on_reconnect(why)
            except Exception:
                LOG.exception("reconnect listener failed")

    def _power_change(
        self, ref: str, old: dict[str, Any] | None, new: dict[str, Any]
    ) -> tuple[str, InstanceInfo] | None:
        if self.on_power_change is None:
            return None
        return power_change(ref, old, new, self.agent_host)
