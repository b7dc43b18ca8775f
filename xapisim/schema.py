"""The XenAPI data model as the simulator sees it.

Loaded once from ``xapisim/data/datamodel.json`` (a trimmed copy of xapi's
published ``xenapi.json``): classes with their fields, messages and enums.
This module parses XenAPI type strings, gives each field its default value,
and checks/coerces call parameters against declared types.
"""

from __future__ import annotations

import functools
import json
import math
import pathlib
import re
from dataclasses import dataclass, field
from typing import Any

from xapisim.errors import XenAPIError

DATA = pathlib.Path(__file__).resolve().parent / "data"
NULL_REF = "OpaqueRef:NULL"
EPOCH = "19700101T00:00:00Z"


@dataclass(frozen=True)
class Type:
    """A parsed XenAPI type: kind is one of string, int, float, bool,
    datetime, ref, enum, set, map, record, option."""

    kind: str
    name: str = ""  # class name for ref/record, enum name for enum
    of: tuple[Type, ...] = ()

    def __str__(self) -> str:
        if self.kind in ("ref", "record"):
            return f"{self.name} {self.kind}"
        if self.kind == "enum":
            return f"enum {self.name}"
        if self.kind in ("set", "option"):
            return f"{self.of[0]} {self.kind}"
        if self.kind == "map":
            return f"({self.of[0]} -> {self.of[1]}) map"
        return self.kind


_MAP_RE = re.compile(r"^\((.+?) -> (.+)\) map$")


@functools.cache
def parse_type(text: str) -> Type:
    text = text.strip()
    m = _MAP_RE.match(text)
    if m:
        return Type("map", of=(parse_type(m.group(1)), parse_type(m.group(2))))
    for suffix in ("set", "option"):
        if text.endswith(" " + suffix):
            return Type(suffix, of=(parse_type(text[: -len(suffix) - 1]),))
    if text.startswith("enum "):
        return Type("enum", text[5:])
    if text.endswith(" ref"):
        return Type("ref", text[:-4])
    if text.endswith(" record"):
        return Type("record", text[:-7])
    return Type(text)


@dataclass
class Field:
    name: str
    type: Type
    qualifier: str  # RW, RO/constructor, RO/runtime
    default: Any
    has_default: bool = True

    @property
    def in_constructor(self) -> bool:
        return self.qualifier in ("RW", "RO/constructor")


@dataclass
class Param:
    name: str
    type: Type


@dataclass
class Message:
    cls: str
    name: str
    params: list[Param]
    result: Type | None
    implicit: bool
    errors: list[str]
    # True for messages xapi serves but leaves out of the published data
    # model (get_all_records_where on most classes).
    hidden: bool = False

    @property
    def wire_name(self) -> str:
        return f"{self.cls}.{self.name}"

    @property
    def needs_session(self) -> bool:
        return bool(self.params) and self.params[0].name == "session_id"


@dataclass
class Class:
    name: str
    fields: dict[str, Field]
    messages: dict[str, Message]
    enums: dict[str, list[str]] = field(default_factory=dict)

    @property
    def event_name(self) -> str:
        return self.name.lower()


class DataModel:
    def __init__(self, raw: list[dict], errors: dict[str, list[str]]):
        self.enums: dict[str, list[str]] = {}
        self.classes: dict[str, Class] = {}
        for c in raw:
            self.enums.update(c["enums"])
        for c in raw:
            fields = {}
            for f in c["fields"]:
                t = parse_type(f["type"])
                fields[f["name"]] = Field(
                    f["name"], t, f["qualifier"], self._default(t, f), "default" in f
                )
            msgs = {
                m["name"]: Message(
                    c["name"],
                    m["name"],
                    [Param(p["name"], parse_type(p["type"])) for p in m["params"]],
                    None if m["result"] == "void" else parse_type(m["result"]),
                    m["implicit"],
                    m["errors"],
                )
                for m in c["messages"]
            }
            if "get_all_records" in msgs and "get_all_records_where" not in msgs:
                msgs["get_all_records_where"] = Message(
                    c["name"],
                    "get_all_records_where",
                    [Param("session_id", parse_type("session ref")),
                     Param("expr", parse_type("string"))],
                    msgs["get_all_records"].result,
                    True,
                    [],
                    hidden=True,
                )
            self.classes[c["name"]] = Class(c["name"], fields, msgs, c["enums"])
        self.errors = errors
        self._by_lower = {name.lower(): name for name in self.classes}

    def cls(self, name: str) -> Class | None:
        return self.classes.get(name)

    def canonical(self, name: str) -> str | None:
        """Class name from any case (event classes are lower case)."""
        return self._by_lower.get(name.lower())

    def message(self, wire_name: str) -> Message | None:
        cls, _, msg = wire_name.partition(".")
        c = self.classes.get(cls)
        return c.messages.get(msg) if c else None

    # -- defaults -------------------------------------------------------
    def _default(self, t: Type, f: dict) -> Any:
        raw = f.get("default")
        if raw is not None:
            parsed = _parse_default(t, raw)
            if parsed is not _NO_DEFAULT:
                return parsed
        return self.zero(t)

    def zero(self, t: Type) -> Any:
        kind = t.kind
        if kind == "string":
            return ""
        if kind == "int":
            return 0
        if kind == "float":
            return 0.0
        if kind == "bool":
            return False
        if kind == "datetime":
            return EPOCH
        if kind == "ref":
            return NULL_REF
        if kind == "enum":
            values = self.enums.get(t.name) or [""]
            return values[0]
        if kind == "set":
            return []
        if kind == "map" or kind == "record":
            return {}
        if kind == "option":
            return None
        return ""

    # -- parameter checking ---------------------------------------------
    def coerce(self, t: Type, value: Any, pname: str) -> Any:
        """Convert a decoded wire value to the declared type or raise
        FIELD_TYPE_ERROR, as xapi's unmarshaller does."""
        kind = t.kind
        try:
            if kind in ("string", "ref"):
                if isinstance(value, str):
                    return value
            elif kind == "int":
                if isinstance(value, bool):
                    raise ValueError
                if isinstance(value, str):
                    value = int(value)
                # xapi's ints are OCaml int64s: nothing past their range
                if isinstance(value, int) and INT64_MIN <= value <= INT64_MAX:
                    return value
            elif kind == "float":
                if isinstance(value, bool):
                    raise ValueError
                if isinstance(value, int | float | str):
                    value = float(value)
                    # nan and inf: xapi would store them and then write
                    # JSON no parser reads; the simulator refuses them
                    if math.isfinite(value):
                        return value
            elif kind == "bool":
                if isinstance(value, bool):
                    return value
                if isinstance(value, str) and value.lower() in ("true", "false"):
                    return value.lower() == "true"
            elif kind == "datetime":
                if isinstance(value, str):
                    return value
                if hasattr(value, "value"):  # xmlrpc.client.DateTime
                    return str(value.value)
            elif kind == "enum":
                if isinstance(value, str):
                    allowed = self.enums.get(t.name, [])
                    for a in allowed:
                        if a.lower() == value.lower():
                            return a
                    raise XenAPIError("INVALID_VALUE", pname, value)
            elif kind == "set":
                if isinstance(value, list | tuple):
                    return [self.coerce(t.of[0], v, pname) for v in value]
            elif kind == "map":
                if isinstance(value, dict):
                    return {
                        self.coerce(t.of[0], k, pname): self.coerce(t.of[1], v, pname)
                        for k, v in value.items()
                    }
            elif kind == "record":
                if isinstance(value, dict):
                    return self.coerce_record(t.name, value, pname)
            elif kind == "option":
                if value is None:
                    return None
                return self.coerce(t.of[0], value, pname)
            else:
                return value
        except (ValueError, TypeError, OverflowError):
            pass
        raise XenAPIError("FIELD_TYPE_ERROR", pname)

    def coerce_record(self, cls_name: str, value: dict, pname: str) -> dict:
        cls = self.classes[cls_name]
        out = {}
        for k, v in value.items():
            f = cls.fields.get(k)
            if f is None:
                continue  # xapi ignores unknown keys in constructor records
            out[k] = self.coerce(f.type, v, k)
        return out


_NO_DEFAULT = object()
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _parse_default(t: Type, raw: str) -> Any:
    raw = raw.strip()
    kind = t.kind
    if raw in ("Null", "None") and kind == "option":
        return None
    if kind == "string":
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            return raw[1:-1]
        return raw
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            return _NO_DEFAULT
    if kind == "float":
        try:
            return float(raw)
        except ValueError:
            return _NO_DEFAULT
    if kind == "bool":
        return raw == "true"
    if kind == "ref" and raw in ("Null", "None", ""):
        return NULL_REF  # the data model writes a null ref default as "Null"
    if kind in ("ref", "datetime"):
        return raw
    if kind == "enum":
        return raw
    if kind in ("set", "map") and raw in ("{}", "()", "[]"):
        return [] if kind == "set" else {}
    if kind == "map" and raw.startswith("{"):
        out = {}
        for pair in re.findall(r'"([^"]*)"\s*->\s*"([^"]*)"', raw):
            out[pair[0]] = pair[1]
        return out
    return _NO_DEFAULT


@functools.lru_cache(maxsize=1)
def load() -> DataModel:
    raw = json.loads((DATA / "datamodel.json").read_text())
    errors = json.loads((DATA / "errors.json").read_text())
    return DataModel(raw, errors)
