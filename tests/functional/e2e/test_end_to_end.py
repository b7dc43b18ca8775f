"""The agent end to end (issue 3, "How it is shown to work"): real
``xapi-sim`` and ``compute-agent`` processes (XenAPI driver), real RabbitMQ,
databases on SQLite, PostgreSQL and MariaDB migrated by ``compute-agent-manage
db sync``, both concurrency backends, driven through ComputeAPI; dom0 checked
against the database through a separate XenAPI session over HTTP.

Matrix: the full lifecycle (boot, stop, start, reboot SOFT and HARD, delete)
on sqlite x threading, postgresql x eventlet and mysql x threading; boot and
delete on the three other pairs; the error paths on two pairs of different
database and backend; dom0 unreachable on an agent with a simulator of its
own, under each backend.
"""

from __future__ import annotations

import uuid as uuidlib

import pytest

from compute_agent import exceptions
from tests.functional.harness import SETTLE_S, wait_until

from .conftest import Stack
from .stack import assert_dom0_matches_db, finished_actions, instance_spec, state_of, watch

pytestmark = pytest.mark.timeout(120)

FULL = [("sqlite", "threading"), ("postgresql", "eventlet"), ("mysql", "threading")]
SHORT = [("sqlite", "eventlet"), ("postgresql", "threading"), ("mysql", "eventlet")]
ERRORS = [("sqlite", "threading"), ("mysql", "eventlet")]
MiB, GiB = 1024**2, 1024**3


def combo_id(combo: tuple[str, str]) -> str:
    return "-".join(combo)


def dom0_vm(stack: Stack, uuid: str) -> dict:
    """The one VM dom0 has for the instance (by the agent's marks)."""
    with stack.sim.session() as xenapi:
        found = [dict(rec, ref=ref) for ref, rec in xenapi.VM.get_all_records().items()
                 if rec["other_config"].get("compute_agent_instance_uuid") == uuid]
        assert len(found) == 1, f"dom0 has {len(found)} VMs for {uuid}"
        vm = found[0]
        vm["vbd_records"] = [xenapi.VBD.get_record(b) for b in vm["VBDs"]]
        vm["vdi_records"] = [xenapi.VDI.get_record(b["VDI"]) for b in vm["vbd_records"]]
        vm["vif_records"] = [xenapi.VIF.get_record(v) for v in vm["VIFs"]]
    return vm


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
    assert api.ping(host)["backend"] == combo[1]
    body, inst, seen = boot(stack, f"life-{stack.name}", memory_mb=384)
    uuid = body["uuid"]
    transitions = {"build": seen}
    # The poll catches the build in progress (VDI.create + VM.start take
    # two 0.2 s dom0 tasks) and nothing but that and the end state.
    assert seen[0] == ("building", "spawning", 0), seen
    assert seen[-1] == ("active", None, 1), seen
    assert set(seen) == {("building", "spawning", 0), ("active", None, 1)}, seen
    assert inst["host"] == host and inst["progress"] == 100 and inst["fault"] is None
    assert inst["launched_at"] and inst["launched_at"].endswith("Z")
    assert inst["flavor"] == body["flavor"] and inst["image"] == body["image"]
    vm = dom0_vm(stack, uuid)
    assert vm["power_state"] == "Running" and vm["name_label"] == body["name"]
    assert vm["other_config"]["compute_agent_host"] == host
    assert int(vm["memory_static_max"]) == 384 * MiB and int(vm["VCPUs_at_startup"]) == 1
    assert [int(d["virtual_size"]) for d in vm["vdi_records"]] == [GiB]
    assert [b["bootable"] for b in vm["vbd_records"]] == [True]
    assert len(vm["vif_records"]) == 1  # device 0 on the management network
    domid = vm["domid"]

    steps = [
        ("stop", lambda: api.stop_instance(host, uuid, confirm=True),
         "powering_off", ("stopped", None, 4), "Halted"),
        ("start", lambda: api.start_instance(host, uuid, confirm=True),
         "powering_on", ("active", None, 1), "Running"),
        ("reboot SOFT", lambda: api.reboot_instance(host, uuid, "SOFT", confirm=True),
         "rebooting", ("active", None, 1), "Running"),
        ("reboot HARD", lambda: api.reboot_instance(host, uuid, "HARD", confirm=True),
         "rebooting_hard", ("active", None, 1), "Running"),
    ]
    for label, request, task_state, target, xapi_power in steps:
        before = state_of(inst)
        accepted = request()
        # confirm=True: the call returns once the agent accepted the request.
        assert state_of(accepted) == (before[0], task_state, before[2]), (label, accepted)
        inst, seen, _ = watch(api, host, uuid)
        transitions[label] = seen if seen[0] == state_of(accepted) else [
            state_of(accepted)] + seen
        assert seen[-1] == target, (label, seen)
        assert set(seen) <= {state_of(accepted), target}, (label, seen)
        vm = dom0_vm(stack, uuid)
        assert vm["power_state"] == xapi_power, label
        if label.startswith("reboot"):
            # dom0 really rebooted the guest: a new domain, reason recorded.
            assert vm["domid"] != domid, label
            assert vm["other_config"]["last_shutdown_reason"] == "rebooted"
        domid = vm["domid"]

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
    counts = assert_dom0_matches_db(stack.sim, stack.db, host)
    print(f"\n[{stack.name}] transitions seen: {transitions}\n[{stack.name}] dom0 agrees: "
          f"{counts}")


@pytest.mark.parametrize("combo", SHORT, ids=combo_id)
def test_boot_and_delete(matrix, combo):
    stack = matrix[combo]
    api, host = stack.api, stack.host
    assert api.ping(host)["backend"] == combo[1]
    body, inst, seen = boot(stack, f"short-{stack.name}")
    assert seen[0] == ("building", "spawning", 0) and seen[-1] == ("active", None, 1), seen
    assert dom0_vm(stack, body["uuid"])["power_state"] == "Running"
    assert [i["uuid"] for i in api.list_instances(host)] == [body["uuid"]]
    assert api.terminate_instance(host, body["uuid"]) is None  # a cast
    inst, seen, _ = watch(api, host, body["uuid"],
                          until=lambda i: i["vm_state"] == "deleted")
    assert set(seen) <= {("active", None, 1), ("active", "deleting", 1),
                         ("deleted", None, 0)}, seen
    assert inst["task_state"] is None
    assert api.list_instances(host) == []
    assert assert_dom0_matches_db(stack.sim, stack.db, host) == {"deleted": 1}


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
    assert_dom0_matches_db(stack.sim, stack.db, host)


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
def test_wrong_state_and_busy_are_refused(matrix, combo):
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
    # Every request has its action record; a refused one ends in error.
    assert finished_actions(stack.db, uuid, 10) == [
        ("create", "success"), ("start", "error"), ("stop", "success"), ("reboot", "error"),
        ("stop", "error"), ("start", "success"), ("reboot", "error"), ("stop", "error"),
        ("delete", "error"), ("delete", "error")]
    api.terminate_instance(host, uuid)
    settle(stack, uuid, "deleted")
    assert_dom0_matches_db(stack.sim, stack.db, host)


@pytest.mark.parametrize("combo", ERRORS, ids=combo_id)
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
        vm_ref = dom0_vm(stack, other["uuid"])["ref"]
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
    assert_dom0_matches_db(stack.sim, stack.db, host)
    for uuid in (body["uuid"], other["uuid"], huge["uuid"]):
        api.terminate_instance(host, uuid)
    for uuid in (body["uuid"], other["uuid"], huge["uuid"]):
        settle(stack, uuid, "deleted")
    assert_dom0_matches_db(stack.sim, stack.db, host)


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
    counts = assert_dom0_matches_db(sim, stack.db, host)
    assert counts == {"stopped": 1, "active": 2, "deleted": 1}
    # The agent still stops cleanly (graceful SIGTERM, exit status 0).
    assert stack.agent.stop() == 0
