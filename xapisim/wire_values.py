"""What xapi's RPC layer does to decoded parameter values before any
message sees them.

- ``<base64>`` is decoded strictly, as ocaml-rpc's ``Base64.decode_exn``
  does (RFC 4648 alphabet, padding required, no whitespace or line breaks):
  anything else makes the whole call unparsable.
- Every parameter must be UTF-8 text XML can carry: xapi's generated
  dispatcher checks each one (``Rpc.to_string p`` against
  ``UTF8_XML.is_valid``) and answers
  ``INVALID_VALUE ["Invalid UTF-8 string in parameter", <the value>]``,
  over XML-RPC and JSON-RPC alike. So no control character (NUL included),
  lone surrogate or non-character reaches a handler, a plugin's argv or a
  log line.
"""

from __future__ import annotations

import binascii
import re
import xmlrpc.client
from typing import Any

from xapisim.errors import XenAPIError

# Characters outside XML 1.0's Char production (tab, LF and CR are fine).
NOT_XML_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class Base64Value(str):
    """A decoded ``<base64>`` value: its bytes as text (bytes that are not
    UTF-8 kept as lone surrogates, which the validity check then refuses)."""


def decode_base64(text: str) -> Base64Value:
    """Strict base64, as xapi's XML-RPC parser; ValueError otherwise."""
    if len(text) % 4:
        raise ValueError("invalid base64: length is not a multiple of 4")
    try:
        raw = binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise ValueError(f"invalid base64: {e}") from None
    return Base64Value(raw.decode("utf-8", "surrogateescape"))


def _end_base64(self: xmlrpc.client.Unmarshaller, data: str) -> None:
    self.append(decode_base64(data))
    self._value = 0


class StrictUnmarshaller(xmlrpc.client.Unmarshaller):
    """The standard unmarshaller with xapi's strict ``<base64>``."""

    dispatch = dict(xmlrpc.client.Unmarshaller.dispatch)
    dispatch["base64"] = _end_base64


def loads(body: bytes) -> tuple[tuple[Any, ...], str | None]:
    """xmlrpc.client.loads with StrictUnmarshaller."""
    unmarshaller = StrictUnmarshaller(use_builtin_types=False)
    parser = xmlrpc.client.ExpatParser(unmarshaller)
    parser.feed(body)
    parser.close()
    return unmarshaller.close(), unmarshaller.getmethodname()


def rpc_text(value: Any) -> str:
    """A decoded value as xapi's ``Rpc.to_string`` prints it (the form
    INVALID_VALUE quotes)."""
    if isinstance(value, bool):
        return f"B({'true' if value else 'false'})"
    if isinstance(value, int):
        return f"I({value})"
    if isinstance(value, float):
        return f"F({value:g})"
    if isinstance(value, Base64Value):
        return f"B64({value})"
    if isinstance(value, str):
        return f"S({value})"
    if isinstance(value, xmlrpc.client.DateTime):
        return f"D({value.value})"
    if isinstance(value, list | tuple):
        return "[" + ";".join(rpc_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ";".join(f"{k}:{rpc_text(v)}" for k, v in value.items()) + "}"
    if value is None:
        return "N"
    return str(value)


def _has_bad_text(value: Any) -> bool:
    if isinstance(value, str):
        return NOT_XML_TEXT.search(value) is not None
    if isinstance(value, xmlrpc.client.DateTime):
        return _has_bad_text(value.value)
    if isinstance(value, list | tuple):
        return any(_has_bad_text(v) for v in value)
    if isinstance(value, dict):
        return any(_has_bad_text(k) or _has_bad_text(v) for k, v in value.items())
    return False


def check_params(params: list[Any]) -> None:
    """xapi's check of every parameter before dispatch."""
    for p in params:
        if _has_bad_text(p):
            raise XenAPIError("INVALID_VALUE", "Invalid UTF-8 string in parameter", rpc_text(p))


# Deeper than any XenAPI type nests (a map of sets is 2); refused while
# decoding, before anything recursive walks the value.
MAX_DEPTH = 64


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests arrays and structs more than ``limit`` deep
    (walked without recursion)."""
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, list | tuple):
            children = v
        elif isinstance(v, dict):
            children = v.values()
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((c, depth + 1) for c in children)
    return False


def finite_float(text: str) -> float:
    """JSON numbers as xapi's parser takes them: no inf from 1e999."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number out of range: {text}")
    return value


def no_constants(name: str) -> Any:
    """NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not JSON")


def plain(value: Any) -> Any:
    """The value with decoded ``<base64>`` turned into ordinary text (after
    check_params: handlers, the store and the encoders see plain types)."""
    if isinstance(value, Base64Value):
        return str(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value
