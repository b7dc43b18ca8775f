"""The agent end to end (issue 3, "How it is shown to work"; issue 13: the
same suite against the libvirt driver): real ``compute-agent`` processes
on the XenAPI driver (real ``xapi-sim`` processes) and on the libvirt
driver (libvirt's in-process ``test:///`` hypervisor), real RabbitMQ,
databases on SQLite, PostgreSQL and MariaDB migrated by
``compute-agent-manage db sync``, both concurrency backends, driven
through ComputeAPI; the hypervisor checked against the database from
outside the agent (hypervisor.py: dom0 through a separate XenAPI session
over HTTP; libvirt through what the agent reports it holds).

Matrix (driver, database, backend): the full lifecycle (boot, stop, start,
reboot SOFT and HARD, delete) on three XenAPI and two libvirt agents, and
on the libvirt ones pause and suspend (XenAPI's: test_lifecycle_e2e.py); boot
and delete on the others; bad input, unknown instances and wrong states on
two agents of each driver. XenAPI only, because they need dom0 behaviour
only the simulator can be told to show (a slow task, an injected failure,
dom0 stopping): busy refusals, dom0 errors, dom0 unreachable.
"""

from __future__ import annotations

import hashlib
import uuid as uuidlib

import pytest

from compute_agent import exceptions
from tests.functional.harness import SETTLE_S, wait_until
from tests.functional.image_http import http_server

from .conftest import Stack
from .hypervisor import XenAPIView
from .stack import finished_actions, instance_spec, state_of, watch
from .walk import Walk, pause_and_suspend

pytestmark = pytest.mark.timeout(120)

FULL = [("xenapi", "sqlite", "threading"), ("xenapi", "postgresql", "eventlet"),
        ("xenapi", "mysql", "threading"),
        ("libvirt", "sqlite", "eventlet"), ("libvirt", "postgresql", "threading")]
SHORT = [("xenapi", "sqlite", "eventlet"), ("xenapi", "postgresql", "threading"),
         ("xenapi", "mysql", "eventlet"), ("libvirt", "mysql", "eventlet")]
ERRORS = [("xenapi", "sqlite", "threading"), ("xenapi", "mysql", "eventlet"),
          ("libvirt", "sqlite", "eventlet"), ("libvirt", "mysql", "eventlet")]
XENAPI_ERRORS = [c for c in ERRORS if c[0] == "xenapi"]


def combo_id(combo: tuple[str, ...]) -> str:
    return "-".join(combo)


def of_instance(stack: Stack, uuid: str):
    return lambda data: (data.get("host") == stack.host
                         and (data.get("instance") or {}).get("uuid") == uuid)


def boot(stack: Stack, name: str, **kw) -> tuple[dict, dict, list]:
    """Build (a cast) and wait until it settles: (spec, instance, states seen)."""
    body = instance_spec(name, **kw)
    assert stack.api.build_instance(stack.host, body) is None  # a cast
    inst, seen, _ = watch(stack.api, stack.host, body["uuid"])
    return body, inst, seen


def settle(stack: Stack, uuid: str, want: str | None = None) -> dict:
    return watch(stack.api, stack.host, uuid, until=lambda i: i["task_state"] is None and (
        i["vm_state"] == want if want else i["vm_state"] != "building"))[0]


# --------------------------------------------------------------------------- lifecycle


@pytest.mark.parametrize("combo", FULL, ids=combo_id)
def test_full_lifecycle(matrix, combo):
    stack = matrix[combo]
    api, host = stack.api, stack.host
    view = stack.hypervisor
    assert api.ping(host)["backend"] == combo[2]
    body, inst, seen = boot(stack, f"life-{stack.name}", memory_mb=384)
    uuid = body["uuid"]
    transitions = {"build": seen}
    # Nothing but the build in progress and the end state; the XenAPI
    # build is slow enough (VDI.create + VM.start take two 0.2 s dom0
    # tasks) for the poll to catch it in progress.
    assert seen[-1] == ("active", None, 1), seen
    assert set(seen) <= {("building", "spawning", 0), ("active", None, 1)}, seen
    if view.observable_progress:
        assert seen[0] == ("building", "spawning", 0), seen
    assert inst["host"] == host and inst["progress"] == 100 and inst["fault"] is None
    assert inst["launched_at"] and inst["launched_at"].endswith("Z")
    assert inst["flavor"] == body["flavor"] and inst["image"] == body["image"]
    boot_marker = view.check_built(uuid, body)

    steps = [
        ("stop", lambda: api.stop_instance(host, uuid, confirm=True),
         "powering_off", ("stopped", None, 4)),
        ("start", lambda: api.start_instance(host, uuid, confirm=True),
         "powering_on", ("active", None, 1)),
        ("reboot SOFT", lambda: api.reboot_instance(host, uuid, "SOFT", confirm=True),
         "rebooting", ("active", None, 1)),
        ("reboot HARD", lambda: api.reboot_instance(host, uuid, "HARD", confirm=True),
         "rebooting_hard", ("active", None, 1)),
    ]
    for label, request, task_state, target in steps:
        before = state_of(inst)
        accepted = request()
        # confirm=True: the call returns once the agent accepted the request.
        assert state_of(accepted) == (before[0], task_state, before[2]), (label, accepted)
        inst, seen, _ = watch(api, host, uuid)
        transitions[label] = seen if seen[0] == state_of(accepted) else [
            state_of(accepted)] + seen
        assert seen[-1] == target, (label, seen)
        assert set(seen) <= {state_of(accepted), target}, (label, seen)
        assert view.power_states()[uuid] == target[2], label
        if label.startswith("reboot"):
            boot_marker = view.check_rebooted(uuid, boot_marker)

    accepted = api.terminate_instance(host, uuid, confirm=True)
    assert accepted["task_state"] == "deleting"
    inst, seen, _ = watch(api, host, uuid)
    transitions["delete"] = seen
    assert seen[-1] == ("deleted", None, 0), seen
    # A terminated instance stays readable, out of the host's list.
    assert api.get_instance(host, uuid)["vm_state"] == "deleted"
    assert uuid not in [i["uuid"] for i in api.list_instances(host)]
    # An action's end is written before its instance settles: no waiting.
    assert [(a["action"], a["result"]) for a in stack.db.list_actions(uuid)] == [
        ("create", "success"), ("stop", "success"), ("start", "success"),
        ("reboot", "success"), ("reboot", "success"), ("delete", "success")]
    for event in ("create", "power_off", "power_on", "reboot", "delete"):
        stack.notes.wait_for(f"instance.{event}.end", of_instance(stack, uuid))
    counts = view.assert_matches_db(stack.db)
    print(f"\n[{stack.name}] transitions seen: {transitions}\n[{stack.name}] the hypervisor "
          f"agrees: {counts}")


@pytest.mark.parametrize("combo", SHORT, ids=combo_id)
def test_boot_and_delete(matrix, combo):
    stack = matrix[combo]
    api, host = stack.api, stack.host
    assert api.ping(host)["backend"] == combo[2]
    body, inst, seen = boot(stack, f"short-{stack.name}")
    assert seen[-1] == ("active", None, 1), seen
    assert set(seen) <= {("building", "spawning", 0), ("active", None, 1)}, seen
    assert stack.hypervisor.power_states() == {body["uuid"]: 1}
    assert [i["uuid"] for i in api.list_instances(host)] == [body["uuid"]]
    assert api.terminate_instance(host, body["uuid"]) is None  # a cast
    inst, seen, _ = watch(api, host, body["uuid"],
                          until=lambda i: i["vm_state"] == "deleted")
    assert set(seen) <= {("active", None, 1), ("active", "deleting", 1),
                         ("deleted", None, 0)}, seen
    assert inst["task_state"] is None
    assert api.list_instances(host) == []
    assert stack.hypervisor.assert_matches_db(stack.db) == {"deleted": 1}


# XenAPI walks these (with rescue and resize, which the libvirt driver does
# not do) in test_lifecycle_e2e.py; the same walk here on libvirt.
@pytest.mark.parametrize("combo", [c for c in FULL if c[0] == "libvirt"], ids=combo_id)
def test_pause_and_suspend(matrix, combo):
    stack = matrix[combo]
    body, inst, _ = boot(stack, f"pause-{stack.name}")
    w = Walk(stack, body["uuid"])
    pause_and_suspend(w)
    w.check_actions()
    stack.api.terminate_instance(stack.host, w.uuid)
    settle(stack, w.uuid, "deleted")
    stack.hypervisor.assert_matches_db(stack.db)


@pytest.mark.parametrize("combo", [("xenapi", "postgresql", "eventlet"),
                                   ("libvirt", "postgresql", "threading")], ids=combo_id)
def test_boot_from_an_http_image(matrix, combo, tmp_path):
    stack = matrix[combo]
    block = hashlib.sha256(stack.name.encode()).digest() * 2048  # 64 KiB
    (tmp_path / "disk.raw").write_bytes(block * 32)  # 2 MiB
    data = (tmp_path / "disk.raw").read_bytes()
    with http_server(tmp_path) as base:
        body, inst, _ = boot(stack, "from-image",
                             image={"id": None, "url": f"{base}/disk.raw", "disk_format": "raw"})
    assert (state_of(inst), inst["fault"]) == (("active", None, 1), None)
    assert stack.hypervisor.root_disk_head(body["uuid"], len(data) + 1)[:len(data)] == data
    stack.api.terminate_instance(stack.host, body["uuid"])
    settle(stack, body["uuid"], "deleted")
    stack.hypervisor.assert_matches_db(stack.db)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("combo", ERRORS, ids=combo_id)
def test_invalid_build_is_refused_with_field_and_reason(matrix, combo):
    stack = matrix[combo]
    api, host = stack.api, stack.host
    cases = [
        ({"name": None}, ["name", "is required"]),
        ({"flavor": None}, ["flavor", "is required"]),
        ({"flavor": {"vcpus": 1, "memory_mb": "lots", "root_gb": 1}},
         ["flavor.memory_mb", "must be an integer"]),
        ({"flavor": {"vcpus": True, "memory_mb": 256, "root_gb": 1}},
         ["flavor.vcpus", "must be an integer"]),
        ({"flavor": {"vcpus": 1, "root_gb": 1}}, ["flavor.memory_mb", "is required"]),
        ({"name": 42}, ["name", "must be a non-empty string"]),
        ({"image": {"id": None, "url": 5, "disk_format": None}},
         ["image.url", "must be a string or null"]),
        ({"networks": "private"}, ["networks", "must be a list"]),
        ({"colour": "blue"}, ["colour", "is not a known field"]),
    ]
    for change, params in cases:
        body = instance_spec("bad")
        for key, value in change.items():
            if value is None:
                del body[key]
            else:
                body[key] = value
        # The client checks first, without sending anything...
        with pytest.raises(exceptions.InvalidInput) as local:
            api.build_instance(host, body, confirm=True)
        assert local.value.params == params
        # ...and the agent checks again for callers that did not.
        with pytest.raises(exceptions.InvalidInput) as remote:
            api.build_instance(host, body, confirm=True, validate=False)
        assert (remote.value.code, remote.value.params) == ("INVALID_INPUT", params), change
    for value, params in [("not-a-uuid", ["uuid", "must be a UUID string"]),
                          (17, ["uuid", "must be a UUID string"])]:
        with pytest.raises(exceptions.InvalidInput) as remote:
            api.build_instance(host, instance_spec(uuid=value), confirm=True, validate=False)
        assert remote.value.params == params
    with pytest.raises(exceptions.InvalidInput) as remote:
        api.build_instance(host, ["not", "an", "object"], confirm=True, validate=False)
    assert remote.value.params == ["instance", "must be an object"]

    # A cast has nobody to answer: the agent leaves the instance in error
    # with the fault, and says so in an error notification.
    body = instance_spec("bad-cast")
    body["flavor"] = {"vcpus": 1, "memory_mb": 8, "root_gb": 1}
    assert api.build_instance(host, body, validate=False) is None
    # The fault is written before the row turns error, so the first read
    # that shows error must already carry it.
    inst, _, _ = watch(api, host, body["uuid"], until=lambda i: i["vm_state"] == "error")
    assert (inst["vm_state"], inst["task_state"], inst["power_state"]) == ("error", None, 0)
    assert inst["fault"] is not None
    assert inst["fault"]["code"] == "INVALID_INPUT"
    assert inst["fault"]["params"] == ["flavor.memory_mb", "must be at least 16"]
    note = stack.notes.wait_for("instance.create.error", lambda d: d.get("host") == host and (
        d.get("fault") or {}).get("params") == ["flavor.memory_mb", "must be at least 16"])
    assert note["fault"]["code"] == "INVALID_INPUT"
    # Other requests' arguments are checked too.
    live, _, _ = boot(stack, "args")
    with pytest.raises(exceptions.InvalidInput) as err:
        api.reboot_instance(host, live["uuid"], "GENTLE", confirm=True)
    assert err.value.params == ["reboot_type", "must be SOFT or HARD"]
    with pytest.raises(exceptions.InvalidInput) as err:
        api.stop_instance(host, live["uuid"], clean="yes", confirm=True)
    assert err.value.params == ["clean", "must be a boolean"]
    with pytest.raises(exceptions.InvalidInput) as err:
        api.get_instance(host, "nope")
    assert err.value.params == ["instance_uuid", "must be a UUID string"]
    assert api.ping(host)["host"] == host  # still serving
    assert api.get_instance(host, live["uuid"])["vm_state"] == "active"  # untouched
    api.terminate_instance(host, live["uuid"])
    settle(stack, live["uuid"], "deleted")
    stack.hypervisor.assert_matches_db(stack.db)


@pytest.mark.parametrize("combo", ERRORS, ids=combo_id)
def test_unknown_instance_is_a_typed_not_found(matrix, combo):
    stack = matrix[combo]
    api, host = stack.api, stack.host
    missing = str(uuidlib.uuid4())
    with pytest.raises(exceptions.InstanceNotFound) as err:
        api.get_instance(host, missing)
    assert (err.value.code, err.value.params) == ("INSTANCE_NOT_FOUND", [missing])
    for request in (lambda: api.start_instance(host, missing, confirm=True),
                    lambda: api.stop_instance(host, missing, confirm=True),
                    lambda: api.reboot_instance(host, missing, "HARD", confirm=True),
                    lambda: api.terminate_instance(host, missing, confirm=True)):
        with pytest.raises(exceptions.InstanceNotFound) as err:
            request()
        assert err.value.params == [missing]
    # As a cast the refusal is an error notification.
    assert api.stop_instance(host, missing) is None
    note = stack.notes.wait_for("instance.power_off.error", lambda d: d.get("host") == host and (
        d.get("fault") or {}).get("params") == [missing])
    assert note["fault"]["code"] == "INSTANCE_NOT_FOUND"
    assert api.ping(host)["host"] == host


@pytest.mark.parametrize("combo", ERRORS, ids=combo_id)
def test_wrong_state_is_refused(matrix, combo):
    stack = matrix[combo]
    api, host = stack.api, stack.host
    body, inst, _ = boot(stack, "states")
    uuid = body["uuid"]
    with pytest.raises(exceptions.InstanceInvalidState) as err:
        api.start_instance(host, uuid, confirm=True)
    assert err.value.params == [uuid, "vm_state", "active", "stopped"]
    api.stop_instance(host, uuid)
    settle(stack, uuid, "stopped")
    with pytest.raises(exceptions.InstanceInvalidState) as err:
        api.reboot_instance(host, uuid, "SOFT", confirm=True)
    assert err.value.params == [uuid, "vm_state", "stopped", "active"]
    with pytest.raises(exceptions.InstanceInvalidState) as err:
        api.stop_instance(host, uuid, confirm=True)
    assert err.value.params == [uuid, "vm_state", "stopped", "active|error"]
    assert stack.hypervisor.power_states()[uuid] == 4  # refusals changed nothing
    api.start_instance(host, uuid)
    assert state_of(settle(stack, uuid, "active")) == ("active", None, 1)
    # Every request has its action record; a refused one ends in error.
    assert finished_actions(stack.db, uuid, 6) == [
        ("create", "success"), ("start", "error"), ("stop", "success"), ("reboot", "error"),
        ("stop", "error"), ("start", "success")]
    api.terminate_instance(host, uuid)
    settle(stack, uuid, "deleted")
    stack.hypervisor.assert_matches_db(stack.db)


# XenAPI only: a start slow enough to be busy needs the simulator's task
# durations (libvirt's test:/// starts a domain inside the call).
@pytest.mark.parametrize("combo", XENAPI_ERRORS, ids=combo_id)
def test_busy_is_refused(matrix, combo):
    stack = matrix[combo]
    api, host = stack.api, stack.host
    body, inst, _ = boot(stack, "busy")
    uuid = body["uuid"]
    api.stop_instance(host, uuid)
    settle(stack, uuid, "stopped")

    # A slow start in dom0: everything else is refused while it runs.
    stack.sim.control.set_duration("VM.start_on", 2.0)
    try:
        accepted = api.start_instance(host, uuid, confirm=True)
        assert accepted["task_state"] == "powering_on"
        for request in (lambda: api.reboot_instance(host, uuid, "HARD", confirm=True),
                        lambda: api.stop_instance(host, uuid, confirm=True),
                        lambda: api.terminate_instance(host, uuid, confirm=True)):
            with pytest.raises(exceptions.InstanceBusy) as err:
                request()
            assert (err.value.code, err.value.params) == ("INSTANCE_BUSY",
                                                          [uuid, "powering_on"])
        assert api.terminate_instance(host, uuid) is None  # a cast: refused too
        note = stack.notes.wait_for("instance.delete.error", of_instance(stack, uuid))
        assert note["fault"]["code"] == "INSTANCE_BUSY"
        assert api.ping(host)["host"] == host  # serving while the start runs
    finally:
        stack.sim.control.clear()
    inst = settle(stack, uuid)
    assert state_of(inst) == ("active", None, 1)  # the start went on, nothing else ran
    assert finished_actions(stack.db, uuid, 7) == [
        ("create", "success"), ("stop", "success"), ("start", "success"), ("reboot", "error"),
        ("stop", "error"), ("delete", "error"), ("delete", "error")]
    api.terminate_instance(host, uuid)
    settle(stack, uuid, "deleted")
    stack.hypervisor.assert_matches_db(stack.db)


# XenAPI only: failures injected through the simulator's control API.
@pytest.mark.parametrize("combo", XENAPI_ERRORS, ids=combo_id)
def test_dom0_errors_end_with_their_fault(matrix, combo):
    stack = matrix[combo]
    api, host = stack.api, stack.host
    ctl = stack.sim.control
    try:
        # An error injected through the simulator's control API: the next
        # VM.start (the agent runs it as Async.VM.start_on, on its own host) fails.
        ctl.fail("Async.VM.start_on", ["HOST_NOT_ENOUGH_FREE_MEMORY", "402653184", "1024"])
        body, inst, _ = boot(stack, "no-memory")
        assert (inst["vm_state"], inst["power_state"]) == ("error", 0)
        assert inst["fault"]["code"] == "HOST_NOT_ENOUGH_FREE_MEMORY"
        assert inst["fault"]["params"] == ["402653184", "1024"]
        note = stack.notes.wait_for("instance.create.error", of_instance(stack, body["uuid"]))
        assert note["fault"]["params"] == ["402653184", "1024"]

        # The same failure of a start on a stopped instance: it settles as
        # dom0 shows it (halted -> stopped), with the fault recorded.
        other, inst, _ = boot(stack, "bad-power")
        api.stop_instance(host, other["uuid"])
        settle(stack, other["uuid"], "stopped")
        assert isinstance(stack.hypervisor, XenAPIView)
        vm_ref = stack.hypervisor.vm(other["uuid"])["ref"]
        ctl.fail("Async.VM.start_on", ["VM_BAD_POWER_STATE", vm_ref, "halted", "running"])
        api.start_instance(host, other["uuid"])
        inst = watch(api, host, other["uuid"], until=lambda i: i["fault"] is not None and
                     i["task_state"] is None)[0]
        assert state_of(inst) == ("stopped", None, 4)
        assert inst["fault"]["code"] == "VM_BAD_POWER_STATE"
        assert inst["fault"]["params"] == [vm_ref, "halted", "running"]
    finally:
        ctl.clear()

    # A real dom0 refusal, no injection: more memory than the host has.
    with stack.sim.session() as xenapi:
        master = xenapi.pool.get_master(xenapi.pool.get_all()[0])
        free = int(xenapi.host.compute_free_memory(master))
    huge, inst, _ = boot(stack, "huge", memory_mb=4 * 1024 * 1024)  # 4 TiB
    assert (inst["vm_state"], inst["power_state"]) == ("error", 0)
    assert inst["fault"]["code"] == "HOST_NOT_ENOUGH_FREE_MEMORY"
    needed, available = (int(p) for p in inst["fault"]["params"])
    assert needed >= 4 * 1024**4 and available <= free
    assert "HOST_NOT_ENOUGH_FREE_MEMORY" in inst["fault"]["message"]

    # The agent serves on: the stopped instance starts now.
    api.start_instance(host, other["uuid"])
    assert state_of(settle(stack, other["uuid"], "active")) == ("active", None, 1)
    stack.hypervisor.assert_matches_db(stack.db)
    for uuid in (body["uuid"], other["uuid"], huge["uuid"]):
        api.terminate_instance(host, uuid)
    for uuid in (body["uuid"], other["uuid"], huge["uuid"]):
        settle(stack, uuid, "deleted")
    stack.hypervisor.assert_matches_db(stack.db)


# --------------------------------------------------------------------------- dom0 unreachable


@pytest.mark.parametrize("combo", [("sqlite", "threading"), ("postgresql", "eventlet")],
                         ids=combo_id)
def test_dom0_unreachable_then_back(make_stack, combo):
    stack = make_stack(*combo)
    api, host, sim = stack.api, stack.host, stack.sim
    running, _, _ = boot(stack, "running")
    halted, _, _ = boot(stack, "halted")
    api.stop_instance(host, halted["uuid"])
    settle(stack, halted["uuid"], "stopped")

    sim.stop()  # dom0 gone: connections refused
    assert api.ping(host)["host"] == host
    status = api.get_host_status(host)
    assert status["hypervisor_available"] is False
    assert status["error"]["code"] == "HYPERVISOR_UNAVAILABLE"
    assert status["error"]["params"][0].startswith(sim.url)

    # Each operation ends at once with a structured fault; the instance
    # keeps the state it had (dom0 could not have changed it).
    api.stop_instance(host, running["uuid"], confirm=True)
    inst = settle(stack, running["uuid"])
    assert state_of(inst) == ("active", None, 1)
    assert inst["fault"]["code"] == "HYPERVISOR_UNAVAILABLE"
    assert inst["fault"]["params"][0].startswith(sim.url)
    assert "password" not in inst["fault"]["message"]
    api.start_instance(host, halted["uuid"], confirm=True)
    inst = settle(stack, halted["uuid"])
    assert state_of(inst) == ("stopped", None, 4)
    assert inst["fault"]["code"] == "HYPERVISOR_UNAVAILABLE"
    # A build cannot even begin: error, with the fault.
    lost, inst, _ = boot(stack, "lost")
    assert state_of(inst) == ("error", None, 0)
    assert inst["fault"]["code"] == "HYPERVISOR_UNAVAILABLE"
    assert api.ping(host)["host"] == host
    assert len(api.list_instances(host)) == 3

    sim.start()  # dom0 back on the same address, with its VMs
    wait_until(lambda: api.get_host_status(host)["hypervisor_available"], SETTLE_S,
               "the agent to reach dom0 again", 0.2)
    api.stop_instance(host, running["uuid"])
    assert state_of(settle(stack, running["uuid"], "stopped")) == ("stopped", None, 4)
    api.start_instance(host, halted["uuid"])
    assert state_of(settle(stack, halted["uuid"], "active")) == ("active", None, 1)
    api.terminate_instance(host, lost["uuid"])
    assert settle(stack, lost["uuid"], "deleted")["power_state"] == 0
    fresh, inst, _ = boot(stack, "fresh")
    assert state_of(inst) == ("active", None, 1)
    counts = stack.hypervisor.assert_matches_db(stack.db)
    assert counts == {"stopped": 1, "active": 2, "deleted": 1}
    # The agent still stops cleanly (graceful SIGTERM, exit status 0).
    assert stack.agent.stop() == 0
