"""Live migration, maintenance and pools with real parts: RabbitMQ,
PostgreSQL, three xapi-sim processes (a pool of three hosts with shared
NFS-style storage, a standalone host in its own pool, and a standalone
host that joins the pool and leaves it) and one compute-agent process per
host.

Inside the pool the VM moves with VM.pool_migrate; to the other pool with
host.migrate_receive + VM.migrate_send, its disk's data read back equal on
arrival. A destination that refuses, a migration task failed by the
simulator's fault API, and an agent killed with SIGKILL on either side mid
migration all end with the instance in exactly one place: one VM for it in
the whole fleet, no disk of it left behind, no task_state, and a fault
when it did not move.
"""

from __future__ import annotations

import base64
import concurrent.futures
import os
import urllib.request
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compute_agent import exceptions
from compute_agent.db import instance_migrations as im
from compute_agent.db.api import Database
from compute_agent.driver.xenapi import ownership
from tests.functional.db_fixtures import make_migrated_database_url
from tests.functional.harness import PASSWORD, SETTLE_S, USER, AgentProcess, SimProcess, wait_until
from tests.functional.rpc_client import Rpc

GiB = 1024**3
PEER_TIMEOUT = 3
JOINER = "127.0.0.9"


class Fleet:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.rpc = Rpc("livemig")
        self.db_url, self._drop_db = make_migrated_database_url("postgresql")
        self.db = Database(self.db_url)
        self.pool = SimProcess(workdir, "pool", hosts=3).start()
        self.other = SimProcess(workdir, "other").start()
        # a standalone host that joins the pool (same port, its own address)
        self.joiner = SimProcess(workdir, "joiner", address=JOINER,
                                 port=self.pool.port).start()
        with self.pool.session() as x:
            # Shared storage every pool host sees, as the pool's default SR.
            master = x.pool.get_master(x.pool.get_all()[0])
            sr = x.SR.create(master, {"server": "nfs.example", "serverpath": "/vms"},
                             str(200 * GiB), "shared", "", "nfs", "user", True, {})
            x.pool.set_default_SR(x.pool.get_all()[0], sr)
        self.agents: dict[str, AgentProcess] = {}
        # Both concurrency backends: the source of most migrations (pool-a)
        # and one destination run under eventlet, the others on threads.
        for name, url, backend in (("pool-a", self.pool.urls[0], "eventlet"),
                                   ("pool-b", self.pool.urls[1], "threading"),
                                   ("pool-c", self.pool.urls[2], "eventlet"),
                                   ("other", self.other.url, "threading"),
                                   ("joiner", self.joiner.url, "threading")):
            self.agents[name] = AgentProcess(
                workdir, host=name, db_url=self.db_url, exchange=self.rpc.exchange,
                topic=self.rpc.topic, sim_url=url, backend=backend,
                # reap_orphans: no agent may take another host's VM for an orphan
                options={"DEFAULT": {"live_migration_peer_timeout": PEER_TIMEOUT,
                                     "max_concurrent_live_migrations": 2,
                                     "reap_orphans": True}})
            self.rpc.hosts.append(name)
        for agent in self.agents.values():
            agent.start()
        for agent in self.agents.values():
            agent.wait_serving(self.rpc.api)

    @property
    def api(self):
        return self.rpc.api

    def close(self) -> None:
        # Side by side: each agent takes a few seconds to drain and exit.
        with concurrent.futures.ThreadPoolExecutor(len(self.agents)) as stopping:
            list(stopping.map(lambda a: a.stop(), self.agents.values()))
        self.pool.stop()
        self.other.stop()
        self.joiner.stop()
        self.rpc.close()
        self.db.dispose()
        self._drop_db()

    def restart(self, name: str) -> None:
        agent = self.agents[name]
        agent.start()
        agent.wait_serving(self.api)

    # -- instances -------------------------------------------------------------------
    def build(self, host: str) -> str:
        uuid = str(uuidlib.uuid4())
        self.api.build_instance(host, {
            "uuid": uuid, "name": f"lm-{uuid[:8]}",
            "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1},
            "image": {"id": None, "url": None, "disk_format": None},
            "networks": [], "metadata": {}}, confirm=True)
        inst = self.settled(uuid)
        assert inst["vm_state"] == "active", inst
        return uuid

    def settled(self, uuid: str, timeout: float = SETTLE_S) -> dict:
        def done() -> dict | None:
            inst = self.db.get_instance(uuid)
            return inst if inst["task_state"] is None else None

        return wait_until(done, timeout, f"instance {uuid} to settle", 0.1)

    def migrate(self, uuid: str, source: str, dest: str) -> dict:
        self.api.live_migrate_instance(source, uuid, dest, confirm=True)
        return self.settled(uuid)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[Fleet]:
    f = Fleet(tmp_path_factory.mktemp("live-migration"))
    try:
        yield f
    finally:
        f.close()


# -- what the simulators show ------------------------------------------------------------


def vms_of(sim: SimProcess, uuid: str) -> dict[str, dict[str, Any]]:
    with sim.session() as x:
        recs = x.VM.get_all_records_where('field "is_control_domain" = "false"')
    return {ref: rec for ref, rec in recs.items()
            if ownership.instance_of(rec) == uuid and not rec["is_a_snapshot"]}


def vdis_of(sim: SimProcess, uuid: str) -> dict[str, dict[str, Any]]:
    with sim.session() as x:
        return {ref: rec for ref, rec in x.VDI.get_all_records().items()
                if ownership.instance_of(rec) == uuid}


def one_vm_in_fleet(fleet: Fleet, uuid: str, where: SimProcess) -> tuple[str, dict]:
    """The instance has exactly one VM in the fleet, in ``where``."""
    found = {sim.name: vms_of(sim, uuid) for sim in (fleet.pool, fleet.other)}
    assert len(found[where.name]) == 1, found
    assert sum(len(v) for v in found.values()) == 1, found
    return next(iter(found[where.name].items()))


def no_disks_left(fleet: Fleet, uuid: str, where: SimProcess) -> None:
    """The instance's disks are where its VM is, nowhere else."""
    for sim in (fleet.pool, fleet.other):
        if sim is not where:
            assert vdis_of(sim, uuid) == {}, sim.name


def root_vdi(sim: SimProcess, vm: dict) -> str:
    with sim.session() as x:
        for vbd in vm["VBDs"]:
            rec = x.VBD.get_record(vbd)
            if rec["userdevice"] == "0":
                return rec["VDI"]
    raise AssertionError("no root disk")


def put_data(sim: SimProcess, vdi: str, data: bytes) -> None:
    url = f"{sim.url}/import_raw_vdi?vdi={vdi}&format=raw"
    req = urllib.request.Request(url, data=data, method="PUT",
                                 headers={"Authorization": _basic()})
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


def read_data(sim: SimProcess, vdi: str, n: int) -> bytes:
    url = f"{sim.url}/export_raw_vdi?vdi={vdi}&format=raw"
    req = urllib.request.Request(url, headers={"Authorization": _basic()})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read(n)


def _basic() -> str:
    return "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def host_ref(sim: SimProcess, address: str) -> str:
    with sim.session() as x:
        return next(r for r, rec in x.host.get_all_records().items()
                    if rec["address"] == address)


# -- the tests ------------------------------------------------------------------------------


def test_inside_the_pool_on_shared_storage(fleet):
    uuid = fleet.build("pool-a")
    ref, vm = one_vm_in_fleet(fleet, uuid, fleet.pool)
    assert vm["resident_on"] == host_ref(fleet.pool, "127.0.0.1")
    inst = fleet.migrate(uuid, "pool-a", "pool-b")
    assert (inst["host"], inst["vm_state"], inst["fault"]) == ("pool-b", "active", None)
    ref2, vm = one_vm_in_fleet(fleet, uuid, fleet.pool)
    assert ref2 == ref  # the same VM, moved (pool_migrate)
    assert vm["resident_on"] == host_ref(fleet.pool, "127.0.0.2")
    assert vm["power_state"] == "Running"
    assert ownership.owned_by(vm, "pool-b")
    rows = im.InstanceMigrations(fleet.db).list_for(uuid)
    assert [(r["status"], r["source_host"], r["dest_host"]) for r in rows] == [
        (im.COMPLETED, "pool-a", "pool-b")]
    status = fleet.api.get_host_status("pool-b")
    assert status["pool"]["role"] == "member"
    assert sorted(h["address"] for h in status["pool"]["hosts"]) == [
        "127.0.0.1", "127.0.0.2", "127.0.0.3"]
    assert [i["uuid"] for i in fleet.api.list_instances("pool-b")] == [uuid]
    # the third agent of the pool saw none of it
    assert fleet.api.list_instances("pool-c") == []


def test_to_another_pool_with_the_disk_data(fleet):
    uuid = fleet.build("pool-a")
    _, vm = one_vm_in_fleet(fleet, uuid, fleet.pool)
    data = os.urandom(2 * 1024 * 1024) + b"end of the data"
    put_data(fleet.pool, root_vdi(fleet.pool, vm), data)
    inst = fleet.migrate(uuid, "pool-a", "other")
    assert (inst["host"], inst["vm_state"], inst["fault"]) == ("other", "active", None)
    ref, vm = one_vm_in_fleet(fleet, uuid, fleet.other)
    assert vm["power_state"] == "Running" and ownership.owned_by(vm, "other")
    assert inst["power_state"] == 1
    vdi = root_vdi(fleet.other, vm)
    assert read_data(fleet.other, vdi, len(data)) == data
    no_disks_left(fleet, uuid, fleet.other)
    assert all(ownership.owned_by(rec, "other") for rec in vdis_of(fleet.other, uuid).values())
    # the destination agent owns it now: it stops it
    fleet.api.stop_instance("other", uuid, confirm=True)
    assert fleet.settled(uuid)["vm_state"] == "stopped"


def test_cold_migration_to_another_pool(fleet):
    uuid = fleet.build("pool-a")
    _, vm = one_vm_in_fleet(fleet, uuid, fleet.pool)
    data = os.urandom(1024 * 1024) + b"cold"
    put_data(fleet.pool, root_vdi(fleet.pool, vm), data)
    fleet.api.stop_instance("pool-a", uuid, confirm=True)
    assert fleet.settled(uuid)["vm_state"] == "stopped"
    fleet.api.migrate_instance("pool-a", uuid, "other", confirm=True)
    inst = fleet.settled(uuid)
    assert (inst["host"], inst["vm_state"], inst["power_state"], inst["fault"]) == (
        "other", "stopped", 4, None)
    _, vm = one_vm_in_fleet(fleet, uuid, fleet.other)
    assert vm["power_state"] == "Halted" and ownership.owned_by(vm, "other")
    assert read_data(fleet.other, root_vdi(fleet.other, vm), len(data)) == data
    no_disks_left(fleet, uuid, fleet.other)
    fleet.api.start_instance("other", uuid, confirm=True)
    assert fleet.settled(uuid)["vm_state"] == "active"


def test_destination_refusing_keeps_the_instance(fleet):
    uuid = fleet.build("pool-a")
    with fleet.other.session() as x:
        host = x.host.get_all()[0]
        x.host.disable(host)
    try:
        inst = fleet.migrate(uuid, "pool-a", "other")
    finally:
        with fleet.other.session() as x:
            x.host.enable(host)
    assert (inst["host"], inst["vm_state"]) == ("pool-a", "active")
    assert inst["fault"]["code"] == "HOST_DISABLED"
    one_vm_in_fleet(fleet, uuid, fleet.pool)
    no_disks_left(fleet, uuid, fleet.pool)


def test_migration_task_failed_by_the_simulator(fleet):
    uuid = fleet.build("pool-a")
    fleet.pool.control.fail("VM.migrate_send", ["VM_MIGRATE_FAILED", "vm", "src", "dst",
                                                "injected"])
    inst = fleet.migrate(uuid, "pool-a", "other")
    assert (inst["host"], inst["vm_state"]) == ("pool-a", "active")
    assert inst["fault"]["code"] == "VM_MIGRATE_FAILED"
    _, vm = one_vm_in_fleet(fleet, uuid, fleet.pool)
    assert vm["power_state"] == "Running"
    no_disks_left(fleet, uuid, fleet.pool)
    rows = im.InstanceMigrations(fleet.db).list_for(uuid)
    assert rows[-1]["status"] == im.FAILED and rows[-1]["error"][0] == "VM_MIGRATE_FAILED"


def _wait_task_recorded(fleet: Fleet, uuid: str, operation: str = "live_migrate") -> None:
    wait_until(lambda: any(t["operation"] == operation and t["status"] == "pending"
                           for t in fleet.db.list_tracked_tasks(status=None,
                                                                instance_uuid=uuid)),
               SETTLE_S, "the migration task to be recorded", 0.05)


def test_source_agent_killed_mid_migration(fleet):
    uuid = fleet.build("pool-a")
    fleet.pool.control.set_duration("VM.migrate_send", 3)
    try:
        fleet.api.live_migrate_instance("pool-a", uuid, "other", confirm=True)
        _wait_task_recorded(fleet, uuid)
        fleet.agents["pool-a"].kill9()
        fleet.restart("pool-a")
        inst = fleet.settled(uuid)
    finally:
        fleet.pool.control.clear()
    assert (inst["host"], inst["vm_state"], inst["fault"]) == ("other", "active", None)
    _, vm = one_vm_in_fleet(fleet, uuid, fleet.other)
    assert ownership.owned_by(vm, "other")
    no_disks_left(fleet, uuid, fleet.other)
    assert [r["status"] for r in im.InstanceMigrations(fleet.db).list_for(uuid)] == [
        im.COMPLETED]


def test_destination_agent_killed_mid_migration(fleet):
    uuid = fleet.build("pool-a")
    fleet.pool.control.set_duration("VM.migrate_send", 2)
    try:
        fleet.api.live_migrate_instance("pool-a", uuid, "other", confirm=True)
        _wait_task_recorded(fleet, uuid)
        fleet.agents["other"].kill9()
        # the VM arrives; the source cannot reach the destination agent and
        # hands the instance over without its adoption
        inst = fleet.settled(uuid)
        assert (inst["host"], inst["vm_state"], inst["fault"]) == ("other", "active", None)
        _, vm = one_vm_in_fleet(fleet, uuid, fleet.other)
        assert ownership.owned_by(vm, "pool-a")  # not adopted yet
    finally:
        fleet.pool.control.clear()
        if not fleet.agents["other"].alive:
            fleet.restart("other")
    # the destination agent adopts it when it starts
    wait_until(lambda: ownership.owned_by(one_vm_in_fleet(fleet, uuid, fleet.other)[1],
                                          "other"), SETTLE_S, "adoption", 0.2)
    wait_until(lambda: fleet.db.get_instance(uuid, internal=True)["vm_ref"], SETTLE_S,
               "the VM ref", 0.1)
    assert all(ownership.owned_by(r, "other") for r in vdis_of(fleet.other, uuid).values())
    no_disks_left(fleet, uuid, fleet.other)


def test_maintenance_empties_a_host_of_ten_instances(fleet):
    uuids = [str(uuidlib.uuid4()) for _ in range(10)]
    for uuid in uuids:
        fleet.api.build_instance("pool-a", {
            "uuid": uuid, "name": f"mt-{uuid[:8]}",
            "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1},
            "image": {"id": None, "url": None, "disk_format": None},
            "networks": [], "metadata": {}}, confirm=True)
    wait_until(lambda: all(fleet.db.get_instance(u)["vm_state"] == "active" for u in uuids),
               SETTLE_S, "ten builds", 0.2)
    status = fleet.api.set_host_maintenance("pool-a", True)
    assert status["state"] == "evacuating" and status["total"] >= 10
    with fleet.pool.session() as x:
        assert x.host.get_enabled(host_ref(fleet.pool, "127.0.0.1")) is False
    status = wait_until(
        lambda: (s := fleet.api.get_host_status("pool-a")["maintenance"])["state"]
        == "maintenance" and s, SETTLE_S, "the host to be empty", 0.2)
    assert status["failed"] == {} and set(uuids) <= set(status["moved"])
    on = {"pool-b": host_ref(fleet.pool, "127.0.0.2"),
          "pool-c": host_ref(fleet.pool, "127.0.0.3")}
    for uuid in uuids:
        agent = fleet.db.get_instance(uuid)["host"]
        assert agent in on
        _, vm = one_vm_in_fleet(fleet, uuid, fleet.pool)
        assert vm["resident_on"] == on[agent] and ownership.owned_by(vm, agent)
    # spread by free memory: both other hosts of the pool took some
    assert {fleet.db.get_instance(u)["host"] for u in uuids} == set(on)
    assert fleet.api.list_instances("pool-a") == []
    services = {s["host"]: s for s in fleet.db.list_services()}
    assert services["pool-a"]["disabled"] is True
    # an empty, disabled host may be rebooted; it comes back enabled in xapi
    assert fleet.api.host_power_action("pool-a", "reboot") == {"host": "pool-a",
                                                               "action": "reboot"}
    fleet.api.set_host_maintenance("pool-a", False)
    with fleet.pool.session() as x:
        assert x.host.get_enabled(host_ref(fleet.pool, "127.0.0.1")) is True
    assert {s["host"]: s for s in fleet.db.list_services()}["pool-a"]["disabled"] is False


def test_join_the_pool_and_leave_it(fleet):
    wrong = "wrong-s3cret-0f9a"
    with pytest.raises(exceptions.ComputeAgentError) as err:
        fleet.api.join_pool("joiner", "127.0.0.1", USER, wrong)
    assert err.value.code == "SESSION_AUTHENTICATION_FAILED"
    assert wrong not in str(err.value)
    joined = fleet.api.join_pool("joiner", "127.0.0.1", USER, PASSWORD, timeout=60)
    assert joined["pool"]["role"] == "member"
    assert sorted(h["address"] for h in joined["pool"]["hosts"]) == [
        "127.0.0.1", "127.0.0.2", "127.0.0.3", JOINER]
    assert [h["address"] for h in joined["pool"]["hosts"] if h["this_host"]] == [JOINER]
    # it builds in the pool now, on its own host, on the pool's shared storage
    uuid = fleet.build("joiner")
    _, vm = one_vm_in_fleet(fleet, uuid, fleet.pool)
    assert vm["resident_on"] == host_ref(fleet.pool, JOINER)
    # and its instances move inside the pool
    inst = fleet.migrate(uuid, "joiner", "pool-b")
    assert (inst["host"], inst["fault"]) == ("pool-b", None)
    with pytest.raises(exceptions.ComputeAgentError) as err:  # a member joins no pool
        fleet.api.join_pool("joiner", "127.0.0.1", USER, PASSWORD, timeout=60)
    assert err.value.code == "JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS"
    left = fleet.api.leave_pool("joiner", timeout=60)
    assert left["pool"]["role"] == "coordinator"
    assert [h["address"] for h in left["pool"]["hosts"]] == [JOINER]
    with fleet.pool.session() as x:
        assert JOINER not in {r["address"] for r in x.host.get_all_records().values()}
    # standalone again: it builds on its own host
    uuid = fleet.build("joiner")
    assert len(vms_of(fleet.joiner, uuid)) == 1 and vms_of(fleet.pool, uuid) == {}
    assert wrong not in fleet.agents["joiner"].log_tail(10**7)


# -- resize to another host (cold migration + the destination's resize) ------------------

OLD_FLAVOR = {"vcpus": 1, "memory_mb": 256, "root_gb": 1}
NEW_FLAVOR = {"vcpus": 2, "memory_mb": 512, "root_gb": 2}


def _stopped_with_data(fleet: Fleet) -> tuple[str, bytes]:
    uuid = fleet.build("pool-a")
    _, vm = one_vm_in_fleet(fleet, uuid, fleet.pool)
    data = os.urandom(1024 * 1024) + b"resized"
    put_data(fleet.pool, root_vdi(fleet.pool, vm), data)
    fleet.api.stop_instance("pool-a", uuid, confirm=True)
    assert fleet.settled(uuid)["vm_state"] == "stopped"
    return uuid, data


def _resized(fleet: Fleet, uuid: str) -> dict:
    def done() -> dict | None:
        inst = fleet.db.get_instance(uuid)
        return inst if inst["vm_state"] == "resized" and inst["task_state"] is None else None

    return wait_until(done, SETTLE_S, f"instance {uuid} to be resized", 0.1)


def _vm_flavor(sim: SimProcess, vm: dict) -> dict:
    with sim.session() as x:
        size = int(x.VDI.get_virtual_size(root_vdi(sim, vm)))
    return {"vcpus": int(vm["VCPUs_max"]), "memory_mb": int(vm["memory_static_max"]) >> 20,
            "root_gb": size // GiB}


def _assert_resized_at_other(fleet: Fleet, uuid: str, data: bytes) -> None:
    inst = _resized(fleet, uuid)
    assert (inst["host"], inst["flavor"], inst["fault"]) == ("other", NEW_FLAVOR, None)
    _, vm = one_vm_in_fleet(fleet, uuid, fleet.other)
    assert vm["power_state"] == "Halted" and ownership.owned_by(vm, "other")
    assert _vm_flavor(fleet.other, vm) == NEW_FLAVOR
    assert read_data(fleet.other, root_vdi(fleet.other, vm), len(data)) == data
    # the root disk and its backup clone (what a revert needs), nothing at the source
    assert len(vdis_of(fleet.other, uuid)) == 2
    no_disks_left(fleet, uuid, fleet.other)
    rows = im.InstanceMigrations(fleet.db).list_for(uuid)
    assert [(r["kind"], r["status"], r["source_host"], r["dest_host"]) for r in rows] == [
        ("resize", im.COMPLETED, "pool-a", "other")]


def test_resize_to_another_pool_then_confirm(fleet):
    uuid, data = _stopped_with_data(fleet)
    fleet.api.migrate_instance("pool-a", uuid, "other", flavor=NEW_FLAVOR, confirm=True)
    _assert_resized_at_other(fleet, uuid, data)
    # confirmed on the agent that owns it now
    with pytest.raises(exceptions.ComputeAgentError):
        fleet.api.confirm_resize("pool-a", uuid, confirm=True)
    fleet.api.confirm_resize("other", uuid, confirm=True)
    inst = fleet.settled(uuid)
    assert (inst["host"], inst["vm_state"], inst["flavor"], inst["fault"]) == (
        "other", "stopped", NEW_FLAVOR, None)
    _, vm = one_vm_in_fleet(fleet, uuid, fleet.other)
    assert len(vdis_of(fleet.other, uuid)) == 1  # the backup is gone
    no_disks_left(fleet, uuid, fleet.other)
    assert read_data(fleet.other, root_vdi(fleet.other, vm), len(data)) == data
    fleet.api.start_instance("other", uuid, confirm=True)
    assert fleet.settled(uuid)["vm_state"] == "active"


def test_resize_to_another_pool_then_revert(fleet):
    uuid, data = _stopped_with_data(fleet)
    fleet.api.migrate_instance("pool-a", uuid, "other", flavor=NEW_FLAVOR, confirm=True)
    _assert_resized_at_other(fleet, uuid, data)
    fleet.api.revert_resize("other", uuid, confirm=True)
    _assert_back_home(fleet, uuid, data)


def _assert_back_home(fleet: Fleet, uuid: str, data: bytes) -> None:
    """Reverted: on pool-a again, as it was before the resize."""

    def home() -> dict | None:
        inst = fleet.db.get_instance(uuid)
        return inst if inst["host"] == "pool-a" and inst["task_state"] is None else None

    inst = wait_until(home, SETTLE_S, "the instance back on pool-a", 0.1)
    assert (inst["vm_state"], inst["flavor"], inst["fault"]) == ("stopped", OLD_FLAVOR, None)
    _, vm = one_vm_in_fleet(fleet, uuid, fleet.pool)
    assert ownership.owned_by(vm, "pool-a") and vm["power_state"] == "Halted"
    assert _vm_flavor(fleet.pool, vm) == OLD_FLAVOR
    assert read_data(fleet.pool, root_vdi(fleet.pool, vm), len(data)) == data
    assert len(vdis_of(fleet.pool, uuid)) == 1
    no_disks_left(fleet, uuid, fleet.pool)
    rows = im.InstanceMigrations(fleet.db).list_for(uuid)
    assert [(r["kind"], r["status"], r["source_host"], r["dest_host"]) for r in rows] == [
        ("resize", im.COMPLETED, "pool-a", "other"), ("cold", im.COMPLETED, "other", "pool-a")]
    fleet.api.start_instance("pool-a", uuid, confirm=True)
    assert fleet.settled(uuid)["vm_state"] == "active"


def test_destination_agent_killed_mid_revert(fleet):
    uuid, data = _stopped_with_data(fleet)
    fleet.api.migrate_instance("pool-a", uuid, "other", flavor=NEW_FLAVOR, confirm=True)
    _assert_resized_at_other(fleet, uuid, data)
    fleet.other.control.set_duration("VDI.destroy", 3)  # the grown disk, removed by the revert
    try:
        fleet.api.revert_resize("other", uuid, confirm=True)
        _wait_task_recorded(fleet, uuid, "revert_resize")
        fleet.agents["other"].kill9()
        fleet.restart("other")
        # recovery completes the revert there, then moves the instance back
        _assert_back_home(fleet, uuid, data)
    finally:
        fleet.other.control.clear()


def test_source_agent_killed_mid_resize_move(fleet):
    uuid, data = _stopped_with_data(fleet)
    fleet.pool.control.set_duration("VM.migrate_send", 3)
    try:
        fleet.api.migrate_instance("pool-a", uuid, "other", flavor=NEW_FLAVOR, confirm=True)
        _wait_task_recorded(fleet, uuid, "migrate")
        fleet.agents["pool-a"].kill9()
        fleet.restart("pool-a")
        # the restarted source finds the VM moved, hands the instance over
        # and asks the destination to resize it
        _assert_resized_at_other(fleet, uuid, data)
    finally:
        fleet.pool.control.clear()
    fleet.api.confirm_resize("other", uuid, confirm=True)
    inst = fleet.settled(uuid)
    assert (inst["host"], inst["vm_state"], inst["flavor"]) == ("other", "stopped", NEW_FLAVOR)
    assert len(vdis_of(fleet.other, uuid)) == 1
    no_disks_left(fleet, uuid, fleet.other)
