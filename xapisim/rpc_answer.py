"""One RPC request body in, one answer body out: decode (XML-RPC or
JSON-RPC), dispatch, encode, with xapi's envelopes for failures. The HTTP
listeners and the whole-API fuzz test both go through ``answer``.

A Python exception that escapes a handler is a simulator bug: it is
logged with its traceback (logger ``xapisim.rpc``, level ERROR) and
answered ``INTERNAL_ERROR``, as xapi answers an unexpected exception,
never a hang or a dropped connection."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from xapisim import log_redaction, wire
from xapisim.errors import XenAPIError
from xapisim.faults import DropConnection, HangConnection
from xapisim.services import Calls

LOG = log_redaction.logger("xapisim.rpc")
SECRET_METHODS = ("session.login_with_password", "session.slave_local_login_with_password")
XMLRPC, JSONRPC = "xmlrpc", "jsonrpc"


def _xml_ok(req: wire.Request, value: Any) -> bytes:
    return wire.encode_xmlrpc_success(value)


def _xml_fail(req: wire.Request | None, err: XenAPIError) -> bytes:
    return wire.encode_xmlrpc_failure(err)


def _json_ok(req: wire.Request, value: Any) -> bytes:
    return wire.encode_jsonrpc_success(req, value)


def _json_fail(req: wire.Request | None, err: XenAPIError) -> bytes:
    return wire.encode_jsonrpc_failure(req or wire.Request("", [], None, "2.0"), err)


PROTOCOLS: dict[str, tuple[Callable[[bytes], wire.Request],
                           Callable[[wire.Request, Any], bytes],
                           Callable[[wire.Request | None, XenAPIError], bytes]]] = {
    XMLRPC: (wire.decode_xmlrpc, _xml_ok, _xml_fail),
    JSONRPC: (wire.decode_jsonrpc, _json_ok, _json_fail),
}


def answer(calls: Calls, host_ref: str, body: bytes, protocol: str, *,
           local_socket: bool = False, peer_root: bool = False) -> bytes:
    """The answer to ``body`` received by ``host_ref``'s listener (its
    local Unix socket if ``local_socket``; ``peer_root``: the caller there
    is dom0's root). DropConnection and HangConnection (injected faults)
    pass through."""
    decode, ok, fail = PROTOCOLS[protocol]
    request = None
    try:
        request = decode(body)
        _log_call(request)
        return ok(request, calls.call(host_ref, request.method, request.params,
                                      local_socket=local_socket, peer_root=peer_root))
    except XenAPIError as e:
        LOG.debug("-> %s", e.code)
        return fail(request, e)
    except (DropConnection, HangConnection):
        raise
    except Exception as e:  # a simulator bug answers INTERNAL_ERROR, never a hang
        LOG.exception("internal error in %s", request.method if request else "decoding")
        return fail(request, XenAPIError("INTERNAL_ERROR", repr(e)))


def _log_call(request: wire.Request) -> None:
    if not LOG.isEnabledFor(logging.DEBUG):
        return
    if request.method.endswith(SECRET_METHODS):
        LOG.debug("call %s (credentials hidden)", request.method)
    else:
        # params[0] is normally the session ref: a secret too
        LOG.debug("call %s (%d params)", request.method, len(request.params))
