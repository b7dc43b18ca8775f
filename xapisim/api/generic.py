"""The implicit messages every class has: getters, setters, map and set
edits, get_all*, get_by_*, create and destroy. Built from the data model,
so every declared field of every class answers the same way."""

from __future__ import annotations

import copy
import re
from typing import Any

from xapisim.context import CallContext
from xapisim.errors import XenAPIError
from xapisim.schema import Class, Message
from xapisim.store import Store

# Classes whose objects only xapi makes; a client's <class>.create is
# answered by specific handlers elsewhere, or refused.


def resolve(msg: Message, cls: Class):
    """Return a handler for an implicit message, or None."""
    name = msg.name
    c = cls.name
    if name == "get_record":
        return lambda ctx, ref: _record(ctx.store, c, ref)
    if name == "get_all":
        return lambda ctx: ctx.store.refs(c)
    if name == "get_all_records":
        return lambda ctx: ctx.store.records(c)
    if name == "get_all_records_where":
        return lambda ctx, expr: _where(ctx.store, c, expr)
    if name == "get_by_uuid":
        return lambda ctx, uuid: ctx.store.ref_of_uuid(c, uuid)
    if name == "get_by_name_label":
        return lambda ctx, label: ctx.store.find(c, name_label=label)
    if name == "create":
        return lambda ctx, rec: create(ctx, c, rec)
    if name == "destroy":
        return lambda ctx, ref: destroy(ctx, c, ref)
    for prefix, fn in (
        ("get_", _getter),
        ("set_", _setter),
        ("add_to_", _map_add),
        ("remove_from_", _map_remove),
        ("add_", _set_add),
        ("remove_", _set_remove),
    ):
        if name.startswith(prefix) and name[len(prefix):] in cls.fields:
            return fn(cls, name[len(prefix):])
    return None


def _record(store: Store, cls: str, ref: str) -> dict[str, Any]:
    return store.get(cls, ref)


def _getter(cls: Class, field: str):
    return lambda ctx, ref: ctx.store.field(cls.name, ref, field)


def _setter(cls: Class, field: str):
    def set_field(ctx: CallContext, ref: str, value: Any) -> None:
        with ctx.store.lock:
            ctx.store.raw(cls.name, ref)
            ctx.store.update(cls.name, ref, **{field: value})

    return set_field


def _map_add(cls: Class, field: str):
    def add(ctx: CallContext, ref: str, key: str, value: Any) -> None:
        with ctx.store.lock:
            rec = ctx.store.raw(cls.name, ref)
            if key in rec[field]:
                raise XenAPIError("MAP_DUPLICATE_KEY", cls.name, field, ref, key)
            new = dict(rec[field])
            new[key] = value
            ctx.store.update(cls.name, ref, **{field: new})

    return add


def _map_remove(cls: Class, field: str):
    def remove(ctx: CallContext, ref: str, key: str) -> None:
        with ctx.store.lock:
            rec = ctx.store.raw(cls.name, ref)
            if key in rec[field]:
                new = dict(rec[field])
                del new[key]
                ctx.store.update(cls.name, ref, **{field: new})

    return remove


def _set_add(cls: Class, field: str):
    def add(ctx: CallContext, ref: str, value: Any) -> None:
        with ctx.store.lock:
            rec = ctx.store.raw(cls.name, ref)
            if value not in rec[field]:
                ctx.store.update(cls.name, ref, **{field: [*rec[field], value]})

    return add


def _set_remove(cls: Class, field: str):
    def remove(ctx: CallContext, ref: str, value: Any) -> None:
        with ctx.store.lock:
            rec = ctx.store.raw(cls.name, ref)
            if value in rec[field]:
                ctx.store.update(cls.name, ref, **{field: [v for v in rec[field] if v != value]})

    return remove


def check_constructor_fields(store: Store, cls: str, rec: dict[str, Any]) -> None:
    """Every constructor field without a default must be given, as xapi's
    unmarshaller insists: FIELD_TYPE_ERROR [field] for the first missing."""
    for name, f in store.model.classes[cls].fields.items():
        if f.in_constructor and not f.has_default and name not in rec:
            raise XenAPIError("FIELD_TYPE_ERROR", name)


def constructor_values(store: Store, cls: str, rec: dict[str, Any]) -> dict[str, Any]:
    """The part of a client's record a constructor takes (RW and
    RO/constructor fields); the rest is xapi's to fill."""
    fields = store.model.classes[cls].fields
    return {k: copy.deepcopy(v) for k, v in rec.items() if k in fields and
            fields[k].in_constructor}


def create(ctx: CallContext, cls: str, rec: dict[str, Any], **extra: Any) -> str:
    """Generic constructor (after check_constructor_fields)."""
    check_constructor_fields(ctx.store, cls, rec)
    fields = constructor_values(ctx.store, cls, rec)
    fields.update(extra)
    return ctx.store.create(cls, fields)


def destroy(ctx: CallContext, cls: str, ref: str) -> None:
    with ctx.store.lock:
        ctx.store.raw(cls, ref)
        ctx.store.destroy(cls, ref)


# -- get_all_records_where: xapi's small expression language -----------------
# expr := or ; or := and ('or' and)* ; and := unary ('and' unary)*
# unary := 'not' unary | '(' expr ')' | 'true' | 'false'
#        | 'field' STRING ('=' | '<>') STRING
_TOKEN = re.compile(r'\s*(?:(\(|\)|<>|=)|"((?:[^"\\]|\\.)*)"|([A-Za-z_]+))')


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise XenAPIError("INVALID_VALUE", "expr", text)
        if m.group(1):
            out.append(("op", m.group(1)))
        elif m.group(2) is not None:
            out.append(("str", m.group(2).replace('\\"', '"')))
        else:
            out.append(("word", m.group(3).lower()))
        pos = m.end()
    return out


def compile_expr(text: str):
    toks = _tokens(text)
    pos = 0

    def peek() -> tuple[str, str] | None:
        return toks[pos] if pos < len(toks) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(toks):
            raise XenAPIError("INVALID_VALUE", "expr", text)
        pos += 1
        return toks[pos - 1]

    def chain(word: str, operand, combine):
        """``operand (word operand)*``, folded left with ``combine``."""
        def parse():
            left = operand()
            while peek() == ("word", word):
                take()
                left = (lambda a, b: lambda r: combine(a(r), b(r)))(left, operand())
            return left

        return parse

    def parse_and():
        return chain("and", parse_unary, lambda x, y: x and y)()

    def parse_or():
        return chain("or", parse_and, lambda x, y: x or y)()

    def parse_unary():
        tok = take()
        if tok == ("word", "not"):
            inner = parse_unary()
            return lambda r: not inner(r)
        if tok == ("op", "("):
            inner = parse_or()
            if take() != ("op", ")"):
                raise XenAPIError("INVALID_VALUE", "expr", text)
            return inner
        if tok == ("word", "true"):
            return lambda r: True
        if tok == ("word", "false"):
            return lambda r: False
        if tok == ("word", "field"):
            kind, name = take()
            op = take()
            kind2, value = take()
            if kind != "str" or kind2 != "str" or op not in (("op", "="), ("op", "<>")):
                raise XenAPIError("INVALID_VALUE", "expr", text)
            eq = op == ("op", "=")
            return lambda r: (_as_text(r.get(name)) == value) == eq
        raise XenAPIError("INVALID_VALUE", "expr", text)

    pred = parse_or()
    if pos != len(toks):
        raise XenAPIError("INVALID_VALUE", "expr", text)
    return pred


def _as_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _where(store: Store, cls: str, expr: str) -> dict[str, dict[str, Any]]:
    pred = compile_expr(expr)
    with store.lock:
        return {ref: copy.deepcopy(rec) for ref, rec in store.tables[cls].items() if pred(rec)}
