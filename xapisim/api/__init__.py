"""Message handlers, registered by wire name.

A handler is ``fn(ctx, *params)`` where params exclude ``session_id`` and
are already coerced to their declared types. It returns the Python value of
the declared result (refs as strings, ints as ints) or raises XenAPIError.
Modules in this package register their handlers on import; ``load_all``
imports them all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xapisim.submodules import import_all

Handler = Callable[..., Any]

HANDLERS: dict[str, Handler] = {}
# Messages a pool member answers itself instead of HOST_IS_SLAVE.
MEMBER_ALLOWED: set[str] = set()
# Per class: fn(ctx_or_sim, ref) -> list of allowed operations, recomputed
# after every operation on an object of that class.
ALLOWED_OPERATIONS: dict[str, Callable[[Any, str], list[str]]] = {}


def handler(*names: str, member_ok: bool = False) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for name in names:
            HANDLERS[name] = fn
            if member_ok:
                MEMBER_ALLOWED.add(name)
        return fn

    return register


def allowed_operations(cls: str) -> Callable:
    def register(fn: Callable) -> Callable:
        ALLOWED_OPERATIONS[cls] = fn
        return fn

    return register


def load_all() -> None:
    import_all(__name__)
