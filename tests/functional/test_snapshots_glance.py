"""Snapshots into the real Glance, end to end: a ``compute-agent`` process
(RabbitMQ, SQLite), a ``xapi-sim`` process and the real Glance.

snapshot_instance answers {image_id} at once; the instance keeps running,
goes through task_state image_snapshot and back to active; the image ends
active in Glance, and an instance booted from it has the same disk. A dom0
export failure and a kill -9 mid-snapshot both end with the instance back
in its state with a fault, no snapshot VM or disk in dom0 and no half image
in Glance.
"""

from __future__ import annotations

import os
import urllib.request
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from compute_agent import exceptions
from compute_agent.db.api import Database
from tests.functional.glance_fixture import (
    GlanceProcess,
    glance,  # noqa: F401  (a fixture)
    glance_agent,
)
from tests.functional.harness import AgentProcess, SimProcess, sdk_session, wait_until
from tests.functional.rpc_client import Rpc

pytestmark = pytest.mark.timeout(240)
MiB = 1024 * 1024


@dataclass
class Stack:
    sim: SimProcess
    agent: AgentProcess
    rpc: Rpc
    db: Database
    glance: GlanceProcess

    @property
    def host(self) -> str:
        return self.agent.host

    def boot(self, image_id: str) -> str:
        body = {"uuid": str(uuidlib.uuid4()), "name": f"snap-{uuidlib.uuid4().hex[:6]}",
                "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1},
                "image": {"id": image_id, "url": None, "disk_format": None},
                "networks": [], "metadata": {}}
        self.rpc.api.build_instance(self.host, body)
        assert self.settled(body["uuid"])["vm_state"] == "active"
        return body["uuid"]

    def settled(self, uuid: str, timeout: float = 60) -> dict:
        def check():
            try:
                inst = self.db.get_instance(uuid, internal=True)
            except exceptions.InstanceNotFound:
                return None
            if inst["task_state"] is None and inst["vm_state"] != "building":
                return inst
            return None
        return wait_until(check, timeout, f"{uuid} to settle", 0.1)

    def root_head(self, uuid: str, n: int) -> bytes:
        with sdk_session(self.sim.url, "snapshot-test") as session:
            x = session.xenapi
            vm = next(r for r, rec in x.VM.get_all_records().items()
                      if rec["other_config"].get("compute_agent_instance_uuid") == uuid
                      and not rec["is_a_snapshot"])
            vdi = next(x.VBD.get_VDI(b) for b in x.VM.get_VBDs(vm)
                       if x.VBD.get_userdevice(b) == "0")
            url = (f"{self.sim.url}/export_raw_vdi?session_id={session._session}&vdi={vdi}"
                   "&format=raw")
            with urllib.request.urlopen(url, timeout=30) as r:
                return r.read(n)

    def snapshot_leftovers(self) -> list:
        with self.sim.session() as x:
            return [r["name_label"] for r in x.VM.get_all_records().values()
                    if r["is_a_snapshot"]] + \
                   [r["name_label"] for r in x.VDI.get_all_records().values()
                    if r["is_a_snapshot"]]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, glance) -> Iterator[Stack]:  # noqa: F811
    workdir = tmp_path_factory.mktemp("snapshots")
    with glance_agent(workdir, glance, "snap",
                      {"tasks": {"progress_write_interval": 0.05}}) as s:
        yield Stack(s.sim, s.agent, s.rpc, s.db, glance)


def test_snapshot_of_a_running_instance_boots_again_with_the_same_disk(stack):
    data = bytes(512) + os.urandom(3 * MiB)
    source = stack.glance.create_image(data)
    uuid = stack.boot(source["id"])
    answer = stack.rpc.api.snapshot_instance(stack.host, uuid, {"name": "snap-1",
                                                                "purpose": "test"})
    image_id = answer["image_id"]
    inst = stack.settled(uuid)
    assert (inst["vm_state"], inst["power_state"], inst["fault"]) == ("active", 1, None)
    image = stack.glance.image(image_id)
    assert image["status"] == "active" and image["disk_format"] == "vhd"
    assert image["instance_uuid"] == uuid and image["purpose"] == "test"
    assert stack.snapshot_leftovers() == []
    # VM.snapshot and the export were tracked tasks of the snapshot operation
    tasks = [t for t in stack.db.list_tracked_tasks(status=None, instance_uuid=uuid)
             if t["operation"] == "snapshot"]
    assert len(tasks) >= 2 and all(t["status"] == "success" for t in tasks), tasks
    # the snapshot boots, and its disk is the instance's
    clone = stack.boot(image_id)
    assert stack.root_head(clone, len(data) + MiB) == data + bytes(MiB)


def test_bad_snapshot_requests_are_refused_and_make_no_image(stack):
    before = {i["id"] for i in stack.glance.images()}
    with pytest.raises(exceptions.InstanceNotFound):
        stack.rpc.api.snapshot_instance(stack.host, str(uuidlib.uuid4()), {"name": "x"})
    with pytest.raises(exceptions.InvalidInput) as e:
        stack.rpc.api.snapshot_instance(stack.host, str(uuidlib.uuid4()),
                                        {"name": "x", "disk_format": "qcow2"})
    assert e.value.params[0] == "image.disk_format"
    assert {i["id"] for i in stack.glance.images()} == before


def test_dom0_export_failure_leaves_no_snapshot_and_no_image(stack):
    source = stack.glance.create_image(bytes(512) + os.urandom(MiB))
    uuid = stack.boot(source["id"])
    stack.sim.control.fail("GET /export_raw_vdi", ["SR_BACKEND_FAILURE_46", "", "injected"])
    image_id = stack.rpc.api.snapshot_instance(stack.host, uuid, {"name": "doomed"})["image_id"]
    inst = stack.settled(uuid)
    assert inst["vm_state"] == "active" and inst["power_state"] == 1
    assert inst["fault"]["code"] == "SR_BACKEND_FAILURE_46"
    assert stack.glance.image(image_id) is None
    assert stack.snapshot_leftovers() == []


def test_kill9_mid_snapshot_settles_clean(stack):
    source = stack.glance.create_image(bytes(512) + os.urandom(MiB))
    uuid = stack.boot(source["id"])
    # dom0 holds the export: the agent dies with a snapshot VM made and an
    # image queued in Glance
    stack.sim.control.set_latency("GET /export_raw_vdi", 3.0)
    image_id = stack.rpc.api.snapshot_instance(stack.host, uuid, {"name": "cut"})["image_id"]
    wait_until(lambda: stack.snapshot_leftovers(), 20, "the snapshot VM", 0.05)
    stack.agent.kill9()
    stack.sim.control.set_latency("GET /export_raw_vdi", 0.0)
    stack.agent.start()
    stack.agent.wait_serving(stack.rpc.api)
    inst = stack.settled(uuid)
    assert inst["vm_state"] == "active" and inst["power_state"] == 1
    assert inst["fault"] is not None
    assert stack.snapshot_leftovers() == []
    image = stack.glance.image(image_id)
    assert image is None or image["status"] == "killed", image


def test_client_snapshot_command(stack):
    import io
    import json

    from compute_agent.cmd import client

    source = stack.glance.create_image(bytes(512) + os.urandom(MiB))
    uuid = stack.boot(source["id"])
    out, err = io.StringIO(), io.StringIO()
    code = client.main(["--json", "snapshot", uuid, "from-cli", "--host", stack.host,
                        "--property", "os_distro=demo"],
                       conf=stack.rpc.conf, api=stack.rpc.api, out=out, err=err)
    assert code == 0, err.getvalue()
    image_id = json.loads(out.getvalue())["image_id"]
    assert stack.settled(uuid)["fault"] is None
    image = stack.glance.image(image_id)
    assert (image["name"], image["os_distro"], image["status"]) == ("from-cli", "demo", "active")
