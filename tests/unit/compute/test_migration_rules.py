"""Live migration between two managers sharing one SQLite database, with
the fake driver: the request, the bounded slots, refusals, failures and the
recovery rules of the source side. The agents talk through LocalPeers,
which calls the other manager's methods as the RPC endpoint would (the
RabbitMQ path is covered by tests/functional/e2e)."""

from __future__ import annotations

import time
import uuid as uuidlib

import pytest

from compute_agent import exceptions
from compute_agent.compute import migration_rules as rules
from compute_agent.compute import states
from compute_agent.context import new_context
from compute_agent.db import instance_migrations as im
from compute_agent.driver import power_state
from compute_agent.driver.fake import FakeDriver
from compute_agent.manager import ComputeManager
from tests.unit.conftest import RecordingNotifier

WAIT = 10


class LocalPeers:
    """rpcapi.ComputeAPI's agent-to-agent calls, delivered in process."""

    def __init__(self) -> None:
        self.managers: dict[str, ComputeManager] = {}
        self.down: set[str] = set()

    def _to(self, host: str) -> ComputeManager:
        if host in self.down or host not in self.managers:
            raise exceptions.ComputeAgentError(f"compute.{host}", "prepare", 1,
                                               code="RPC_TIMEOUT")
        return self.managers[host]

    def prepare_live_migration(self, host, instance_uuid, ctxt=None, timeout=None):
        return self._to(host).prepare_live_migration(ctxt or new_context(), instance_uuid)

    def adopt_instance(self, host, instance_uuid, ctxt=None, timeout=None):
        return self._to(host).adopt_instance(ctxt or new_context(), instance_uuid)

    def abort_live_migration(self, host, instance_uuid, ctxt=None):
        self._to(host).abort_live_migration(ctxt or new_context(), instance_uuid)

    def resize_instance(self, host, instance_uuid, flavor, ctxt=None, confirm=False):
        return self._to(host).resize_instance(ctxt or new_context(), instance_uuid, flavor)


@pytest.fixture
def pair(agent_conf, agent_db):
    peers = LocalPeers()
    made = []
    for host in ("src-host", "dst-host"):
        driver = FakeDriver()
        mgr = ComputeManager(agent_conf, agent_db, driver=driver, notifier=RecordingNotifier(host),
                             host=host, peers=peers)
        mgr.init_host()
        peers.managers[host] = mgr
        made.append((mgr, driver))
    yield made[0], made[1], peers
    for mgr, driver in made:
        for gate in list(driver._gates.values()):
            gate.release()
        mgr.wait_for_operations(WAIT)


def _build(mgr) -> str:
    uuid = str(uuidlib.uuid4())
    mgr.build_instance(new_context(), {
        "uuid": uuid, "name": "mover", "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1},
        "image": {"id": "img", "url": None, "disk_format": "vhd"}, "networks": [],
        "metadata": {}})
    assert mgr.wait_for_operations(WAIT)
    return uuid


def test_live_migration_moves_vm_and_row(pair, agent_db):
    (src, src_drv), (dst, dst_drv), _ = pair
    uuid = _build(src)
    accepted = src.live_migrate_instance(new_context(), uuid, "dst-host")
    assert accepted["task_state"] == states.MIGRATING and accepted["host"] == "src-host"
    assert src.wait_for_operations(WAIT)
    inst = agent_db.get_instance(uuid)
    assert (inst["host"], inst["vm_state"], inst["task_state"], inst["power_state"]) == (
        "dst-host", states.ACTIVE, None, power_state.RUNNING)
    assert inst["fault"] is None
    assert uuid in dst_drv.vms and uuid not in src_drv.vms
    rows = im.InstanceMigrations(agent_db).list_for(uuid)
    assert [(r["status"], r["dest_host"]) for r in rows] == [(im.COMPLETED, "dst-host")]
    assert "token" not in rows[0]["dest_info"]  # the secret is never written down
    actions = agent_db.list_actions(uuid)
    assert actions[-1]["action"] == "live-migration" and actions[-1]["result"] == "success"
    # the destination owns it now: requests go there
    with pytest.raises(exceptions.ComputeAgentError) as err:
        src.stop_instance(new_context(), uuid)
    assert err.value.code == "INSTANCE_WRONG_HOST"
    dst.stop_instance(new_context(), uuid)
    assert dst.wait_for_operations(WAIT)
    assert agent_db.get_instance(uuid)["vm_state"] == states.STOPPED


def test_refusals_are_structured(pair, agent_db):
    (src, _), _, peers = pair
    uuid = _build(src)
    for bad, field in ((None, "dest_host"), ("", "dest_host"), ("src-host", "dest_host")):
        with pytest.raises(exceptions.InvalidInput) as err:
            src.live_migrate_instance(new_context(), uuid, bad)
        assert err.value.params[0] == field
    src.stop_instance(new_context(), uuid)
    assert src.wait_for_operations(WAIT)
    with pytest.raises(exceptions.InstanceInvalidState):
        src.live_migrate_instance(new_context(), uuid, "dst-host")


def test_unreachable_destination_keeps_the_instance(pair, agent_db):
    (src, src_drv), _, peers = pair
    uuid = _build(src)
    peers.down.add("dst-host")
    src.live_migrate_instance(new_context(), uuid, "dst-host")
    assert src.wait_for_operations(WAIT)
    inst = agent_db.get_instance(uuid)
    assert (inst["host"], inst["vm_state"], inst["task_state"]) == (
        "src-host", states.ACTIVE, None)
    assert inst["fault"]["code"] == "RPC_TIMEOUT"
    assert uuid in src_drv.vms
    assert [r["status"] for r in im.InstanceMigrations(agent_db).list_for(uuid)] == [im.FAILED]


def test_failed_migration_task_keeps_the_instance(pair, agent_db):
    (src, src_drv), (_, dst_drv), _ = pair
    uuid = _build(src)
    src_drv.inject_failure("live_migrate", exceptions.HypervisorError(
        "vm", "src", "dst", "injected", code="VM_MIGRATE_FAILED"))
    src.live_migrate_instance(new_context(), uuid, "dst-host")
    assert src.wait_for_operations(WAIT)
    inst = agent_db.get_instance(uuid)
    assert (inst["host"], inst["vm_state"], inst["fault"]["code"]) == (
        "src-host", states.ACTIVE, "VM_MIGRATE_FAILED")
    assert uuid in src_drv.vms and uuid not in dst_drv.vms


def test_slots_bound_concurrent_migrations(pair, agent_db, agent_conf):
    (src, src_drv), _, _ = pair
    uuids = [_build(src) for _ in range(3)]
    gate = src_drv.hold("live_migrate")
    for uuid in uuids:
        src.live_migrate_instance(new_context(), uuid, "dst-host")
    assert gate.wait_entered()
    status = src.get_host_status(new_context())["live_migrations"]
    assert status["max"] == agent_conf.max_concurrent_live_migrations == 1
    assert status["running"] == 1
    gate.release()
    assert src.wait_for_operations(WAIT)
    assert {agent_db.get_instance(u)["host"] for u in uuids} == {"dst-host"}


def test_recovery_completes_a_migration_whose_vm_arrived(pair, agent_db):
    (src, src_drv), (dst, dst_drv), _ = pair
    uuid = _build(src)
    # an earlier run of the source: the task ran, the agent died before the row moved
    agent_db.update_instance(uuid, {"task_state": states.MIGRATING})
    rows = im.InstanceMigrations(agent_db)
    row = rows.create(uuid, "live", "src-host", "dst-host", "req-x")
    rows.update(row["id"], {"status": im.MIGRATING})
    dst_drv.vms[uuid] = src_drv.vms.pop(uuid)
    run = src.recovery.start(new_context())
    assert run.wait(WAIT)
    inst = agent_db.get_instance(uuid)
    assert (inst["host"], inst["vm_state"], inst["task_state"]) == (
        "dst-host", states.ACTIVE, None)
    assert rows.get(row["id"])["status"] == im.COMPLETED


def test_recovery_keeps_an_instance_whose_migration_never_ran(pair, agent_db):
    (src, src_drv), _, _ = pair
    uuid = _build(src)
    agent_db.update_instance(uuid, {"task_state": states.MIGRATING})
    rows = im.InstanceMigrations(agent_db)
    row = rows.create(uuid, "live", "src-host", "dst-host", "req-y")
    rows.update(row["id"], {"status": im.MIGRATING})
    run = src.recovery.start(new_context())
    assert run.wait(WAIT)
    inst = agent_db.get_instance(uuid)
    assert (inst["host"], inst["vm_state"], inst["task_state"]) == (
        "src-host", states.ACTIVE, None)
    assert inst["fault"]["code"] == "OPERATION_INTERRUPTED"
    assert rows.get(row["id"])["status"] == im.FAILED


@pytest.mark.parametrize("facts,outcome", [
    (rules.Facts(here=True, adopted=False), rules.STAYED),
    (rules.Facts(here=False, adopted=True), rules.MOVED),
    (rules.Facts(here=False, adopted=None), rules.MOVED),
    (rules.Facts(here=False, adopted=False), rules.LOST),
    (rules.Facts(here=True, adopted=None), rules.STAYED),
])
def test_where_rules(facts, outcome):
    assert rules.where(facts) == outcome


def test_maintenance_empties_the_host_and_power_action_needs_it(pair, agent_db):
    (src, src_drv), (dst, dst_drv), _ = pair
    uuids = [_build(src) for _ in range(3)]
    with pytest.raises(exceptions.HypervisorError) as err:
        src.host_power_action(new_context(), "reboot")
    assert err.value.code == "HOST_NOT_DISABLED"
    status = src.set_host_maintenance(new_context(), True, ["dst-host"])
    assert status["state"] == "evacuating" and status["total"] == 3
    assert src.maintenance.wait(WAIT)
    status = src.get_host_status(new_context())["maintenance"]
    assert status["state"] == "maintenance" and sorted(status["moved"]) == sorted(uuids)
    assert status["failed"] == {}
    assert not src_drv.host_enabled and src_drv.vms == {}
    assert {agent_db.get_instance(u)["host"] for u in uuids} == {"dst-host"}
    services = {s["host"]: s for s in agent_db.list_services()}
    assert services["src-host"]["disabled"] is True
    assert src.host_power_action(new_context(), "reboot") == {"host": "src-host",
                                                              "action": "reboot"}
    with pytest.raises(exceptions.InvalidInput):
        src.host_power_action(new_context(), "explode")
    src.set_host_maintenance(new_context(), False)
    assert src_drv.host_enabled
    assert {s["host"]: s for s in agent_db.list_services()}["src-host"]["disabled"] is False


def test_maintenance_without_destinations_reports_what_could_not_move(pair, agent_db):
    (src, _), _, _ = pair
    uuid = _build(src)
    src.set_host_maintenance(new_context(), True)  # fakes share no pool: nowhere to go
    assert src.maintenance.wait(WAIT)
    status = src.maintenance.status()
    assert status["failed"][uuid]["code"] == "NO_VALID_HOST"
    assert agent_db.get_instance(uuid)["host"] == "src-host"
    with pytest.raises(exceptions.InvalidInput):
        src.set_host_maintenance(new_context(), "yes")
    with pytest.raises(exceptions.InvalidInput):
        src.set_host_maintenance(new_context(), True, ["src-host"])


def test_join_and_leave_need_an_empty_host(pair, agent_db):
    (src, src_drv), _, _ = pair
    uuid = _build(src)
    with pytest.raises(exceptions.ComputeAgentError) as err:
        src.join_pool(new_context(), "10.0.0.1", "root", "s3cret")
    assert err.value.code == "HOST_HAS_INSTANCES" and err.value.params == ["src-host", "1"]
    assert "s3cret" not in str(err.value.to_dict())
    for bad in (None, "", 3):
        with pytest.raises(exceptions.InvalidInput):
            src.join_pool(new_context(), "10.0.0.1", "root", bad)
    src.terminate_instance(new_context(), uuid)
    assert src.wait_for_operations(WAIT)
    assert agent_db.get_instance(uuid)["vm_state"] == states.DELETED
    joined = src.join_pool(new_context(), "10.0.0.1", "root", "s3cret")
    assert joined["pool"]["role"] == "member"
    nodes = {n["host"]: n for n in agent_db.list_compute_nodes()}
    assert nodes["src-host"]["pool_uuid"] == "fake-pool-10.0.0.1"
    left = src.leave_pool(new_context())
    assert left["pool"]["role"] == "coordinator"


def test_cold_migration_moves_a_stopped_instance(pair, agent_db):
    (src, src_drv), (dst, dst_drv), _ = pair
    uuid = _build(src)
    with pytest.raises(exceptions.InstanceInvalidState):
        src.migrate_instance(new_context(), uuid, "dst-host")  # running: live-migrate it
    src.stop_instance(new_context(), uuid)
    assert src.wait_for_operations(WAIT)
    accepted = src.migrate_instance(new_context(), uuid, "dst-host")
    assert accepted["task_state"] == states.MIGRATING
    assert src.wait_for_operations(WAIT)
    inst = agent_db.get_instance(uuid)
    assert (inst["host"], inst["vm_state"], inst["task_state"], inst["power_state"]) == (
        "dst-host", states.STOPPED, None, power_state.SHUTDOWN)
    assert uuid in dst_drv.vms and uuid not in src_drv.vms
    rows = im.InstanceMigrations(agent_db).list_for(uuid)
    assert [(r["kind"], r["status"]) for r in rows] == [("cold", im.COMPLETED)]
    assert agent_db.list_actions(uuid)[-1]["action"] == "migrate"
    dst.start_instance(new_context(), uuid)
    assert dst.wait_for_operations(WAIT)
    assert agent_db.get_instance(uuid)["vm_state"] == states.ACTIVE


def test_recovery_of_an_interrupted_cold_migration(pair, agent_db):
    (src, src_drv), (dst, dst_drv), _ = pair
    uuid = _build(src)
    src.stop_instance(new_context(), uuid)
    assert src.wait_for_operations(WAIT)
    agent_db.update_instance(uuid, {"task_state": states.MIGRATING})
    rows = im.InstanceMigrations(agent_db)
    row = rows.create(uuid, "cold", "src-host", "dst-host", "req-c")
    rows.update(row["id"], {"status": im.MIGRATING})
    dst_drv.vms[uuid] = src_drv.vms.pop(uuid)  # the move happened, the agent died
    run = src.recovery.start(new_context())
    assert run.wait(WAIT)
    inst = agent_db.get_instance(uuid)
    assert (inst["host"], inst["vm_state"], inst["task_state"]) == (
        "dst-host", states.STOPPED, None)


# -- resize to another host -------------------------------------------------------------

OLD = {"vcpus": 1, "memory_mb": 256, "root_gb": 1}
NEW = {"vcpus": 2, "memory_mb": 512, "root_gb": 2}


def _settled(agent_db, uuid: str, host: str, vm_state: str) -> dict:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        inst = agent_db.get_instance(uuid)
        if (inst["host"], inst["vm_state"], inst["task_state"]) == (host, vm_state, None):
            return inst
        time.sleep(0.02)
    raise AssertionError(f"{uuid} is {agent_db.get_instance(uuid)}, not {host}/{vm_state}")


def _stopped(src) -> str:
    uuid = _build(src)
    src.stop_instance(new_context(), uuid)
    assert src.wait_for_operations(WAIT)
    return uuid


def test_resize_to_another_host_refusals(pair, agent_db):
    (src, _), _, _ = pair
    uuid = _stopped(src)
    for flavor, code in ((OLD, "FLAVOR_UNCHANGED"), ({**NEW, "root_gb": 0},
                                                     "RESIZE_DISK_TOO_SMALL"),
                         ({"vcpus": 0}, "INVALID_INPUT")):
        with pytest.raises(exceptions.ComputeAgentError) as err:
            src.migrate_instance(new_context(), uuid, "dst-host", flavor)
        assert err.value.code == code, flavor
    inst = agent_db.get_instance(uuid)
    assert (inst["host"], inst["task_state"], inst["flavor"]) == ("src-host", None, OLD)
    assert im.InstanceMigrations(agent_db).list_for(uuid) == []


def test_resize_to_another_host_then_revert_goes_back(pair, agent_db):
    (src, src_drv), (dst, dst_drv), _ = pair
    uuid = _stopped(src)
    accepted = src.migrate_instance(new_context(), uuid, "dst-host", NEW)
    assert accepted["task_state"] == states.MIGRATING
    inst = _settled(agent_db, uuid, "dst-host", states.RESIZED)
    assert inst["flavor"] == NEW and dst_drv.vms[uuid].vcpus == 2
    assert uuid not in src_drv.vms
    with pytest.raises(exceptions.ComputeAgentError):  # the source no longer owns it
        src.revert_resize(new_context(), uuid)
    dst.revert_resize(new_context(), uuid)
    inst = _settled(agent_db, uuid, "src-host", states.STOPPED)
    assert inst["flavor"] == OLD and inst["fault"] is None
    assert uuid in src_drv.vms and uuid not in dst_drv.vms
    assert (src_drv.vms[uuid].vcpus, src_drv.vms[uuid].root_gb) == (1, 1)
    rows = im.InstanceMigrations(agent_db).list_for(uuid)
    assert [(r["kind"], r["source_host"], r["status"]) for r in rows] == [
        ("resize", "src-host", im.COMPLETED), ("cold", "dst-host", im.COMPLETED)]


def test_resize_to_another_host_then_confirm_stays(pair, agent_db):
    (src, src_drv), (dst, dst_drv), _ = pair
    uuid = _stopped(src)
    src.migrate_instance(new_context(), uuid, "dst-host", NEW)
    _settled(agent_db, uuid, "dst-host", states.RESIZED)
    dst.confirm_resize(new_context(), uuid)
    inst = _settled(agent_db, uuid, "dst-host", states.STOPPED)
    assert inst["flavor"] == NEW
    assert im.InstanceMigrations(agent_db).list_for(uuid)[-1]["dest_info"]["confirmed"]
    # a later resize on the destination itself reverts there, not back
    dst.resize_instance(new_context(), uuid, {**NEW, "vcpus": 4})
    _settled(agent_db, uuid, "dst-host", states.RESIZED)
    dst.revert_resize(new_context(), uuid)
    assert _settled(agent_db, uuid, "dst-host", states.STOPPED)["flavor"] == NEW


def test_recovery_asks_the_destination_a_crash_left_unasked(pair, agent_db):
    (src, src_drv), (dst, dst_drv), _ = pair
    uuid = _stopped(src)
    rows = im.InstanceMigrations(agent_db)
    row = rows.create(uuid, "resize", "src-host", "dst-host", "req-r")
    rows.update(row["id"], {"status": im.COMPLETED,
                            "dest_info": {"flavor": NEW, "old_flavor": OLD}})
    # the move happened and the row moved; the source died before asking
    dst_drv.vms[uuid] = src_drv.vms.pop(uuid)
    agent_db.update_instance(uuid, {"host": "dst-host"})
    assert src.recovery.start(new_context()).wait(WAIT)
    inst = _settled(agent_db, uuid, "dst-host", states.RESIZED)
    assert inst["flavor"] == NEW
    assert rows.get(row["id"])["dest_info"]["resize_asked"]


def test_recovery_moves_back_a_revert_a_crash_cut_short(pair, agent_db):
    (src, src_drv), (dst, dst_drv), _ = pair
    uuid = _stopped(src)
    rows = im.InstanceMigrations(agent_db)
    row = rows.create(uuid, "resize", "src-host", "dst-host", "req-r")
    rows.update(row["id"], {"status": im.COMPLETED, "dest_info": {
        "flavor": NEW, "old_flavor": OLD, "resize_asked": True, "reverting": True}})
    # reverted at the destination, the agent died before moving it back
    dst_drv.vms[uuid] = src_drv.vms.pop(uuid)
    agent_db.update_instance(uuid, {"host": "dst-host"})
    assert dst.recovery.start(new_context()).wait(WAIT)
    _settled(agent_db, uuid, "src-host", states.STOPPED)
    assert uuid in src_drv.vms and uuid not in dst_drv.vms
