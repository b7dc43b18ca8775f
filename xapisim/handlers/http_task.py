"""What xapi does around every HTTP handler that works under a task
(xapi's ``Xapi_http.with_context``): authenticate with ``session_id`` or
basic auth (a basic-auth session is logged out afterwards), run under the
caller's ``task_id`` (reporting progress on it and ending it success or
failure) or under a task of its own that disappears at the end, and stop
when the task is cancelled.

Also the fault hooks of the control API for HTTP paths: rules armed for
the key ``"<METHOD> <path>"`` (e.g. ``"PUT /import_raw_vdi"``) fail, drop
or hang these requests; ``"*"`` rules stay for RPC calls.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import urllib.parse
from typing import Any

from xapisim.context import CallContext
from xapisim.errors import XenAPIError

# A client silent this long in the middle of a transfer is gone.
IDLE_TIMEOUT = 60.0


def connection(req) -> socket.socket:
    """The request's socket (for timeouts and abrupt closes)."""
    return req.connection


def has_param(req, name: str) -> bool:
    """Whether the query names ``name`` at all (``?json`` has no value and
    parse_qs drops blank values)."""
    if name in req.query_all:
        return True
    raw = urllib.parse.urlsplit(req._h.path).query
    return name in urllib.parse.parse_qs(raw, keep_blank_values=True)


def drop(req) -> None:
    """Close the connection without a word, as a dying host would."""
    req.close_connection()
    try:
        connection(req).shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def authenticate(req) -> str | None:
    """The caller's session from ``session_id`` or basic auth (a new
    session, for this request only), or None; answers nothing."""
    sim = req.sim
    try:
        ref = req.query.get("session_id")
        if ref is None:
            auth = req.headers.get("Authorization", "")
            if not auth.startswith("Basic "):
                return None
            user, _, pwd = base64.b64decode(auth[6:], validate=True).decode().partition(":")
            ref = sim.sessions.login(req.host_ref, user, pwd, "http-basic")
        return sim.sessions.validate(ref)
    except (XenAPIError, ValueError, UnicodeDecodeError):
        return None


def fault_gate(req) -> bool:
    """Apply the latency and the rules armed for this HTTP path. Returns
    False when the request was dropped or failed and must not go on."""
    sim = req.sim
    key = f"{req.method} {req.path}"
    faults = sim.faults
    with faults.lock:
        delay = faults.latencies.get(key, 0.0) * faults.time_scale
        armed = bool(faults.rules.get(key))
    if delay > 0:
        time.sleep(delay)
    if not armed:
        return True
    rule = faults.take(key)
    if rule is None:
        return True
    if rule.kind == "drop":
        drop(req)
        return False
    if rule.kind == "hang":
        time.sleep(rule.seconds)
        drop(req)
        return False
    error = list(rule.error or ["INTERNAL_ERROR", "injected fault"])
    task = req.query.get("task_id")
    if task:
        sim.tasks.finish(task, error=XenAPIError(error[0], *error[1:]))
    req.send_error(500, json.dumps(error))
    return False


class HttpTask:
    """Session and task of one HTTP handler call (see module doc)."""

    def __init__(self, req, label: str, method: str):
        self.req = req
        self.sim = req.sim
        self.label = label
        self.method = method
        self.session_ref: str | None = None
        self.task_ref: str | None = None
        self.own_task = False
        self.own_session = False
        self.ctx: CallContext | None = None
        self.finished = False
        self._last_progress = -1.0
        self._lock = threading.Lock()

    @classmethod
    def open(cls, req, label: str, method: str) -> HttpTask | None:
        """Authenticate and bind the task; None after an HTTP error answer
        (401 for bad credentials, failing the caller's task as xapi does)."""
        self = cls(req, label, method)
        sim = req.sim
        task_id = req.query.get("task_id")
        if task_id is not None and not sim.store.has("task", task_id):
            req.send_error(404, f"task {task_id} not found")
            return None
        self.own_session = "session_id" not in req.query
        session = authenticate(req)
        if session is None:
            # the task fails before the 401 goes out: a client reading the
            # 401 then the task must see the failure
            if task_id is not None:
                sim.tasks.finish(task_id, error=XenAPIError("SESSION_AUTHENTICATION_FAILED"))
            req.send_error(401, "unauthorised")
            return None
        self.session_ref = session
        if task_id is None:
            self.task_ref = sim.tasks.create(label, host=req.host_ref)
            self.own_task = True
        else:
            self.task_ref = task_id
        self.ctx = CallContext(sim, method, session, req.host_ref, self.task_ref)
        # so that task.cancel reaches this transfer instead of ending the task at once
        with sim.tasks.lock:
            sim.tasks.running[self.task_ref] = self.ctx
        return self

    # -- progress and outcome --------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        return self.ctx is not None and self.ctx.cancel_requested.is_set()

    def check_cancel(self) -> None:
        if self.cancelled:
            raise XenAPIError("TASK_CANCELLED", self.task_ref)

    def progress(self, fraction: float) -> None:
        fraction = max(0.0, min(fraction, 0.99))
        if fraction - self._last_progress >= 0.01:
            self._last_progress = fraction
            self.sim.tasks.set_progress(self.task_ref, fraction)

    def succeed(self, result: Any = None) -> None:
        self._finish(result=result)

    def fail(self, error: XenAPIError) -> None:
        self._finish(error=error)

    def _finish(self, **outcome: Any) -> None:
        with self._lock:
            if self.finished:
                return
            self.finished = True
        store = self.sim.store
        with store.lock:
            if store.has("task", self.task_ref) and store.raw("task", self.task_ref)["status"] in (
                "pending", "cancelling"
            ):
                self.sim.tasks.finish(self.task_ref, **outcome)

    def close(self) -> None:
        """End of the request: forget the running entry, drop our own task
        and the basic-auth session."""
        sim = self.sim
        with sim.tasks.lock:
            sim.tasks.running.pop(self.task_ref, None)
        if self.own_task:
            with sim.store.lock:
                if sim.store.has("task", self.task_ref):
                    sim.store.destroy("task", self.task_ref)
        if self.own_session and self.session_ref:
            sim.sessions.destroy(self.session_ref)
