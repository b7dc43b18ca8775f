"""Structured errors survive the trip through oslo.messaging's failure format."""

from __future__ import annotations

import json
import sys

import oslo_messaging
import pytest
from oslo_messaging._drivers import common as wire

from compute_agent import exceptions
from compute_agent.rpc import errors


def roundtrip(exc: BaseException) -> BaseException:
    """Serialize as the agent's reply does, rebuild as the caller's transport does."""
    remote = errors.to_remote(exc)
    try:
        raise remote
    except errors.RemoteComputeError:
        data = wire.serialize_remote_exception(sys.exc_info())
    rebuilt = wire.deserialize_remote_exception(data, errors.ALLOWED_EXMODS)
    return errors.to_typed(rebuilt)


@pytest.mark.parametrize("exc, cls", [
    (exceptions.InstanceNotFound("u-1"), exceptions.InstanceNotFound),
    (exceptions.InstanceBusy("u-1", "spawning"), exceptions.InstanceBusy),
    (exceptions.InvalidInput("flavor.vcpus", "must be an integer"), exceptions.InvalidInput),
    (exceptions.HypervisorError("OpaqueRef:1", "halted", "running", code="VM_BAD_POWER_STATE"),
     exceptions.HypervisorError),
    (exceptions.ComputeAgentError("a", code="SOMETHING_NEW", message="new"),
     exceptions.ComputeAgentError),
])
def test_typed_error_round_trip(exc, cls):
    back = roundtrip(exc)
    assert type(back) is cls
    assert (back.code, back.params, back.message) == (exc.code, exc.params, exc.message)


def test_unexpected_exception_becomes_internal_error():
    back = roundtrip(KeyError("boom"))
    assert back.code == "INTERNAL_ERROR"
    assert back.params == ["-"]


def test_unexpected_exception_text_never_reaches_the_caller():
    secret = "SELECT password FROM /etc/secret"
    remote = errors.to_remote(RuntimeError(secret), "req-1")
    assert remote.code == "INTERNAL_ERROR" and remote.params == ["req-1"]
    assert secret not in str(remote.kwargs) and "RuntimeError" not in str(remote.kwargs)


def test_wire_shape_for_other_languages():
    remote = errors.to_remote(exceptions.InstanceBusy("u-1", "rebooting"))
    try:
        raise remote
    except errors.RemoteComputeError:
        data = json.loads(wire.serialize_remote_exception(sys.exc_info()))
    assert data["class"] == "RemoteComputeError"
    assert data["module"] == "compute_agent.rpc.errors"
    assert data["args"] == []
    assert data["kwargs"] == {
        "code": "INSTANCE_BUSY", "params": ["u-1", "rebooting"],
        "message": "Instance u-1 is busy with task rebooting", "type": "InstanceBusy"}


def test_transport_failures_are_typed():
    timeout = errors.to_typed(oslo_messaging.MessagingTimeout("x"), "compute.h", "ping", 5)
    assert (timeout.code, timeout.params) == ("RPC_TIMEOUT", ["compute.h", "ping", "5"])
    nsm = errors.to_typed(oslo_messaging.RemoteError("NoSuchMethod", "no method nope"))
    assert nsm.code == "NO_SUCH_METHOD"
    other = ValueError("x")
    assert errors.to_typed(other) is other
