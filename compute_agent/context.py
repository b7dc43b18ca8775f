"""Request context: carries the request id from the caller, through RPC, into
every log line, action record, tracked task and notification of the request.

oslo.log's ContextFormatter reads the thread's current context (set with
``update_store``) for ``%(request_id)s`` and prints its ``resource_uuid`` as
``[instance: <uuid>]``, which is how the instance uuid gets on every line.
"""

from __future__ import annotations

import re
from typing import Any

from oslo_context import context as oslo_context

# oslo.context's request ids: "req-" and a uuid4.
_REQUEST_ID = re.compile(r"req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Identity fields a caller's context may carry into log lines.
_IDENTITY = re.compile(r"[A-Za-z0-9_.@:-]{1,64}")
_IDENTITY_KEYS = ("user_id", "project_id", "domain_id", "user_domain_id",
                  "project_domain_id", "user_name", "project_name")


class RequestContext(oslo_context.RequestContext):
    """oslo.context's context; ``resource_uuid`` holds the instance uuid the
    current work is about (None for host-wide work)."""

    def for_instance(self, instance_uuid: str | None) -> RequestContext:
        """A copy of this context bound to one instance (same request id)."""
        values = self.to_dict()
        values["resource_uuid"] = instance_uuid
        return RequestContext.from_dict(values, overwrite=False)

    @property
    def instance_uuid(self) -> str | None:
        return self.resource_uuid


def new_context(request_id: str | None = None, instance_uuid: str | None = None,
                **kwargs: Any) -> RequestContext:
    """A fresh context (new request id unless one is given)."""
    if request_id is not None:
        kwargs["request_id"] = request_id
    return RequestContext(resource_uuid=instance_uuid, overwrite=False, **kwargs)


def from_dict(values: dict[str, Any]) -> RequestContext:
    # overwrite=False: building a context must not rebind the thread's one.
    return RequestContext.from_dict(values, overwrite=False)


def from_wire(values: Any) -> RequestContext:
    """The context of an RPC message, keeping only what is safe to print in
    every log line of the request: a request id of oslo.context's form (a
    new one otherwise), a global request id of that form, and identity
    fields of at most 64 plain characters. Anything else a caller put in
    the context is dropped (the agent does no authorisation)."""
    values = values if isinstance(values, dict) else {}
    kept: dict[str, Any] = {}
    request_id = values.get("request_id")
    if isinstance(request_id, str) and _REQUEST_ID.fullmatch(request_id):
        kept["request_id"] = request_id
    global_id = values.get("global_request_id")
    if isinstance(global_id, str) and _REQUEST_ID.fullmatch(global_id):
        kept["global_request_id"] = global_id
    for key in _IDENTITY_KEYS:
        value = values.get(key)
        if isinstance(value, str) and _IDENTITY.fullmatch(value):
            kept[key] = value
    return RequestContext(overwrite=False, **kept)


def get_admin_context() -> RequestContext:
    """Context for the agent's own work (periodic jobs, start-up, recovery)."""
    return RequestContext(is_admin=True, overwrite=False)


def current() -> RequestContext | None:
    ctx = oslo_context.get_current()
    return ctx if isinstance(ctx, RequestContext) else None


def clear_current() -> None:
    """Forget this thread's current context (after a request, so that later
    log lines of a pooled thread do not carry a stale request id)."""
    # oslo.context has no public call for this; the store is a thread-local.
    oslo_context._request_store.context = None
