"""The XenAPI driver's pool view, live migration and host maintenance
against real simulators over HTTP: a pool of two hosts, each with an
agent's driver logged in through its own host's address, and a standalone
host in another pool. Every path of driver/xenapi/migration.py: shared
storage (VM.pool_migrate), the source host's local SR inside the pool
(VM.migrate_send to the member) and another pool (VM.migrate_send across)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from xenapi_fixtures import make_instance, op_for

from compute_agent import exceptions
from compute_agent.driver.xenapi import ownership
from tests.functional.harness import running_simulator, sdk_session, wait_until

GiB = 1024**3


@pytest.fixture
def pool():
    with running_simulator(hosts=2, task_duration=0.02) as s:
        yield s


@pytest.fixture
def other():
    with running_simulator(task_duration=0.02) as s:
        yield s


@pytest.fixture
def x(pool) -> Iterator:
    with sdk_session(pool.url, "migration-tests") as session:
        yield session.xenapi


def _hosts(x) -> tuple[str, str]:
    by_addr = {rec["address"]: ref for ref, rec in x.host.get_all_records().items()}
    return by_addr["127.0.0.1"], by_addr["127.0.0.2"]


def _vm(x, uuid: str) -> tuple[str, dict]:
    recs = x.VM.get_all_records_where('field "is_control_domain" = "false"')
    found = [(r, rec) for r, rec in recs.items() if ownership.instance_of(rec) == uuid]
    assert len(found) == 1, found
    return found[0]


def _disk_srs(x, rec: dict) -> set[str]:
    return {x.VDI.get_SR(x.VBD.get_VDI(vbd)) for vbd in rec["VBDs"]}


def test_each_agent_keeps_to_its_own_host(pool, x, make_driver):
    a = make_driver(pool.urls[0], host="agent-a")
    b = make_driver(pool.urls[1], host="agent-b")
    h1, h2 = _hosts(x)
    inst = make_instance()
    b.spawn(op_for(inst, "spawn"), inst)
    _, rec = _vm(x, inst["uuid"])
    assert rec["resident_on"] == h2 and rec["affinity"] == h2
    # the pool's default SR is host 1's local one: agent b's disk is on host 2's
    srs = _disk_srs(x, rec)
    assert all(x.PBD.get_host(p) == h2 for sr in srs for p in x.SR.get_PBDs(sr))
    assert b.get_info(inst).extra["on_this_host"] is True
    assert a.get_info(inst).extra["on_this_host"] is False
    assert inst["uuid"] in b.list_instance_uuids()
    assert inst["uuid"] not in a.list_instance_uuids()
    status = b.get_pool_status()
    assert status["role"] == "member"
    assert [(h["address"], h["this_host"], h["coordinator"]) for h in status["hosts"]] == [
        ("127.0.0.1", False, True), ("127.0.0.2", True, False)]
    assert a.get_pool_status()["role"] == "coordinator"
    assert b.get_host_resources()["running_vms"] == 1
    assert a.get_host_resources()["running_vms"] == 0


def test_shared_storage_moves_only_the_vm(pool, x, make_driver):
    h1, h2 = _hosts(x)
    shared = x.SR.create(h1, {}, str(100 * GiB), "nfs", "", "nfs", "user", True, {})
    x.pool.set_default_SR(x.pool.get_all()[0], shared)
    a = make_driver(pool.urls[0], host="agent-a")
    b = make_driver(pool.urls[1], host="agent-b")
    inst = make_instance()
    a.spawn(op_for(inst, "spawn"), inst)
    ref, rec = _vm(x, inst["uuid"])
    vdis = {x.VBD.get_VDI(v) for v in rec["VBDs"]}
    dest = b.prepare_live_migration(inst)
    assert dest["host_ref"] == h2 and dest["sr"] == shared and dest["token"]["host"] == h2
    assert a.live_migrate(op_for(inst, "live_migrate"), inst, dest) == ref
    ref2, rec = _vm(x, inst["uuid"])
    assert ref2 == ref and rec["resident_on"] == h2
    assert {x.VBD.get_VDI(v) for v in rec["VBDs"]} == vdis  # the disks did not move
    info = b.adopt_instance(inst)
    assert info.vm_ref == ref
    _, rec = _vm(x, inst["uuid"])
    assert ownership.owned_by(rec, "agent-b") and rec["affinity"] == h2
    # The list comes from b's event stream, which sees the adoption's marks
    # a moment after dom0 wrote them.
    wait_until(lambda: inst["uuid"] in b.list_instance_uuids(), 5.0, "b to list the VM")


def test_local_disks_go_with_migrate_send_inside_the_pool(pool, x, make_driver):
    h1, h2 = _hosts(x)
    a = make_driver(pool.urls[0], host="agent-a")
    b = make_driver(pool.urls[1], host="agent-b")
    inst = make_instance()
    a.spawn(op_for(inst, "spawn"), inst)
    ref, rec = _vm(x, inst["uuid"])
    local_a = _disk_srs(x, rec)
    # xapi refuses pool_migrate for a VM with disks on host 1's local SR
    with pytest.raises(Exception) as err:
        x.VM.pool_migrate(ref, h2, {})
    assert "VM_REQUIRES_SR" in str(err.value)
    dest = b.prepare_live_migration(inst)
    a.live_migrate(op_for(inst, "live_migrate"), inst, dest)
    _, rec = _vm(x, inst["uuid"])
    assert rec["resident_on"] == h2 and rec["power_state"] == "Running"
    assert _disk_srs(x, rec) == {dest["sr"]} and not (_disk_srs(x, rec) & local_a)
    b.adopt_instance(inst)
    vdis = [x.VBD.get_VDI(v) for v in rec["VBDs"]]
    assert all(ownership.owned_by(x.VDI.get_record(v), "agent-b") for v in vdis)


def test_to_another_pool(pool, other, x, make_driver):
    a = make_driver(pool.urls[0], host="agent-a")
    c = make_driver(other.url, host="agent-c")
    inst = make_instance()
    a.spawn(op_for(inst, "spawn"), inst)
    dest = c.prepare_live_migration(inst)
    assert dest["pool_uuid"] != a.get_pool_status()["uuid"]
    new_ref = a.live_migrate(op_for(inst, "live_migrate"), inst, dest)
    with pytest.raises(exceptions.InstanceNotFound):
        a.get_info(inst)
    info = c.adopt_instance(inst)
    assert info.vm_ref == new_ref and info.power_state == 1
    wait_until(lambda: c.list_instance_uuids() == [inst["uuid"]], 5.0, "c to list the VM")
    with sdk_session(other.url, "migration-tests") as s:
        _, rec = _vm(s.xenapi, inst["uuid"])
        assert ownership.owned_by(rec, "agent-c")
    assert c.migrations.receiving() == []  # adopting used the token up
    # a second prepare replaces the first token; abort forgets it
    c.prepare_live_migration(inst)
    assert c.migrations.receiving() == [inst["uuid"]]
    c.abort_live_migration(inst["uuid"])
    c.abort_live_migration(inst["uuid"])
    assert c.migrations.receiving() == []
    # a token nobody used up is dropped once its lifetime is over
    c.migrations.token_lifetime = 0.0
    c.prepare_live_migration(inst)
    other_inst = make_instance()
    c.prepare_live_migration(other_inst)
    assert c.migrations.receiving() == [other_inst["uuid"]]


def test_refusals(pool, other, x, make_driver):
    a = make_driver(pool.urls[0], host="agent-a")
    c = make_driver(other.url, host="agent-c")
    inst = make_instance()
    a.spawn(op_for(inst, "spawn"), inst)
    c.set_host_enabled(False)
    with pytest.raises(exceptions.HypervisorError) as err:
        c.prepare_live_migration(inst)
    assert err.value.code == "HOST_DISABLED"
    c.set_host_enabled(True)
    dest = c.prepare_live_migration(inst)
    with pytest.raises(exceptions.HypervisorError) as err:
        a.live_migrate(op_for(inst, "live_migrate"), inst, dict(dest, network="OpaqueRef:x"))
    assert err.value.code == "HANDLE_INVALID"
    assert a.get_info(inst).power_state == 1  # still running at home
    with pytest.raises(exceptions.InstanceNotFound):
        c.adopt_instance(inst)  # nothing arrived


def test_host_power_action_needs_a_disabled_empty_host(pool, x, make_driver):
    b = make_driver(pool.urls[1], host="agent-b")
    inst = make_instance()
    b.spawn(op_for(inst, "spawn"), inst)
    with pytest.raises(exceptions.HypervisorError) as err:
        b.host_power_action(op_for(inst, "host_reboot"), "reboot")
    assert err.value.code == "HOST_NOT_DISABLED"
    b.set_host_enabled(False)
    with pytest.raises(exceptions.HypervisorError) as err:
        b.host_power_action(op_for(inst, "host_reboot"), "reboot")
    assert err.value.code == "HOST_IN_USE"
    b.destroy(op_for(inst, "destroy"), inst)
    b.host_power_action(op_for(inst, "host_reboot"), "reboot")
    assert x.host.get_enabled(_hosts(x)[1]) is True  # back, enabled


def test_cold_migration_paths(pool, other, x, make_driver):
    h1, h2 = _hosts(x)
    a = make_driver(pool.urls[0], host="agent-a")
    b = make_driver(pool.urls[1], host="agent-b")
    c = make_driver(other.url, host="agent-c")
    # local disks inside the pool: migrate_send live=false, then placed on host 2
    inst = make_instance()
    a.spawn(op_for(inst, "spawn"), inst)
    with pytest.raises(exceptions.HypervisorError) as err:
        a.cold_migrate(op_for(inst, "cold_migrate"), inst, b.prepare_live_migration(inst))
    assert err.value.code == "VM_BAD_POWER_STATE"
    a.power_off(op_for(inst, "power_off"), inst, clean=False)
    dest = b.prepare_live_migration(inst)
    a.cold_migrate(op_for(inst, "cold_migrate"), inst, dest)
    _, rec = _vm(x, inst["uuid"])
    assert rec["power_state"] == "Halted" and rec["affinity"] == h2
    assert _disk_srs(x, rec) == {dest["sr"]}
    b.adopt_instance(inst)
    b.power_on(op_for(inst, "power_on"), inst)
    _, rec = _vm(x, inst["uuid"])
    assert rec["resident_on"] == h2
    # to another pool, halted, with its disk
    b.power_off(op_for(inst, "power_off"), inst, clean=False)
    dest = c.prepare_live_migration(inst)
    b.cold_migrate(op_for(inst, "cold_migrate"), inst, dest)
    info = c.adopt_instance(inst)
    assert info.power_state == 4
    c.power_on(op_for(inst, "power_on"), inst)
    assert c.get_info(inst).power_state == 1
    with pytest.raises(exceptions.InstanceNotFound):
        b.get_info(inst)


def test_cold_migration_on_shared_storage_is_placement(pool, x, make_driver):
    h1, h2 = _hosts(x)
    shared = x.SR.create(h1, {}, str(100 * GiB), "nfs", "", "nfs", "user", True, {})
    x.pool.set_default_SR(x.pool.get_all()[0], shared)
    a = make_driver(pool.urls[0], host="agent-a")
    b = make_driver(pool.urls[1], host="agent-b")
    inst = make_instance()
    a.spawn(op_for(inst, "spawn"), inst)
    a.power_off(op_for(inst, "power_off"), inst, clean=False)
    ref, rec = _vm(x, inst["uuid"])
    vdis = {x.VBD.get_VDI(v) for v in rec["VBDs"]}
    assert a.cold_migrate(op_for(inst, "cold_migrate"), inst,
                          b.prepare_live_migration(inst)) == ref
    _, rec = _vm(x, inst["uuid"])
    assert rec["affinity"] == h2 and {x.VBD.get_VDI(v) for v in rec["VBDs"]} == vdis
    b.adopt_instance(inst)
    assert b.get_info(inst).extra["on_this_host"] is True
    assert a.get_info(inst).extra["on_this_host"] is False
