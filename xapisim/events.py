"""``event.from``, ``event.inject`` and the legacy register/next API.

A token is ``"<generation>,<epoch>"``: the store's generation counter when
the caller last looked, and the identity of this xapi run, so a token from
before a restart is refused (the caller must re-read everything).
"""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any

from xapisim.errors import XenAPIError
from xapisim.wire import Int32

if TYPE_CHECKING:
    from xapisim.store import Store

MAX_TIMEOUT = 3600.0


class Subscription:
    """Parsed subscription list: ``*``, a class, or ``class/ref``."""

    def __init__(self, store: Store, classes: list[str]):
        self.all = False
        self.classes: set[str] = set()
        self.objects: set[str] = set()
        self.count_classes: list[str] = []
        for item in classes:
            if item == "*":
                self.all = True
                continue
            name, _, ref = item.partition("/")
            cls = store.model.canonical(name)
            if cls is None:
                raise XenAPIError("EVENT_SUBSCRIPTION_PARSE_FAILURE", item)
            if ref:
                self.objects.add(ref)
            else:
                self.classes.add(cls)
            if cls not in self.count_classes:
                self.count_classes.append(cls)

    def matches(self, cls: str, ref: str) -> bool:
        return self.all or cls in self.classes or ref in self.objects


def make_token(store: Store, gen: int) -> str:
    return f"{gen:020d},{store.epoch:020d}"


def parse_token(store: Store, token: str) -> int:
    if token == "":
        return 0
    try:
        gen_s, _, epoch_s = token.partition(",")
        gen = int(gen_s)
        epoch = int(epoch_s) if epoch_s else store.epoch
    except ValueError:
        raise XenAPIError("EVENT_FROM_TOKEN_PARSE_FAILURE", token) from None
    if epoch != store.epoch or gen > store.gen:
        # From another life of xapi: what happened in between is unknown.
        raise XenAPIError("EVENTS_LOST")
    return gen


def _collect(store: Store, sub: Subscription, since: int, encode) -> list[dict[str, Any]]:
    events = []
    for ref, meta in store.meta.items():
        if meta.modified <= since or not sub.matches(meta.cls, ref):
            continue
        rec = store.tables[meta.cls][ref]
        events.append(
            {
                "id": str(meta.modified),  # xapi's event ids are strings
                "timestamp": f"{time.time():.6f}",
                "class": meta.cls.lower(),
                "operation": "add" if meta.created > since else "mod",
                "ref": ref,
                "snapshot": encode(meta.cls, copy.deepcopy(rec)),
            }
        )
    if store.tombstones and since < store.tombstones[0][0] - 1 and since > 0 \
            and len(store.tombstones) == store.tombstones.maxlen:
        raise XenAPIError("EVENTS_LOST")
    for gen, cls, ref, created, _rec in store.tombstones:
        if gen <= since or created <= 0 or not sub.matches(cls, ref):
            continue
        if created > since:
            continue  # born and died since the last look: coalesced away
        events.append(
            {
                "id": str(gen),
                "timestamp": f"{time.time():.6f}",
                "class": cls.lower(),
                "operation": "del",
                "ref": ref,
            }
        )
    events.sort(key=lambda e: int(e["id"]))
    return events


def event_from(store: Store, classes: list[str], token: str, timeout: float,
               encode=lambda cls, rec: rec, alive=lambda: True) -> dict[str, Any]:
    """Block until something in ``classes`` changed after ``token`` or
    ``timeout`` seconds pass; return events, valid_ref_counts, token."""
    sub = Subscription(store, classes)
    timeout = max(0.0, min(float(timeout), MAX_TIMEOUT))
    deadline = time.monotonic() + timeout
    with store.changed:
        since = parse_token(store, token)
        while True:
            if store.gen > since:
                events = _collect(store, sub, since, encode)
                if events:
                    break
                since_checked = store.gen
            else:
                since_checked = since
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not alive():
                events = []
                break
            store.changed.wait(min(remaining, 1.0))
            # Nothing we care about changed up to since_checked; keep the
            # original 'since' so coalescing stays correct.
            del since_checked
        counts = {c.lower(): Int32(len(store.tables[c])) for c in sub.count_classes}
        if sub.all:
            counts = {c.lower(): Int32(len(t)) for c, t in store.tables.items() if t}
        return {"events": events, "valid_ref_counts": counts, "token": make_token(store, store.gen)}
