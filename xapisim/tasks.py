"""xapi tasks: ``Async.*`` calls run in their own thread under a task object
whose status, progress, result and error_info clients watch (by polling
or through ``event.from``). Finished tasks are garbage collected after
``gc_age`` seconds unless a client destroys them first."""

from __future__ import annotations

import calendar
import html
import logging
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from xapisim import log_redaction
from xapisim.errors import XenAPIError
from xapisim.store import NULL_REF, now_datetime

if TYPE_CHECKING:
    from xapisim.store import Store

LOG = log_redaction.logger("xapisim")
# The entry xapi adds to a pending task's current_operations on task.destroy.
DESTROY_MARK = ("task", "destroy")


class TaskWork(Protocol):
    """What a task runs for: a call's context (xapisim.context.CallContext)."""

    method: str
    host_ref: str
    task_ref: str | None
    op_ref: str
    cancel_requested: threading.Event


def encode_result(value: Any) -> str:
    """A task's ``result`` field: the XML-RPC encoding of the return value
    (``<value>OpaqueRef:...</value>`` for a ref, "" for void)."""
    from xapisim.wire import to_wire_xmlrpc

    if value is None:
        return ""
    if isinstance(value, str):
        return f"<value>{html.escape(value, quote=False)}</value>"
    m = xmlrpc.client.Marshaller(allow_none=False)
    return m.dumps([to_wire_xmlrpc(value)]).replace("<param>\n", "").replace(
        "</param>\n", ""
    ).replace("<params>\n", "").replace("</params>\n", "").strip()


class TaskManager:
    def __init__(self, store: Store, gc_age: float = 3600.0, log: logging.Logger = LOG):
        self.store = store
        self.gc_age = gc_age
        self.log = log
        self.running: dict[str, TaskWork] = {}
        self.lock = threading.Lock()

    def create(self, label: str, description: str = "", host: str = NULL_REF) -> str:
        return self.store.create(
            "task",
            {
                "name_label": label,
                "name_description": description,
                "status": "pending",
                "progress": 0.0,
                "created": now_datetime(),
                "resident_on": host,
                "allowed_operations": ["cancel"],
                "backtrace": "()",
                "type": "<none/>",
            },
        )

    def set_progress(self, ref: str, progress: float) -> None:
        with self.store.lock:
            if self.store.has("task", ref):
                rec = self.store.raw("task", ref)
                pending = rec["status"] in ("pending", "cancelling")
                if pending and abs(rec["progress"] - progress) >= 0.009:
                    self.store.update("task", ref, progress=round(progress, 3))

    def finish(self, ref: str, *, result: Any = None, error: XenAPIError | None = None) -> None:
        with self.store.lock:
            if not self.store.has("task", ref):
                return
            fields: dict[str, Any] = {"finished": now_datetime(), "allowed_operations": []}
            if error is None:
                fields.update(status="success", progress=1.0, result=encode_result(result))
            elif error.code == "TASK_CANCELLED":
                fields.update(status="cancelled", error_info=error.description)
            else:
                fields.update(status="failure", error_info=error.description)
            self.store.update("task", ref, **fields)

    def destroy(self, ref: str) -> None:
        """task.destroy as xapi's Xapi_task.destroy: a finished task goes at
        once; a pending one is marked (current_operations "task" ->
        "destroy"), completes as usual (its watchers see the outcome), and
        the next garbage collection removes it whatever its age, as xapi's
        db_gc does."""
        with self.store.lock:
            rec = self.store.raw("task", ref)
            if rec["status"] in ("pending", "cancelling"):
                ops = dict(rec["current_operations"])
                ops[DESTROY_MARK[0]] = DESTROY_MARK[1]
                self.store.update("task", ref, current_operations=ops)
            else:
                self.store.destroy("task", ref)

    def spawn(self, ctx: TaskWork, fn: Callable[..., Any], args: list[Any]) -> str:
        """Start ``fn(ctx, *args)`` under a new task; return the task ref."""
        ref = self.create(f"Async.{ctx.method}", host=ctx.host_ref)
        ctx.task_ref = ref
        ctx.op_ref = ref
        with self.lock:
            self.running[ref] = ctx

        def run() -> None:
            try:
                result = fn(ctx, *args)
            except XenAPIError as e:
                self.finish(ref, error=e)
            except Exception as e:  # a simulator bug must still end the task
                self.log.exception("task %s crashed", ctx.method)
                self.finish(ref, error=XenAPIError("INTERNAL_ERROR", repr(e)))
            else:
                self.finish(ref, result=result)
            finally:
                with self.lock:
                    self.running.pop(ref, None)

        threading.Thread(target=run, name=f"task-{ctx.method}", daemon=True).start()
        return ref

    def cancel(self, ref: str) -> None:
        with self.store.lock:
            rec = self.store.raw("task", ref)
            if rec["status"] != "pending":
                raise XenAPIError("OPERATION_NOT_ALLOWED", f"task {ref} is {rec['status']}")
            self.store.update("task", ref, status="cancelling", allowed_operations=[])
        with self.lock:
            ctx = self.running.get(ref)
        if ctx is not None:
            ctx.cancel_requested.set()
        else:  # a task made with task.create: nobody runs it, end it now
            self.finish(ref, error=XenAPIError("TASK_CANCELLED", ref))

    def gc(self) -> int:
        """Destroy finished tasks older than gc_age, and finished tasks
        marked by task.destroy whatever their age; return how many."""
        cutoff = time.time() - self.gc_age
        dead = []
        with self.store.lock:
            for ref, rec in self.store.tables["task"].items():
                if rec["status"] in ("pending", "cancelling"):
                    continue
                if DESTROY_MARK in rec["current_operations"].items():
                    dead.append(ref)
                    continue
                finished = _parse_dt(rec["finished"])
                if finished is not None and finished < cutoff:
                    dead.append(ref)
            for ref in dead:
                self.store.destroy("task", ref)
        return len(dead)

    def forget_all(self) -> None:
        """An xapi restart: every task disappears, running work stops."""
        with self.lock:
            ctxs = list(self.running.values())
        for ctx in ctxs:
            ctx.cancel_requested.set()
        with self.store.lock:
            for ref in list(self.store.tables["task"]):
                self.store.destroy("task", ref)


def _parse_dt(value: str) -> float | None:
    try:
        return calendar.timegm(time.strptime(value, "%Y%m%dT%H:%M:%SZ"))
    except (ValueError, TypeError):
        return None
