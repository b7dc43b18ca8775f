"""session, event and task: the messages every client uses first."""

from __future__ import annotations

import threading
from typing import Any

from xapisim.api import handler
from xapisim.context import CallContext
from xapisim.errors import XenAPIError
from xapisim.events import event_from, make_token

# -- session ------------------------------------------------------------------


@handler("session.get_this_host", member_ok=True)
def session_get_this_host(ctx: CallContext, session: str) -> str:
    return ctx.store.field("session", ctx.sim.sessions.validate(session), "this_host")


@handler("session.get_this_user", member_ok=True)
def session_get_this_user(ctx: CallContext, session: str) -> str:
    return ctx.store.field("session", ctx.sim.sessions.validate(session), "this_user")


@handler("session.get_all_subject_identifiers")
def session_subjects(ctx: CallContext) -> list[str]:
    return []


# -- event ---------------------------------------------------------------------


@handler("event.from", member_ok=True)
def event_from_handler(ctx: CallContext, classes: list[str], token: str, timeout: float):
    session = ctx.session_ref
    return event_from(
        ctx.store,
        classes,
        token,
        timeout,
        encode=ctx.sim.snapshot_for_event,
        alive=lambda: ctx.store.has("session", session) and ctx.sim.running,
    )


@handler("event.get_current_id", member_ok=True)
def event_current_id(ctx: CallContext) -> str:
    return make_token(ctx.store, ctx.store.gen)


@handler("event.inject")
def event_inject(ctx: CallContext, cls: str, ref: str) -> str:
    canonical = ctx.store.model.canonical(cls)
    if canonical is None:
        raise XenAPIError("EVENT_SUBSCRIPTION_PARSE_FAILURE", cls)
    with ctx.store.lock:
        ctx.store.raw(canonical, ref)
        ctx.store.touch(ref)
        return make_token(ctx.store, ctx.store.gen)


class LegacyQueue:
    """event.register/next state of one session."""

    def __init__(self, gen: int):
        self.classes: set[str] = set()
        self.since = gen
        self.lock = threading.Lock()


@handler("event.register", member_ok=True)
def event_register(ctx: CallContext, classes: list[str]) -> None:
    q = ctx.sim.legacy_events.setdefault(ctx.session_ref, LegacyQueue(ctx.store.gen))
    for c in classes:
        if c != "*" and ctx.store.model.canonical(c) is None:
            raise XenAPIError("EVENT_SUBSCRIPTION_PARSE_FAILURE", c)
        q.classes.add(c)


@handler("event.unregister", member_ok=True)
def event_unregister(ctx: CallContext, classes: list[str]) -> None:
    q = ctx.sim.legacy_events.get(ctx.session_ref)
    if q:
        q.classes.difference_update(classes)


@handler("event.next", member_ok=True)
def event_next(ctx: CallContext) -> list[dict[str, Any]]:
    q = ctx.sim.legacy_events.get(ctx.session_ref)
    if q is None:
        raise XenAPIError("SESSION_NOT_REGISTERED", ctx.session_ref)
    from xapisim.events import make_token as _mk

    with q.lock:
        while True:
            result = event_from(
                ctx.store,
                sorted(q.classes),
                _mk(ctx.store, q.since),
                30.0,
                encode=ctx.sim.snapshot_for_event,
                alive=lambda: ctx.store.has("session", ctx.session_ref) and ctx.sim.running,
            )
            if not ctx.store.has("session", ctx.session_ref):
                raise XenAPIError("SESSION_INVALID", ctx.session_ref)
            q.since = int(result["token"].split(",")[0])
            if result["events"]:
                for ev in result["events"]:
                    snap = ev.get("snapshot") or {}
                    ev["obj_uuid"] = snap.get("uuid", "")
                return result["events"]


# -- task -----------------------------------------------------------------------


@handler("task.create")
def task_create(ctx: CallContext, label: str, description: str) -> str:
    return ctx.sim.tasks.create(label, description, host=ctx.host_ref)


@handler("task.cancel")
def task_cancel(ctx: CallContext, task: str) -> None:
    ctx.sim.tasks.cancel(task)


@handler("task.destroy")
def task_destroy(ctx: CallContext, task: str) -> None:
    ctx.sim.tasks.destroy(task)


@handler("task.set_status")
def task_set_status(ctx: CallContext, task: str, status: str) -> None:
    ctx.store.update("task", task, status=status)


@handler("task.set_progress")
def task_set_progress(ctx: CallContext, task: str, value: float) -> None:
    ctx.store.update("task", task, progress=value)


@handler("task.set_result")
def task_set_result(ctx: CallContext, task: str, value: str) -> None:
    ctx.store.update("task", task, result=value)


@handler("task.set_error_info")
def task_set_error_info(ctx: CallContext, task: str, value: list[str]) -> None:
    ctx.store.update("task", task, error_info=value)
