"""Server and ComputeAPI client over oslo.messaging's in-process fake:// transport."""

from __future__ import annotations

import threading
import uuid as uuidlib

import pytest

from compute_agent import exceptions
from compute_agent.compute import states
from compute_agent.context import new_context
from compute_agent.rpc import errors
from compute_agent.rpc.rpcapi import ComputeAPI
from compute_agent.rpc.transport import RPC_API_VERSION
from tests.unit.conftest import RPC_HOST as HOST


def spec(**kw):
    body = {"uuid": str(uuidlib.uuid4()), "name": "vm",
            "flavor": {"vcpus": 1, "memory_mb": 128, "root_gb": 1},
            "image": {"id": None, "url": None, "disk_format": None}}
    body.update(kw)
    return body


def test_ping(rpc_env):
    api, *_ = rpc_env
    assert api.ping(HOST) == {"host": HOST, "version": RPC_API_VERSION, "backend": "threading",
                              "driver": "FakeDriver"}


def test_build_cast_then_lifecycle(rpc_env, agent_db):
    api, svc, driver, notes = rpc_env
    body = spec()
    ctxt = new_context()
    assert api.build_instance(HOST, body, ctxt=ctxt) is None
    assert notes.wait_for("instance.create.end")
    inst = api.get_instance(HOST, body["uuid"])
    assert (inst["vm_state"], inst["power_state"]) == (states.ACTIVE, 1)
    # The request id travels with the message into the action record.
    assert agent_db.list_actions(body["uuid"])[0]["request_id"] == ctxt.request_id

    assert api.stop_instance(HOST, body["uuid"], confirm=True)["task_state"] == "powering_off"
    assert notes.wait_for("instance.power_off.end")
    assert api.get_instance(None, body["uuid"])["vm_state"] == states.STOPPED
    assert [i["uuid"] for i in api.list_instances(HOST)] == [body["uuid"]]
    api.terminate_instance(HOST, body["uuid"])
    assert notes.wait_for("instance.delete.end")
    assert api.get_instance(HOST, body["uuid"])["vm_state"] == states.DELETED
    assert api.list_instances(HOST) == []
    payload = [p for _, e, p in notes.seen if e == "instance.create.start"][0]
    assert payload["compute_agent_object.name"] == "InstanceActionPayload"
    assert payload["compute_agent_object.version"] == "1.0"


def test_typed_errors_reach_the_caller(rpc_env):
    api, svc, driver, notes = rpc_env
    missing = str(uuidlib.uuid4())
    with pytest.raises(exceptions.InstanceNotFound) as info:
        api.get_instance(HOST, missing)
    assert info.value.params == [missing]

    with pytest.raises(exceptions.InvalidInput) as info:
        api.build_instance(HOST, spec(flavor={"vcpus": "x", "memory_mb": 1, "root_gb": 1}),
                           confirm=True, validate=False)
    assert info.value.params == ["flavor.vcpus", "must be an integer"]

    gate = driver.hold("spawn")
    body = spec()
    api.build_instance(HOST, body)
    assert gate.wait_entered()
    with pytest.raises(exceptions.InstanceBusy) as info:
        api.reboot_instance(HOST, body["uuid"], "HARD", confirm=True)
    assert info.value.params == [body["uuid"], "spawning"]
    # The same refusal sent as a cast is reported as an error notification.
    api.stop_instance(HOST, body["uuid"])
    assert notes.wait_for("instance.power_off.error")
    error = [p for _, e, p in notes.seen if e == "instance.power_off.error"][0]
    assert error["compute_agent_object.data"]["fault"]["code"] == "INSTANCE_BUSY"
    gate.release()
    assert notes.wait_for("instance.create.end")


def test_client_side_validation_raises_before_sending(rpc_env):
    api, *_ = rpc_env
    with pytest.raises(exceptions.InvalidInput) as info:
        api.build_instance(HOST, {"uuid": "nope"})
    assert info.value.params[0] == "name"


def test_bad_arguments_and_unknown_method(rpc_env):
    api, *_ = rpc_env
    cctxt = api.client.prepare(server=HOST)
    with pytest.raises(errors.RemoteComputeError) as raw:
        cctxt.call(new_context(), "get_instance", uuid="x")
    assert errors.to_typed(raw.value).code == "INVALID_INPUT"
    # fake:// hands back the dispatcher's exception, RabbitMQ a RemoteError:
    # to_typed turns both into the same structured error.
    with pytest.raises(Exception) as raw:
        cctxt.call(new_context(), "format_disk")
    assert errors.to_typed(raw.value).code == "NO_SUCH_METHOD"
    with pytest.raises(Exception) as raw:
        cctxt.call(new_context(), "_refused")  # private methods are not exposed
    assert errors.to_typed(raw.value).code == "NO_SUCH_METHOD"
    # Attributes of the endpoint other than its documented methods neither.
    for attribute in ("manager", "target", "__init__"):
        with pytest.raises(Exception) as raw:
            cctxt.call(new_context(), attribute)
        assert errors.to_typed(raw.value).code == "NO_SUCH_METHOD"
    # An argument the method does not declare is
    # INVALID_INPUT, not a TypeError inside oslo.messaging.
    for name in ("colour", "instance"):
        with pytest.raises(errors.RemoteComputeError) as raw:
            cctxt.call(new_context(), "ping", **{name: 1})
        assert errors.to_typed(raw.value).params[0] == "arguments"


def test_hostile_context_never_reaches_log_lines(rpc_env, caplog):
    api, *_ = rpc_env
    cctxt = api.client.prepare(server=HOST)
    forged = {"request_id": "req-1\nERROR forged", "user_id": "u\nforged",
              "global_request_id": "x" * 100_000}
    with caplog.at_level("DEBUG"):
        assert cctxt.call(forged, "ping")["host"] == HOST
        with pytest.raises(errors.RemoteComputeError):
            cctxt.call(forged, "get_instance",
                       instance_uuid="0B6C2F3E-0A46-4C55-9C8E-3D0C5F1E2A10\nforged")
    for record in caplog.records:
        assert "forged" not in record.getMessage()
        assert "\n" not in record.getMessage()


def test_version_cap(rpc_env, agent_conf):
    api, svc, driver, notes = rpc_env
    body = spec()
    api.build_instance(HOST, body)
    assert notes.wait_for("instance.create.end")
    assert api.cancel_operation(HOST, body["uuid"])["cancelled"] is False
    old = ComputeAPI(agent_conf, rpc_transport=api.transport, version_cap="1.0", timeout=10)
    assert old.ping(HOST)["host"] == HOST
    with pytest.raises(errors.UnsupportedVersion) as info:
        old.cancel_operation(HOST, body["uuid"])
    assert info.value.params == ["cancel_operation", "1.1", "1.0"]
    capped = ComputeAPI(agent_conf, rpc_transport=api.transport, version_cap="1.1", timeout=10)
    for call in (lambda: capped.pause_instance(HOST, body["uuid"]),
                 lambda: capped.resize_instance(HOST, body["uuid"], {
                     "vcpus": 2, "memory_mb": 512, "root_gb": 2}, confirm=True),
                 lambda: capped.get_instance_actions(HOST, body["uuid"]),
                 lambda: capped.list_instances(HOST, limit=5)):
        with pytest.raises(errors.UnsupportedVersion) as info:
            call()
        assert info.value.params[1:] == ["1.2", "1.1"]
    # Nothing was sent: the instance is as it was.
    assert api.get_instance(HOST, body["uuid"])["vm_state"] == "active"
    assert [a["action"] for a in api.get_instance_actions(HOST, body["uuid"])] == ["create"]


def test_host_status(rpc_env):
    api, *_ = rpc_env
    status = api.get_host_status(HOST)
    assert status["host"] == HOST
    assert status["service"]["alive"] is True
    assert status["resources"]["hypervisor_type"] == "fake"


def test_graceful_stop_finishes_running_operation(rpc_env, agent_db):
    api, svc, driver, notes = rpc_env
    gate = driver.hold("spawn")
    body = spec()
    api.build_instance(HOST, body)
    assert gate.wait_entered()
    threading.Timer(0.3, gate.release).start()
    svc.stop()
    assert agent_db.get_instance(body["uuid"])["vm_state"] == states.ACTIVE
