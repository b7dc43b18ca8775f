"""The XenAPI data model as the test oracle, read from the shared
``xenapi.json`` / ``xapi-errors.json`` (never from xapisim's own copy), and
checks that a decoded wire value has a declared type.

Type strings are parsed here independently of ``xapisim.schema`` so that a
bug in the simulator's parser cannot hide itself."""

from __future__ import annotations

import json
import os
import pathlib
import re
import xmlrpc.client
from dataclasses import dataclass
from typing import Any

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
# Beside the repository; XAPI_ORACLE_DIR points elsewhere (a git worktree
# checked out away from the main clone).
SHARED = pathlib.Path(os.environ.get("XAPI_ORACLE_DIR") or REPO.parent / "shared" / "xapi")

INT_RE = re.compile(r"^-?[0-9]+$")
DATETIME_RE = re.compile(r"^[0-9]{8}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
REF_RE = re.compile(rf"^OpaqueRef:(NULL|{UUID})$")


SM_FAILURE = re.compile(r"SR_BACKEND_FAILURE_[0-9]+")
# Errors xapi raises with more parameters than its published model declares
# (read in xen-api's ocaml/xapi sources): code -> xapi's parameters. Kept
# here apart from xapisim's own table so the oracle stays independent.
XAPI_PARAMS_BEYOND_MODEL = {
    # xapi_session.ml, do_local_auth: [uname; PAM's message]
    "SESSION_AUTHENTICATION_FAILED": ["uname", "msg"],
}


def shared_file(name: str) -> pathlib.Path:
    path = SHARED / name
    if not path.is_file():
        # The oracle is part of the test's input: without it the test proves
        # nothing, so this is a failure, not a skip.
        pytest.fail(f"XenAPI oracle {path} is missing (expected beside the repository)")
    return path


@dataclass(frozen=True)
class T:
    """A parsed XenAPI type; kind is string, int, float, bool, datetime,
    ref, enum, set, map, record, option (``name`` is the class or enum)."""

    kind: str
    name: str = ""
    args: tuple[T, ...] = ()


_MAP = re.compile(r"^\((.+?) -> (.+)\) map$")


def parse(text: str) -> T:
    text = text.strip()
    m = _MAP.match(text)
    if m:
        return T("map", args=(parse(m.group(1)), parse(m.group(2))))
    for suffix in ("set", "option"):
        if text.endswith(" " + suffix):
            return T(suffix, args=(parse(text[: -len(suffix) - 1]),))
    if text.startswith("enum "):
        return T("enum", text[5:])
    for suffix in ("ref", "record"):
        if text.endswith(" " + suffix):
            return T(suffix, text[: -len(suffix) - 1])
    if text in ("string", "int", "float", "bool", "datetime"):
        return T(text)
    return T("other", text)


@dataclass
class Message:
    cls: str
    name: str
    params: list[tuple[str, T]]
    result: str
    implicit: bool

    @property
    def wire(self) -> str:
        return f"{self.cls}.{self.name}"

    @property
    def takes_session(self) -> bool:
        return bool(self.params) and self.params[0][0] == "session_id"


class Oracle:
    def __init__(self) -> None:
        raw = json.loads(shared_file("xenapi.json").read_text())
        errs = json.loads(shared_file("xapi-errors.json").read_text())
        self.errors: dict[str, list[str]] = {k: v["params"] for k, v in errs["errors"].items()}
        self.enums: dict[str, list[str]] = {}
        self.fields: dict[str, dict[str, T]] = {}
        self.qualifiers: dict[str, dict[str, str]] = {}
        self.messages: dict[str, dict[str, Message]] = {}
        for c in raw:
            for e in c["enums"]:
                self.enums[e["name"]] = [v["name"] for v in e["values"]]
            self.fields[c["name"]] = {f["name"]: parse(f["type"]) for f in c["fields"]}
            self.qualifiers[c["name"]] = {f["name"]: f["qualifier"] for f in c["fields"]}
            self.messages[c["name"]] = {
                m["name"]: Message(
                    c["name"],
                    m["name"],
                    [(p["name"], parse(p["type"])) for p in m["params"]],
                    m["result"][0],
                    m["implicit"],
                )
                for m in c["messages"]
            }
        self.classes = list(self.fields)

    def all_messages(self) -> list[Message]:
        return [m for c in self.classes for m in self.messages[c].values()]

    def error_problem(self, description: list[str]) -> str | None:
        """Why an ErrorDescription is not a declared error, or None."""
        if not description or not isinstance(description[0], str):
            return f"malformed ErrorDescription {description!r}"
        code, params = description[0], description[1:]
        if SM_FAILURE.fullmatch(code):
            code = "SR_BACKEND_FAILURE"  # xapi relays SM driver error N under this name
        if code not in self.errors:
            return f"undeclared error code {code} {params}"
        beyond = XAPI_PARAMS_BEYOND_MODEL.get(code)
        if len(params) != len(self.errors[code]) and (beyond is None
                                                      or len(params) != len(beyond)):
            return (f"{code} has {len(params)} params {params}, declared "
                    f"{len(self.errors[code])} {self.errors[code]}")
        if not all(isinstance(p, str) for p in params):
            return f"{code} params are not all strings: {params!r}"
        return None


class TypeChecker:
    """Checks decoded values against declared types for one protocol."""

    def __init__(self, oracle: Oracle, protocol: str):
        assert protocol in ("xmlrpc", "json")
        self.o = oracle
        self.protocol = protocol

    def record(self, cls: str, rec: Any, where: str) -> list[str]:
        if not isinstance(rec, dict):
            return [f"{where}: record is {type(rec).__name__}, not a struct"]
        declared = self.o.fields[cls]
        problems = []
        missing = sorted(set(declared) - set(rec))
        extra = sorted(set(rec) - set(declared))
        if missing:
            problems.append(f"{where}: missing fields {missing}")
        if extra:
            problems.append(f"{where}: undeclared fields {extra}")
        for name, value in rec.items():
            if name in declared:
                problems += self.value(declared[name], value, f"{where}.{name}")
        return problems

    def value(self, t: T, v: Any, where: str) -> list[str]:
        ok, why = self._check(t, v, where)
        return [] if ok else [why]

    def _bad(self, t: T, v: Any, where: str) -> tuple[bool, str]:
        return False, f"{where}: {v!r} ({type(v).__name__}) is not a valid {_show(t)}"

    def _check(self, t: T, v: Any, where: str) -> tuple[bool, str]:
        k = t.kind
        xml = self.protocol == "xmlrpc"
        if k == "string":
            return (True, "") if isinstance(v, str) else self._bad(t, v, where)
        if k == "int":
            if xml:
                ok = isinstance(v, str) and bool(INT_RE.match(v))
            else:
                ok = isinstance(v, int) and not isinstance(v, bool)
            return (True, "") if ok else self._bad(t, v, where)
        if k == "float":
            ok = isinstance(v, float) or (
                not xml and isinstance(v, int) and not isinstance(v, bool))
            return (True, "") if ok else self._bad(t, v, where)
        if k == "bool":
            return (True, "") if isinstance(v, bool) else self._bad(t, v, where)
        if k == "datetime":
            if xml:
                ok = isinstance(v, xmlrpc.client.DateTime) and bool(DATETIME_RE.match(v.value))
            else:
                ok = isinstance(v, str) and bool(DATETIME_RE.match(v))
            return (True, "") if ok else self._bad(t, v, where)
        if k == "ref":
            ok = isinstance(v, str) and bool(REF_RE.match(v))
            return (True, "") if ok else self._bad(t, v, where)
        if k == "enum":
            ok = isinstance(v, str) and v in self.o.enums.get(t.name, [])
            return (True, "") if ok else self._bad(t, v, where)
        if k == "set":
            if not isinstance(v, list):
                return self._bad(t, v, where)
            for i, item in enumerate(v):
                ok, why = self._check(t.args[0], item, f"{where}[{i}]")
                if not ok:
                    return ok, why
            return True, ""
        if k == "map":
            if not isinstance(v, dict):
                return self._bad(t, v, where)
            for key, item in v.items():
                ok, why = self._key(t.args[0], key, where)
                if not ok:
                    return ok, why
                ok, why = self._check(t.args[1], item, f"{where}[{key!r}]")
                if not ok:
                    return ok, why
            return True, ""
        if k == "record":
            problems = self.record(t.name, v, where)
            return (not problems), "; ".join(problems)
        if k == "option":
            return self._check(t.args[0], v, where)
        return False, f"{where}: the oracle has no wire rule for type {t.name!r}"

    def _key(self, t: T, key: Any, where: str) -> tuple[bool, str]:
        # Struct member names are strings on both protocols, whatever the
        # declared key type: ints as decimal digits, enums and refs as-is.
        if not isinstance(key, str):
            return False, f"{where}: map key {key!r} is not a string"
        if t.kind == "int" and not INT_RE.match(key):
            return False, f"{where}: map key {key!r} is not a decimal int"
        if t.kind == "enum" and key not in self.o.enums.get(t.name, []):
            return False, f"{where}: map key {key!r} is not in enum {t.name}"
        if t.kind == "ref" and not REF_RE.match(key):
            return False, f"{where}: map key {key!r} is not a ref"
        return True, ""


def _show(t: T) -> str:
    if t.kind in ("ref", "record"):
        return f"{t.name} {t.kind}"
    if t.kind == "enum":
        return f"enum {t.name}"
    if t.kind in ("set", "option"):
        return f"{_show(t.args[0])} {t.kind}"
    if t.kind == "map":
        return f"({_show(t.args[0])} -> {_show(t.args[1])}) map"
    return t.kind


def zero_xmlrpc(oracle: Oracle, t: T) -> Any:
    """A valid XML-RPC value of type ``t`` (refs as OpaqueRef:NULL)."""
    k = t.kind
    if k == "int":
        return "0"
    if k == "float":
        return 0.0
    if k == "bool":
        return False
    if k == "datetime":
        return xmlrpc.client.DateTime("19700101T00:00:00Z")
    if k == "ref":
        return "OpaqueRef:NULL"
    if k == "enum":
        return oracle.enums[t.name][0]
    if k == "set":
        return []
    if k in ("map", "record"):
        return {}
    return ""
