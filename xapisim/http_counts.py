"""How many HTTP requests each host's listener served, by method and path.

A test-only view (xapi keeps no such count): it lets a test assert how a
client uses dom0's HTTP handlers, e.g. that a metrics poller sends one
``GET /rrd_updates`` per host and interval, or that a console proxy never
opened ``/console`` for a token it refused. Read it at ``GET
/_sim/http_requests``; the XML-RPC/JSON-RPC endpoints are not counted.
"""

from __future__ import annotations

import threading
from collections import Counter


class HttpCounts:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str]] = Counter()

    def add(self, address: str, method: str, path: str) -> None:
        with self._lock:
            self._counts[(address, method, path)] += 1

    def snapshot(self) -> list[dict[str, object]]:
        """One row per (host address, method, path) with its count."""
        with self._lock:
            items = sorted(self._counts.items())
        return [{"address": a, "method": m, "path": p, "count": n} for (a, m, p), n in items]

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
