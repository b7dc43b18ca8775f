"""Rescue from a Glance image end to end: the real Glance, a ``xapi-sim``
process, a ``compute-agent`` process, RabbitMQ and SQLite. The rescue VM's
first disk holds exactly the image's bytes (read back with GET
/export_raw_vdi), its second is the instance's root disk; unrescue removes
the rescue VM and the disk made from the image (the per-SR cache base stays
cached); a rescue from a missing image ends IMAGE_NOT_FOUND with the
instance back in its previous state, a fault, and nothing left in dom0."""

from __future__ import annotations

import os
import urllib.request
import uuid as uuidlib

import pytest

from compute_agent import exceptions
from compute_agent.db.api import Database
from compute_agent.driver.xenapi import image_cache, ownership
from tests.functional.glance_fixture import glance, glance_agent  # noqa: F401  (a fixture)
from tests.functional.harness import SimProcess, sdk_session, wait_until

pytestmark = pytest.mark.timeout(120)
MiB = 1024 * 1024


def settled(db: Database, uuid: str, timeout: float = 30) -> dict:
    def check():
        try:
            inst = db.get_instance(uuid, internal=True)
        except exceptions.InstanceNotFound:
            return None
        return inst if inst["task_state"] is None and inst["vm_state"] != "building" else None
    return wait_until(check, timeout, f"{uuid} to settle", 0.1)


def dom0(sim: SimProcess) -> tuple[dict, dict]:
    with sim.session() as x:
        return x.VM.get_all_records(), x.VDI.get_all_records()


def disk_head(sim: SimProcess, vdi: str, n: int) -> bytes:
    with sdk_session(sim.url, "rescue-test") as session:
        url = (f"{sim.url}/export_raw_vdi?session_id={session._session}"
               f"&vdi={vdi}&format=raw")
        with urllib.request.urlopen(url, timeout=30) as r:  # noqa: S310 - the test's dom0
            return r.read(n)


def test_rescue_from_glance_image_then_unrescue_and_a_missing_image(
        tmp_path, glance):  # noqa: F811
    data = bytes(512) + os.urandom(2 * MiB - 512)
    image = glance.create_image(data)
    with glance_agent(tmp_path, glance, "rescueimg") as stack:
        sim, rpc, host, db = stack.sim, stack.rpc, stack.host, stack.db
        uuid = str(uuidlib.uuid4())
        rpc.api.build_instance(host, {
            "uuid": uuid, "name": f"resc-{uuid[:6]}",
            "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1},
            "image": {"id": None, "url": None, "disk_format": None},
            "networks": [], "metadata": {}}, confirm=True)
        assert settled(db, uuid)["vm_state"] == "active"
        vms, vdis = dom0(sim)
        (own,) = [r for r, v in vms.items() if ownership.instance_of(v) == uuid]
        (root,) = [r for r, v in vdis.items() if ownership.instance_of(v) == uuid]
        before_vdis = set(vdis)

        rpc.api.rescue_instance(host, uuid, {"id": image["id"], "url": None,
                                             "disk_format": None}, confirm=True)
        inst = settled(db, uuid)
        assert (inst["vm_state"], inst["fault"]) == ("rescued", None), inst
        with sim.session() as x:
            (rescue,) = [r for r, v in x.VM.get_all_records().items()
                         if ownership.instance_of(v) == uuid and ownership.is_rescue(v)]
            assert x.VM.get_power_state(rescue) == "Running"
            assert x.VM.get_power_state(own) == "Halted"
            by_dev = {x.VBD.get_userdevice(b): x.VBD.get_VDI(b) for b in x.VM.get_VBDs(rescue)}
        assert by_dev["1"] == root
        assert disk_head(sim, by_dev["0"], len(data) + MiB) == data
        bases = {r for r, v in dom0(sim)[1].items()
                 if v["other_config"].get(image_cache.STATE) == "ready"}
        assert len(bases) == 1 and by_dev["0"] not in bases

        rpc.api.unrescue_instance(host, uuid, confirm=True)
        assert settled(db, uuid)["vm_state"] == "active"
        vms, vdis = dom0(sim)
        assert [r for r, v in vms.items() if ownership.instance_of(v) == uuid] == [own]
        assert vms[own]["power_state"] == "Running"
        assert set(vdis) == before_vdis | bases  # the image-made disk gone, the base cached

        missing = str(uuidlib.uuid4())
        rpc.api.rescue_instance(host, uuid, {"id": missing}, confirm=True)
        inst = settled(db, uuid)
        assert (inst["vm_state"], inst["power_state"]) == ("active", 1), inst
        assert inst["fault"]["code"] == "IMAGE_NOT_FOUND", inst["fault"]
        assert missing in str(inst["fault"])
        after_vms, after_vdis = dom0(sim)
        assert set(after_vms) == set(vms) and set(after_vdis) == set(vdis)
        assert after_vms[own]["power_state"] == "Running"
        assert glance.downloads(image["id"]) == 1
