"""The simulator's object database: typed records, relations and events.

One re-entrant lock guards everything; every mutation bumps a generation
counter that ``event.from`` compares tokens against, and wakes waiters
through a condition variable. Deleted objects leave a tombstone for a while
so that a watcher learns of the ``del``.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid as uuidlib
from collections import deque
from dataclasses import dataclass
from typing import Any

from xapisim.errors import XenAPIError
from xapisim.schema import NULL_REF, DataModel, Type

# One-to-many relations xapi maintains by itself: writing the ref on the
# "many" side updates the set on the "one" side (and raises its event).
RELATIONS: list[tuple[str, str, str, str]] = [
    # (many class, ref field, one class, set field)
    ("VBD", "VM", "VM", "VBDs"),
    ("VBD", "VDI", "VDI", "VBDs"),
    ("VIF", "VM", "VM", "VIFs"),
    ("VIF", "network", "network", "VIFs"),
    ("PIF", "host", "host", "PIFs"),
    ("PIF", "network", "network", "PIFs"),
    ("PBD", "host", "host", "PBDs"),
    ("PBD", "SR", "SR", "PBDs"),
    ("VDI", "SR", "SR", "VDIs"),
    ("VM", "resident_on", "host", "resident_VMs"),
    ("VM", "snapshot_of", "VM", "snapshots"),
    ("VM", "parent", "VM", "children"),
    ("VDI", "snapshot_of", "VDI", "snapshots"),
    ("console", "VM", "VM", "consoles"),
    ("host_cpu", "host", "host", "host_CPUs"),
    ("task", "subtask_of", "task", "subtasks"),
    ("crashdump", "VM", "VM", "crash_dumps"),
    ("VTPM", "VM", "VM", "VTPMs"),
    ("VGPU", "VM", "VM", "VGPUs"),
    ("VUSB", "VM", "VM", "VUSBs"),
    ("PCI", "host", "host", "PCIs"),
    ("PGPU", "host", "host", "PGPUs"),
    ("PUSB", "host", "host", "PUSBs"),
    ("host_crashdump", "host", "host", "crashdumps"),
    ("host_patch", "host", "host", "patches"),
    ("Bond", "master", "PIF", "bond_master_of"),
    ("VLAN", "tagged_PIF", "PIF", "VLAN_slave_of"),
    ("tunnel", "access_PIF", "PIF", "tunnel_access_PIF_of"),
    ("tunnel", "transport_PIF", "PIF", "tunnel_transport_PIF_of"),
]

TOMBSTONE_LIMIT = 20000


@dataclass
class Meta:
    cls: str
    created: int
    modified: int


class XDateTime(str):
    """A datetime value; encoded as dateTime.iso8601 on XML-RPC."""


def now_datetime() -> XDateTime:
    return XDateTime(time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime()))


def new_ref() -> str:
    return f"OpaqueRef:{uuidlib.uuid4()}"


class Store:
    def __init__(self, model: DataModel):
        self.model = model
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.tables: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in model.classes}
        self.meta: dict[str, Meta] = {}
        self.by_uuid: dict[str, str] = {}
        self.tombstones: deque[tuple[int, str, str, int, dict]] = deque(maxlen=TOMBSTONE_LIMIT)
        self.gen = 0
        self.epoch = int(time.time() * 1000) % 10**12  # changes on every xapi (re)start
        self.relations = [r for r in RELATIONS if r[0] in model.classes]
        # for each (many class, field): (one class, set field)
        self._rel_by_field = {(m, f): (o, s) for m, f, o, s in self.relations}

    # -- reading --------------------------------------------------------
    def has(self, cls: str, ref: str) -> bool:
        return ref in self.tables[cls]

    def raw(self, cls: str, ref: str) -> dict[str, Any]:
        """The live record (callers hold the lock and must not leak it)."""
        try:
            return self.tables[cls][ref]
        except KeyError:
            raise XenAPIError("HANDLE_INVALID", cls, ref) from None

    def get(self, cls: str, ref: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.raw(cls, ref))

    def field(self, cls: str, ref: str, name: str) -> Any:
        with self.lock:
            return copy.deepcopy(self.raw(cls, ref)[name])

    def refs(self, cls: str) -> list[str]:
        with self.lock:
            return list(self.tables[cls])

    def records(self, cls: str) -> dict[str, dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self.tables[cls])

    def find(self, cls: str, **match: Any) -> list[str]:
        with self.lock:
            return [
                ref
                for ref, rec in self.tables[cls].items()
                if all(rec.get(k) == v for k, v in match.items())
            ]

    def ref_of_uuid(self, cls: str, uuid: str) -> str:
        with self.lock:
            ref = self.by_uuid.get(uuid)
            if ref is None or ref not in self.tables[cls]:
                raise XenAPIError("UUID_INVALID", cls, uuid)
            return ref

    def class_of(self, ref: str) -> str | None:
        m = self.meta.get(ref)
        return m.cls if m else None

    # -- writing --------------------------------------------------------
    def _bump(self, ref: str) -> None:
        self.gen += 1
        self.meta[ref].modified = self.gen
        self.changed.notify_all()

    def create(self, cls: str, fields: dict[str, Any] | None = None, ref: str | None = None) -> str:
        c = self.model.classes[cls]
        ref = ref or new_ref()
        rec = {name: copy.deepcopy(f.default) for name, f in c.fields.items()}
        for name, f in c.fields.items():
            if f.type.kind == "datetime":
                rec[name] = XDateTime(rec[name])
        if "uuid" in c.fields:
            rec["uuid"] = str(uuidlib.uuid4())
        for k, v in (fields or {}).items():
            if k in c.fields:
                rec[k] = _typed(c.fields[k].type, v)
        with self.lock:
            self.tables[cls][ref] = rec
            self.gen += 1
            self.meta[ref] = Meta(cls, self.gen, self.gen)
            if rec.get("uuid"):
                self.by_uuid[rec["uuid"]] = ref
            for name, value in rec.items():
                self._link(cls, ref, name, NULL_REF, value)
            self.changed.notify_all()
        return ref

    def update(self, cls: str, ref: str, **fields: Any) -> None:
        with self.lock:
            rec = self.raw(cls, ref)
            c = self.model.classes[cls]
            for k, v in fields.items():
                if k not in c.fields:
                    raise KeyError(f"{cls} has no field {k}")
                old = rec[k]
                rec[k] = _typed(c.fields[k].type, v)
                if k == "uuid":
                    self.by_uuid.pop(old, None)
                    self.by_uuid[rec[k]] = ref
                self._link(cls, ref, k, old, rec[k])
            self._bump(ref)

    def touch(self, ref: str) -> None:
        """Raise a ``mod`` event without changing anything (event.inject)."""
        with self.lock:
            self._bump(ref)

    def destroy(self, cls: str, ref: str) -> None:
        with self.lock:
            rec = self.raw(cls, ref)
            for name, value in rec.items():
                self._link(cls, ref, name, value, NULL_REF)
            del self.tables[cls][ref]
            meta = self.meta.pop(ref)
            self.by_uuid.pop(rec.get("uuid", ""), None)
            self.gen += 1
            self.tombstones.append((self.gen, cls, ref, meta.created, rec))
            self.changed.notify_all()

    def _link(self, cls: str, ref: str, name: str, old: Any, new: Any) -> None:
        rel = self._rel_by_field.get((cls, name))
        if rel is None or old == new:
            return
        one_cls, set_field = rel
        if isinstance(old, str) and old in self.tables[one_cls]:
            lst = self.tables[one_cls][old][set_field]
            if ref in lst:
                lst.remove(ref)
                self._bump(old)
        if isinstance(new, str) and new in self.tables[one_cls]:
            lst = self.tables[one_cls][new][set_field]
            if ref not in lst:
                lst.append(ref)
                self._bump(new)

    # -- persistence ------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        with self.lock:
            return {"tables": copy.deepcopy(self.tables)}

    def load(self, data: dict[str, Any]) -> None:
        with self.lock:
            for cls, rows in data["tables"].items():
                if cls not in self.tables:
                    continue
                c = self.model.classes[cls]
                for ref, rec in rows.items():
                    typed = {
                        k: _typed(c.fields[k].type, v) for k, v in rec.items() if k in c.fields
                    }
                    self.tables[cls][ref] = typed
                    self.gen += 1
                    self.meta[ref] = Meta(cls, self.gen, self.gen)
                    if typed.get("uuid"):
                        self.by_uuid[typed["uuid"]] = ref
            self.changed.notify_all()


def _typed(t: Type, v: Any) -> Any:
    if t.kind == "datetime" and isinstance(v, str) and not isinstance(v, XDateTime):
        return XDateTime(v)
    return v
