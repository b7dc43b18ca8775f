"""The agent's RPC dispatcher: only documented methods, only checked envelopes.

oslo.messaging's own dispatcher reaches any public attribute of an endpoint
(``manager``, ``target``), logs a full traceback at ERROR for an unknown
method, and trusts the envelope (a non-object ``args``, a context that is
not a map, an argument called ``ctxt``, a ``_timeout`` that is not a
number all end as tracebacks in its threads). This one answers every such
message with a structured error (``NO_SUCH_METHOD [method]``,
``UNSUPPORTED_VERSION [method, version, available]``, ``INVALID_INPUT
["arguments", reason]``) sent as an expected exception, so nothing reaches
the log at ERROR and a hostile caller learns nothing but the code.

Dispatchable are exactly the endpoint methods marked by rpc/server.py's
``@endpoint`` decorator, with exactly their declared argument names.
"""

from __future__ import annotations

import logging
from typing import Any

import oslo_messaging
from oslo_messaging.rpc import dispatcher as rpc_dispatcher

from compute_agent import exceptions
from compute_agent.compute.validation import safe_text
from compute_agent.rpc import errors

LOG = logging.getLogger(__name__)

# A call's timeout the dispatcher's heartbeat thread may use: seconds.
MAX_CLIENT_TIMEOUT = 24 * 3600


def expected(exc: exceptions.ComputeAgentError | errors.RemoteComputeError
             ) -> oslo_messaging.ExpectedException:
    """An ExpectedException carrying ``exc`` in its wire form: oslo.messaging
    sends it to the caller without logging a traceback at ERROR level.
    (ExpectedException records the exception being handled, so raise the
    wire error and build it in the handler.)"""
    wire = exc if isinstance(exc, errors.RemoteComputeError) else errors.to_remote(exc)
    try:
        raise wire
    except errors.RemoteComputeError:
        return oslo_messaging.ExpectedException()


def rpc_methods(endpoint: Any) -> dict[str, tuple[str, ...]]:
    """The dispatchable methods of ``endpoint`` and their argument names."""
    out = {}
    for name in dir(type(endpoint)):
        params = getattr(getattr(type(endpoint), name, None), "rpc_params", None)
        if params is not None:
            out[name] = params
    return out


class ExposedOnlyPolicy(oslo_messaging.RPCAccessPolicyBase):
    """Only methods marked by ``@endpoint`` are dispatchable."""

    def is_allowed(self, endpoint: Any, method: str) -> bool:
        return method in rpc_methods(endpoint)


class GuardedDispatcher(rpc_dispatcher.RPCDispatcher):
    """See the module docstring."""

    def __init__(self, endpoints: list[Any], serializer: Any):
        super().__init__(endpoints, serializer, ExposedOnlyPolicy)
        self._methods: dict[str, tuple[str, ...]] = {}
        for endpoint in endpoints:
            self._methods.update(rpc_methods(endpoint))

    def dispatch(self, incoming: Any) -> Any:
        try:
            self._check_envelope(incoming)
            return super().dispatch(incoming)
        except exceptions.ComputeAgentError as exc:
            raise expected(exc) from None
        except rpc_dispatcher.NoSuchMethod as exc:
            raise expected(errors.NoSuchMethod(safe_text(exc.method))) from None
        except rpc_dispatcher.UnsupportedVersion as exc:
            method = incoming.message.get("method")
            raise expected(errors.UnsupportedVersion(
                safe_text(method), safe_text(exc.version), self._available())) from None

    def _available(self) -> str:
        target = getattr(self.endpoints[0], "target", None) if self.endpoints else None
        return str(getattr(target, "version", "?"))

    def _check_envelope(self, incoming: Any) -> None:
        message = incoming.message
        if not isinstance(message, dict):
            raise exceptions.InvalidInput("message", "must be an object")
        method = message.get("method")
        if not isinstance(method, str) or method not in self._methods:
            LOG.debug("No such RPC method %s", safe_text(method))
            raise errors.NoSuchMethod(safe_text(method))
        version = message.get("version", "1.0")
        if not isinstance(version, str) or len(version) > 16:
            raise errors.UnsupportedVersion(method, safe_text(version), self._available())
        namespace = message.get("namespace")
        if namespace is not None and not isinstance(namespace, str):
            raise exceptions.InvalidInput("namespace", "must be a string or null")
        args = message.get("args")
        if args is None:
            message["args"] = args = {}
        if not isinstance(args, dict):
            raise exceptions.InvalidInput("arguments", "must be an object")
        allowed = self._methods[method]
        for name in args:
            if name not in allowed:
                raise exceptions.InvalidInput(
                    "arguments", f"{method} has no argument {safe_text(name)}")
        if not isinstance(incoming.ctxt, dict):
            incoming.ctxt = {}
        timeout = getattr(incoming, "client_timeout", None)
        if timeout is not None and not (
                isinstance(timeout, int | float) and not isinstance(timeout, bool)
                and 0 < timeout <= MAX_CLIENT_TIMEOUT):
            incoming.client_timeout = None
