"""A real compute-agent process (fake driver, SQLite) over real RabbitMQ,
driven through ComputeAPI, under both concurrency backends.

Each backend gets its own agent subprocess, exchange, topic and database.
"""

from __future__ import annotations

import time
import uuid as uuidlib

import pytest

from compute_agent import exceptions
from compute_agent.rpc.transport import RPC_API_VERSION
from tests.functional.agent_stack import AgentStack
from tests.functional.harness import RABBIT, AgentProcess

SETTLE_S = 20  # bound for an operation to settle; never a speed assertion

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", params=["threading", "eventlet"])
def env(request, tmp_path_factory):
    backend = request.param
    with AgentStack(tmp_path_factory.mktemp(f"agent-{backend}"), "func", driver="fake",
                    concurrency=backend, notifications=True, rpc_timeout=10,
                    options={"DEFAULT": {"report_interval": 1, "graceful_shutdown_timeout": 20,
                                         "sync_power_state_interval": None,
                                         "debug": None}}) as stack:
        stack.start()
        yield stack.agent, stack.api, stack.notes, stack.db


def spec(**kw):
    body = {"uuid": str(uuidlib.uuid4()), "name": "func-vm",
            "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1},
            "image": {"id": None, "url": None, "disk_format": None},
            "networks": [], "metadata": {}}
    body.update(kw)
    return body


def settle(api, host, uuid, want=None, timeout=SETTLE_S):
    """Wait for the instance to be in a stable state (``want`` if given: a
    cast may not have been consumed yet when this starts)."""
    deadline = time.monotonic() + timeout
    inst = None
    while True:
        try:
            inst = api.get_instance(host, uuid)
        except exceptions.InstanceNotFound:
            pass  # a build cast the agent has not consumed yet
        else:
            if inst["task_state"] is None and inst["vm_state"] != "building" and (
                    want is None or inst["vm_state"] == want):
                return inst
        assert time.monotonic() < deadline, f"instance did not settle: {inst}"
        time.sleep(0.1)


def wait_for_task(api, host, uuid, task_state):
    deadline = time.monotonic() + SETTLE_S
    while True:
        try:
            if api.get_instance(host, uuid)["task_state"] == task_state:
                return
        except exceptions.InstanceNotFound:
            pass
        assert time.monotonic() < deadline, f"{uuid} never reached {task_state}"
        time.sleep(0.05)


def test_ping_and_host_status(env):
    agent, api, notes, db = env
    pong = api.ping(agent.host)
    assert pong == {"host": agent.host, "version": RPC_API_VERSION, "backend": agent.backend,
                    "driver": "FakeDriver"}
    status = api.get_host_status(agent.host)
    assert status["resources"]["hypervisor_type"] == "fake"
    assert status["service"]["alive"] is True
    assert status["backend"] == agent.backend


def test_boot_lifecycle(env):
    agent, api, notes, db = env
    body = spec()
    assert api.build_instance(agent.host, body) is None  # a cast
    inst = settle(api, agent.host, body["uuid"])
    assert (inst["vm_state"], inst["power_state"], inst["host"]) == ("active", 1, agent.host)
    assert notes.wait_for("instance.create.end", body["uuid"]) is not None

    uuids = [i["uuid"] for i in api.list_instances(agent.host)]
    assert body["uuid"] in uuids

    api.stop_instance(agent.host, body["uuid"])
    inst = settle(api, agent.host, body["uuid"], want="stopped")
    assert inst["power_state"] == 4

    api.start_instance(agent.host, body["uuid"])
    assert settle(api, agent.host, body["uuid"], want="active")["power_state"] == 1

    for reboot_type in ("SOFT", "HARD"):
        # confirm=True: a call that returns once the agent accepted the reboot.
        accepted = api.reboot_instance(agent.host, body["uuid"], reboot_type, confirm=True)
        assert accepted["task_state"] == ("rebooting" if reboot_type == "SOFT"
                                          else "rebooting_hard")
        inst = settle(api, agent.host, body["uuid"])
        assert (inst["vm_state"], inst["power_state"]) == ("active", 1)

    api.terminate_instance(agent.host, body["uuid"])
    inst = settle(api, agent.host, body["uuid"], want="deleted")
    assert (inst["vm_state"], inst["power_state"]) == ("deleted", 0)
    assert body["uuid"] not in [i["uuid"] for i in api.list_instances(agent.host)]
    assert api.get_instance(None, body["uuid"])["vm_state"] == "deleted"
    assert [a["action"] for a in db.list_actions(body["uuid"])] == [
        "create", "stop", "start", "reboot", "reboot", "delete"]
    assert notes.wait_for("instance.delete.end", body["uuid"]) is not None


def test_unknown_instance_is_typed_not_found(env):
    agent, api, notes, db = env
    missing = str(uuidlib.uuid4())
    with pytest.raises(exceptions.InstanceNotFound) as info:
        api.get_instance(agent.host, missing)
    assert (info.value.code, info.value.params) == ("INSTANCE_NOT_FOUND", [missing])
    with pytest.raises(exceptions.InstanceNotFound):
        api.stop_instance(agent.host, missing, confirm=True)


def test_busy_instance_refuses(env):
    agent, api, notes, db = env
    body = spec(metadata={"fake:delay:spawn": "3"})
    api.build_instance(agent.host, body)
    wait_for_task(api, agent.host, body["uuid"], "spawning")
    with pytest.raises(exceptions.InstanceBusy) as info:
        api.reboot_instance(agent.host, body["uuid"], "HARD", confirm=True)
    assert info.value.params == [body["uuid"], "spawning"]
    # As a cast the refusal arrives as an error notification.
    api.terminate_instance(agent.host, body["uuid"])
    error = notes.wait_for("instance.delete.error", body["uuid"])
    assert error["fault"]["code"] == "INSTANCE_BUSY"
    assert settle(api, agent.host, body["uuid"])["vm_state"] == "active"


def test_wrong_state_and_bad_input(env):
    agent, api, notes, db = env
    body = spec()
    api.build_instance(agent.host, body)
    settle(api, agent.host, body["uuid"])
    with pytest.raises(exceptions.InstanceInvalidState) as info:
        api.start_instance(agent.host, body["uuid"], confirm=True)
    assert info.value.params[:3] == [body["uuid"], "vm_state", "active"]

    with pytest.raises(exceptions.InvalidInput) as info:
        api.build_instance(agent.host, spec(flavor={"vcpus": 1, "memory_mb": "lots",
                                                    "root_gb": 1}),
                           confirm=True, validate=False)
    assert info.value.params == ["flavor.memory_mb", "must be an integer"]
    with pytest.raises(exceptions.InvalidInput) as info:
        api.reboot_instance(agent.host, body["uuid"], "GENTLE", confirm=True)
    assert info.value.params[0] == "reboot_type"

    # A bad build sent as a cast leaves an error instance with the fault.
    bad = spec()
    del bad["name"]
    api.build_instance(agent.host, bad, validate=False)
    # The refused build's row turns error once its fault is written.
    inst = settle(api, agent.host, bad["uuid"])
    assert inst["vm_state"] == "error"
    assert inst["fault"]["code"] == "INVALID_INPUT"
    assert inst["fault"]["params"] == ["name", "is required"]
    assert api.ping(agent.host)["host"] == agent.host  # still serving


def test_dom0_error_ends_in_error_with_fault(env):
    agent, api, notes, db = env
    body = spec(metadata={"fake:fail:spawn": "HOST_NOT_ENOUGH_FREE_MEMORY,268435456,1024"})
    api.build_instance(agent.host, body)
    inst = settle(api, agent.host, body["uuid"])
    assert inst["vm_state"] == "error"
    assert inst["fault"]["code"] == "HOST_NOT_ENOUGH_FREE_MEMORY"
    assert inst["fault"]["params"] == ["268435456", "1024"]
    error = notes.wait_for("instance.create.error", body["uuid"])
    assert error["fault"]["code"] == "HOST_NOT_ENOUGH_FREE_MEMORY"


def test_log_lines_carry_request_id_and_instance(env):
    agent, api, notes, db = env
    body = spec()
    api.build_instance(agent.host, body)
    settle(api, agent.host, body["uuid"])
    request_id = db.list_actions(body["uuid"])[0]["request_id"]
    lines = [line for line in agent.log_file.read_text().splitlines() if request_id in line]
    assert lines, "no log line with the request id"
    assert all(f"[instance: {body['uuid']}]" in line for line in lines)


def raw_call(agent: AgentProcess, method: str, args: dict, version: str = "1.0") -> dict:
    """The wire protocol exactly as docs/rpc-api.md describes it, with kombu
    only: what a scheduler in another language would do."""
    import json

    import kombu

    url = RABBIT.replace("rabbit://", "amqp://")
    reply_q = "reply_" + uuidlib.uuid4().hex
    msg_id = uuidlib.uuid4().hex
    inner = {"method": method, "args": args, "version": version, "_msg_id": msg_id,
             "_reply_q": reply_q, "_timeout": None, "_unique_id": uuidlib.uuid4().hex,
             "_context_request_id": f"req-{uuidlib.uuid4()}"}
    with kombu.Connection(url) as conn:
        queue = kombu.Queue(reply_q, exchange=kombu.Exchange("", type="direct"),
                            routing_key=reply_q, auto_delete=True)
        received: list[dict] = []
        with conn.Consumer(queue, accept=["json"],
                           callbacks=[lambda body, m: (received.append(body), m.ack())]):
            conn.Producer().publish(
                {"oslo.version": "2.0", "oslo.message": json.dumps(inner)},
                exchange=kombu.Exchange(agent.exchange, type="topic", durable=False),
                routing_key=f"{agent.topic}.{agent.host}", serializer="json")
            deadline = time.monotonic() + SETTLE_S
            while not received:
                assert time.monotonic() < deadline, "no reply"
                try:
                    conn.drain_events(timeout=1)
                except TimeoutError:
                    pass
    reply = json.loads(received[0]["oslo.message"])
    assert reply["_msg_id"] == msg_id and reply["ending"] is True
    return reply


def test_wire_protocol_as_documented(env):
    import json

    agent, api, notes, db = env
    reply = raw_call(agent, "ping", {})
    assert reply["failure"] is None
    assert reply["result"]["host"] == agent.host

    missing = str(uuidlib.uuid4())
    reply = raw_call(agent, "get_instance", {"instance_uuid": missing})
    assert reply["result"] is None
    failure = json.loads(reply["failure"])
    assert (failure["class"], failure["module"]) == ("RemoteComputeError",
                                                     "compute_agent.rpc.errors")
    assert failure["kwargs"]["code"] == "INSTANCE_NOT_FOUND"
    assert failure["kwargs"]["params"] == [missing]
    assert failure["kwargs"]["type"] == "InstanceNotFound"

    body = spec()
    reply = raw_call(agent, "build_instance", {"instance": body})
    assert reply["result"]["task_state"] == "spawning"
    assert settle(api, agent.host, body["uuid"])["vm_state"] == "active"
    reply = raw_call(agent, "cancel_operation", {"instance_uuid": body["uuid"]}, "1.1")
    assert reply["result"] == {"instance_uuid": body["uuid"], "task_state": None,
                               "cancelled": False}
    reply = raw_call(agent, "ping", {}, version="9.0")
    failure = json.loads(reply["failure"])
    assert failure["class"] == "RemoteComputeError"
    assert (failure["kwargs"]["code"], failure["kwargs"]["params"][:2]) == (
        "UNSUPPORTED_VERSION", ["ping", "9.0"])
    # Unknown methods and attributes of the endpoint: structured, too.
    for method in ("format_disk", "manager", "target"):
        failure = json.loads(raw_call(agent, method, {})["failure"])
        assert (failure["class"], failure["kwargs"]["code"], failure["kwargs"]["params"]) == (
            "RemoteComputeError", "NO_SUCH_METHOD", [method])


# Last: it stops the agent of this backend.
def test_sigterm_finishes_in_flight_work_and_exits_zero(env):
    agent, api, notes, db = env
    body = spec(metadata={"fake:delay:spawn": "2"})
    api.build_instance(agent.host, body)
    wait_for_task(api, agent.host, body["uuid"], "spawning")
    assert agent.stop() == 0
    inst = db.get_instance(body["uuid"])
    assert (inst["vm_state"], inst["task_state"]) == ("active", None)
