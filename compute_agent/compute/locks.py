"""Per-instance locks: serialise the state transitions of one instance
inside this process (the database's compare-and-set does it across
processes). Entries are dropped when nobody holds or waits for them, so the
table does not grow with every instance ever seen."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class InstanceLocks:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, list] = {}  # uuid -> [lock, users]

    @contextmanager
    def hold(self, uuid: str) -> Iterator[None]:
        with self._guard:
            entry = self._locks.get(uuid)
            if entry is None:
                entry = self._locks[uuid] = [threading.Lock(), 0]
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[uuid]

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)
