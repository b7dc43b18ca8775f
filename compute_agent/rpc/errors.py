"""Structured errors across RPC.

On the agent side every exception leaving an RPC endpoint becomes a
:class:`RemoteComputeError`, which oslo.messaging serializes into the reply's
``failure`` as ``{"class": "RemoteComputeError", "module":
"compute_agent.rpc.errors", "kwargs": {"code", "params", "message", "type"}}``.
On the caller side the transport (allowed to rebuild exceptions from this
module) re-creates it, and :func:`to_typed` turns it back into the same
:class:`compute_agent.exceptions.ComputeAgentError` subclass with the same
code and params, which is what ComputeAPI raises.
"""

from __future__ import annotations

import logging
from typing import Any

import oslo_messaging
from oslo_messaging.rpc import dispatcher

from compute_agent import exceptions

LOG = logging.getLogger(__name__)

# The module the caller's transport must be allowed to rebuild exceptions from.
ALLOWED_EXMODS = [__name__]


class RemoteComputeError(Exception):
    """Wire form of a ComputeAgentError. Built only from keyword arguments so
    that oslo.messaging can re-create it on the caller's side."""

    def __init__(
        self,
        code: str = "INTERNAL_ERROR",
        params: list[Any] | None = None,
        message: str = "",
        type: str | None = None,  # noqa: A002 - the wire key is "type"
    ):
        super().__init__()
        self.code = code
        self.params = [str(p) for p in (params or [])]
        self.message = message
        self.type = type
        # oslo.messaging sends ``kwargs`` as the exception's constructor kwargs.
        self.kwargs = {"code": code, "params": self.params, "message": message, "type": type}

    def __str__(self) -> str:
        return f"{self.code} {self.params}: {self.message}"


class RPCTimeout(exceptions.ComputeAgentError):
    """No reply within the RPC timeout. params: target (topic.server), method,
    timeout seconds."""

    code = "RPC_TIMEOUT"
    msg_fmt = "No reply from {0} to {1} within {2} s"


class UnsupportedVersion(exceptions.ComputeAgentError):
    """The call needs a newer RPC version than the cap or the agent allows.
    params: method, version needed, version available."""

    code = "UNSUPPORTED_VERSION"
    msg_fmt = "{0} needs RPC API version {1}; only {2} is available"


class RemoteFailure(exceptions.ComputeAgentError):
    """The agent failed outside the compute API (e.g. oslo.messaging's
    dispatcher refused the message). params: exception class, message."""

    code = "REMOTE_ERROR"
    msg_fmt = "Remote error {0}: {1}"


class NoSuchMethod(exceptions.ComputeAgentError):
    """The agent has no RPC method of that name (escaped, at most 64
    characters). params: method."""

    code = "NO_SUCH_METHOD"
    msg_fmt = "The compute agent has no RPC method {0}"


_LOCAL_TYPES: dict[str, type[exceptions.ComputeAgentError]] = {
    c.__name__: c for c in (RPCTimeout, UnsupportedVersion, RemoteFailure, NoSuchMethod)
}


def to_remote(exc: BaseException, request_id: str | None = None) -> RemoteComputeError:
    """The wire form of any exception raised by an endpoint. An unexpected
    exception becomes INTERNAL_ERROR [request id] without its text (SQL,
    paths, secrets): the agent's log has it under that request id."""
    if not isinstance(exc, exceptions.ComputeAgentError):
        exc = exceptions.internal_error(request_id)
    return RemoteComputeError(exc.code, exc.params, exc.message, type(exc).__name__)


def _class_for(type_name: str | None, code: str) -> type[exceptions.ComputeAgentError]:
    if type_name:
        cls = getattr(exceptions, type_name, None) or _LOCAL_TYPES.get(type_name)
        if isinstance(cls, type) and issubclass(cls, exceptions.ComputeAgentError):
            return cls
    by_code = exceptions._BY_CODE.get(code)  # noqa: SLF001 - the registry of codes
    if by_code is not None:
        return by_code
    return exceptions.ComputeAgentError


def from_fields(
    code: str, params: list[Any], message: str | None, type_name: str | None = None
) -> exceptions.ComputeAgentError:
    """Re-create the typed error with exactly this code, params and message."""
    cls = _class_for(type_name, code)
    err = cls.__new__(cls)
    exceptions.ComputeAgentError.__init__(err, *params, message=message or None, code=code)
    return err


def to_typed(exc: BaseException, target: str = "", method: str = "",
             timeout: float | None = None) -> BaseException:
    """Translate what an oslo.messaging call raised into a ComputeAgentError.
    Exceptions that are not RPC failures are returned unchanged."""
    if isinstance(exc, RemoteComputeError):
        return from_fields(exc.code, exc.params, exc.message, exc.type)
    if isinstance(exc, oslo_messaging.MessagingTimeout):
        return RPCTimeout(target, method, timeout if timeout is not None else "?")
    if isinstance(exc, (dispatcher.NoSuchMethod, dispatcher.UnsupportedVersion)):
        # In-process transports (fake://) hand the dispatcher's own exception back.
        name = type(exc).__name__
        return RemoteFailure(name, str(exc), code="NO_SUCH_METHOD" if name == "NoSuchMethod"
                             else "UNSUPPORTED_VERSION")
    if isinstance(exc, oslo_messaging.RemoteError):
        if exc.exc_type in ("UnsupportedVersion", "NoSuchMethod"):
            return RemoteFailure(exc.exc_type, exc.value, code="UNSUPPORTED_VERSION"
                                 if exc.exc_type == "UnsupportedVersion" else "NO_SUCH_METHOD")
        return RemoteFailure(exc.exc_type, exc.value)
    return exc
