"""Request context: carries the request id from the caller, through RPC, into
every log line, action record, tracked task and notification of the request.

oslo.log's ContextFormatter reads the thread's current context (set with
``update_store``) for ``%(request_id)s`` and prints its ``resource_uuid`` as
``[instance: <uuid>]``, which is how the instance uuid gets on every line.
"""

from __future__ import annotations

from typing import Any

from oslo_context import context as oslo_context


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
