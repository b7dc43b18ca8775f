"""Holding an operation in an object's ``current_operations`` while a
handler works, as xapi does: the object's own rules decide first whether
the operation may start (several may run side by side where they allow
it), and allowed_operations is recomputed on entry and on exit.

context.CallContext.operation is the simpler form for objects whose
operations are all exclusive."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from xapisim.services import SimServices
    from xapisim.store import Store


class Holder(Protocol):
    """Who holds the operation: a call's context (context.CallContext)."""

    sim: SimServices
    store: Store
    op_ref: str


@contextlib.contextmanager
def hold(ctx: Holder, cls: str, ref: str, op: str,
         check: Callable[[Store, str, str], None],
         on_release: Callable[[], None] | None = None) -> Iterator[None]:
    """Record ``op`` under the call's task for the duration, after
    ``check(store, ref, op)`` (which raises the refusal). ``on_release``
    runs once the operation is gone, under the same lock, for objects whose
    state others' allowed_operations depend on."""
    store = ctx.store
    with store.lock:
        check(store, ref, op)
        cur = dict(store.raw(cls, ref)["current_operations"])
        cur[ctx.op_ref] = op
        store.update(cls, ref, current_operations=cur)
        ctx.sim.refresh_allowed_operations(cls, ref)
    try:
        yield
    finally:
        with store.lock:
            if store.has(cls, ref):
                cur = dict(store.raw(cls, ref)["current_operations"])
                cur.pop(ctx.op_ref, None)
                store.update(cls, ref, current_operations=cur)
                ctx.sim.refresh_allowed_operations(cls, ref)
                if on_release is not None:
                    on_release()
