"""The two wire protocols: XML-RPC (``{Status, Value}`` envelopes, int64 as
strings) and JSON-RPC 1.0/2.0, decoding requests and encoding answers."""

from __future__ import annotations

import json
import re
import xmlrpc.client
from dataclasses import dataclass
from typing import Any

from xapisim.errors import XenAPIError
from xapisim.store import XDateTime
from xapisim.wire_values import finite_float, no_constants, too_deep
from xapisim.wire_values import loads as strict_loads


@dataclass
class Request:
    method: str
    params: list[Any]
    id: Any = None
    version: str = "xmlrpc"  # xmlrpc | 1.0 | 2.0


class Int32(int):
    """An int xapi sends as XML-RPC ``<i4>``, not as a 64-bit decimal string
    (event.from's valid_ref_counts, for old non-xapi clients)."""


# Characters XML 1.0 cannot carry (a value may have come in over JSON-RPC or
# as base64): dropped on output, as xapi's XML-RPC writer drops controls.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(s: str) -> str:
    return _NOT_XML.sub("", s)


def to_wire_xmlrpc(value: Any) -> Any:
    if isinstance(value, bool) or isinstance(value, float):
        return value
    if isinstance(value, Int32):
        return int(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, XDateTime):
        return xmlrpc.client.DateTime(str(value))
    if isinstance(value, str):
        return _xml_text(value)
    if isinstance(value, dict):
        return {_xml_text(str(k)) if not isinstance(k, bool) else ("true" if k else "false"):
                to_wire_xmlrpc(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_wire_xmlrpc(v) for v in value]
    if value is None:
        return ""
    return str(value)


def to_wire_json(value: Any) -> Any:
    if isinstance(value, XDateTime):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_wire_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_wire_json(v) for v in value]
    return value


def _from_xmlrpc(value: Any) -> Any:
    if isinstance(value, xmlrpc.client.DateTime):
        return XDateTime(value.value)
    if isinstance(value, dict):
        return {k: _from_xmlrpc(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_xmlrpc(v) for v in value]
    return value


# -- XML-RPC --------------------------------------------------------------------
def decode_xmlrpc(body: bytes) -> Request:
    try:
        params, method = strict_loads(body)
    except Exception as e:  # expat, ValueError, TypeError on bad values...
        raise XenAPIError("XMLRPC_UNMARSHAL_FAILURE", "methodCall", type(e).__name__) from None
    if not isinstance(method, str) or not method:
        raise XenAPIError("XMLRPC_UNMARSHAL_FAILURE", "methodName", "nothing")
    if too_deep(list(params)):
        raise XenAPIError("XMLRPC_UNMARSHAL_FAILURE", "value", "nested too deeply")
    return Request(method, [_from_xmlrpc(p) for p in params])


def encode_xmlrpc_success(value: Any) -> bytes:
    envelope = {"Status": "Success", "Value": to_wire_xmlrpc(value)}
    return xmlrpc.client.dumps((envelope,), methodresponse=True, allow_none=False).encode()


def encode_xmlrpc_failure(err: XenAPIError) -> bytes:
    envelope = {"Status": "Failure", "ErrorDescription": to_wire_xmlrpc(err.description)}
    return xmlrpc.client.dumps((envelope,), methodresponse=True).encode()


# -- JSON-RPC -------------------------------------------------------------------
# the request object and its params array wrap the values
MAX_JSON_DEPTH = 66


def decode_jsonrpc(body: bytes) -> Request:
    # xapi has no error code for an unparsable JSON-RPC request (its parser
    # raises an internal exception), so answer INTERNAL_ERROR, a declared code.
    try:
        doc = json.loads(body, parse_float=finite_float, parse_constant=no_constants)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise XenAPIError("INTERNAL_ERROR", "JSON-RPC request is not valid JSON") from None
    if too_deep(doc, MAX_JSON_DEPTH):
        raise XenAPIError("INTERNAL_ERROR", "JSON-RPC request nests values too deeply")
    if not isinstance(doc, dict) or not isinstance(doc.get("method"), str):
        raise XenAPIError("INTERNAL_ERROR", "JSON-RPC request has no method name")
    params = doc.get("params", [])
    if not isinstance(params, list):
        raise XenAPIError("INTERNAL_ERROR", "JSON-RPC params must be an array")
    version = "2.0" if doc.get("jsonrpc") == "2.0" else "1.0"
    return Request(doc["method"], params, doc.get("id"), version)


def encode_jsonrpc_success(req: Request, value: Any) -> bytes:
    if req.version == "2.0":
        doc = {"jsonrpc": "2.0", "result": to_wire_json(value), "id": req.id}
    else:
        doc = {"result": to_wire_json(value), "error": None, "id": req.id}
    return json.dumps(doc).encode()


def encode_jsonrpc_failure(req: Request, err: XenAPIError) -> bytes:
    if req.version == "2.0":
        doc = {
            "jsonrpc": "2.0",
            "error": {"code": 1, "message": err.code, "data": err.params},
            "id": req.id,
        }
    else:
        doc = {"result": None, "error": err.description, "id": req.id}
    return json.dumps(doc).encode()
