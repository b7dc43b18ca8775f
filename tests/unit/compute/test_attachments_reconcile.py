"""Reconciling attachment rows with what the hypervisor has
(compute/attachments.py), on a real manager over fake:// with the fake
driver and SQLite: each row of the rule table in docs/volumes.md."""

from __future__ import annotations

import time
import uuid as uuidlib

import pytest

from compute_agent import exceptions
from compute_agent.db.attachments import AttachmentTable
from tests.unit.conftest import RPC_HOST

WAIT = 10  # bound for the fake build; never a speed assertion
INFO = {"driver_volume_type": "iscsi",
        "data": {"target_portal": "192.0.2.1", "target_iqn": "iqn.x:1", "target_lun": 0}}


def build(api) -> str:
    body = {"uuid": str(uuidlib.uuid4()), "name": "vm",
            "flavor": {"vcpus": 1, "memory_mb": 128, "root_gb": 1},
            "image": {"id": None, "url": None, "disk_format": None}}
    api.build_instance(RPC_HOST, body, confirm=True)
    deadline = time.monotonic() + WAIT
    while api.get_instance(RPC_HOST, body["uuid"])["vm_state"] != "active":
        assert time.monotonic() < deadline, "the build did not finish"
        time.sleep(0.02)
    return body["uuid"]


@pytest.fixture
def setup(rpc_env, agent_db):
    api, svc, driver, notes = rpc_env
    uuid = build(api)
    return api, svc.manager, driver, uuid, AttachmentTable(agent_db, "volume"), \
        AttachmentTable(agent_db, "port")


def test_rows_and_driver_agreeing_change_nothing(setup):
    api, manager, driver, uuid, volumes, ports = setup
    api.attach_volume(RPC_HOST, uuid, "v1", INFO)
    api.attach_interface(RPC_HOST, uuid, {"id": "p1", "mac_address": "02:00:00:00:00:01"})
    assert manager._attachments.reconcile(set()) == 0


def test_row_whose_device_is_gone_is_removed_and_an_unrecorded_one_adopted(setup):
    api, manager, driver, uuid, volumes, ports = setup
    api.attach_volume(RPC_HOST, uuid, "v1", INFO)
    state = driver._devices_state()
    del state["volumes"][(uuid, "v1")]
    state["ports"][(uuid, "p9")] = {"mac_address": "02:00:00:00:00:09", "network": "br-int",
                                    "device": "1", "vif_uuid": None}
    assert manager._attachments.reconcile(set()) == 2
    assert volumes.list(uuid) == []
    (row,) = ports.list(uuid)
    assert (row["port_id"], row["status"], row["mac_address"]) == \
        ("p9", "attached", "02:00:00:00:00:09")


def test_interrupted_attach_is_undone_with_a_fault_and_detach_is_finished(setup, agent_db):
    api, manager, driver, uuid, volumes, ports = setup
    volumes.add({"instance_uuid": uuid, "volume_id": "v2", "host": RPC_HOST,
                 "status": "attaching", "target_portal": "192.0.2.1", "target_iqn": "iqn.x:1"})
    api.attach_volume(RPC_HOST, uuid, "v3", INFO)
    volumes.update(uuid, "v3", {"status": "detaching"})
    assert manager._attachments.reconcile(set()) == 2
    assert volumes.list(uuid) == []
    assert driver.list_attachments({"uuid": uuid})["volumes"] == {}
    fault = api.get_instance(RPC_HOST, uuid)["fault"]
    assert (fault["code"], fault["params"]) == ("OPERATION_INTERRUPTED", [uuid, "attach_volume"])


def test_attaching_row_the_driver_finished_is_marked_attached(setup):
    api, manager, driver, uuid, volumes, ports = setup
    api.attach_volume(RPC_HOST, uuid, "v4", INFO)
    volumes.update(uuid, "v4", {"status": "attaching"})
    assert manager._attachments.reconcile(set()) == 1
    assert [r["status"] for r in volumes.list(uuid)] == ["attached"]


def test_busy_instances_are_left_alone_and_deleted_ones_released(setup, rpc_env):
    api, manager, driver, uuid, volumes, ports = setup
    notes = rpc_env[3]
    api.attach_volume(RPC_HOST, uuid, "v5", INFO)
    volumes.update(uuid, "v5", {"status": "detaching"})
    assert manager._attachments.reconcile({uuid}) == 0
    assert [r["status"] for r in volumes.list(uuid)] == ["detaching"]
    api.terminate_instance(RPC_HOST, uuid)
    notes.wait_for("instance.delete.end")
    assert volumes.list(uuid) == [] and ports.list(uuid) == []


def test_volume_on_another_instance_is_refused(setup):
    api, manager, driver, uuid, volumes, ports = setup
    api.attach_volume(RPC_HOST, uuid, "v6", INFO)
    other = build(api)
    with pytest.raises(exceptions.ComputeAgentError) as info:
        api.attach_volume(RPC_HOST, other, "v6", INFO)
    assert (info.value.code, info.value.params) == ("ATTACHMENT_EXISTS", ["volume", "v6", uuid])
    assert volumes.list(other) == []
