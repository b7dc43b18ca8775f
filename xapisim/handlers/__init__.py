"""HTTP handlers beside the RPC endpoints (xapi's /import_raw_vdi,
/export_raw_vdi, /rrd_updates, /console, ... and the simulator's own
/_sim control API). Each module registers its routes with ``route``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xapisim.submodules import import_all

Route = Callable[[Any], None]
ROUTES: dict[tuple[str, str], Route] = {}
PREFIX_ROUTES: list[tuple[str, str, Route]] = []


def route(method: str, path: str, prefix: bool = False) -> Callable[[Route], Route]:
    """Register ``fn(request)`` for ``method`` on ``path`` (or on every path
    under it when ``prefix``). ``request`` is a server.HTTPRequest."""

    def register(fn: Route) -> Route:
        if prefix:
            PREFIX_ROUTES.append((method, path, fn))
        else:
            ROUTES[(method, path)] = fn
        return fn

    return register


def find(method: str, path: str) -> Route | None:
    fn = ROUTES.get((method, path))
    if fn:
        return fn
    for m, p, f in PREFIX_ROUTES:
        if m == method and path.startswith(p):
            return f
    return None


def load_all() -> None:
    import_all(__name__)
