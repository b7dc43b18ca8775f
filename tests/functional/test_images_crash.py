"""kill -9 of the agent in the middle of an image import, end to end: the
real Glance, a ``xapi-sim`` process, a ``compute-agent`` process, RabbitMQ
and SQLite. The import's task was recorded before the agent waited on it;
after the restart the build settles in error with a fault, the
half-imported cache VDI is gone, nothing of the instance is left in dom0,
and the next build of the image works."""

from __future__ import annotations

import os
import uuid as uuidlib

import pytest

from compute_agent import exceptions
from compute_agent.db.api import Database
from compute_agent.driver.xenapi import image_cache
from tests.functional.glance_fixture import glance, glance_agent  # noqa: F401  (a fixture)
from tests.functional.harness import wait_until

pytestmark = pytest.mark.timeout(180)


def body(image_id: str) -> dict:
    return {"uuid": str(uuidlib.uuid4()), "name": f"img-{uuidlib.uuid4().hex[:6]}",
            "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1},
            "image": {"id": image_id, "url": None, "disk_format": None},
            "networks": [], "metadata": {}}


def settled(db: Database, uuid: str, timeout: float = 60) -> dict:
    def check():
        try:
            inst = db.get_instance(uuid, internal=True)
        except exceptions.InstanceNotFound:
            return None
        if inst["task_state"] is None and inst["vm_state"] != "building":
            return inst
        return None
    return wait_until(check, timeout, f"{uuid} to settle", 0.2)


def test_kill9_mid_import_settles_clean(tmp_path, glance):  # noqa: F811
    image = glance.create_image(bytes(512) + os.urandom(4 * 1024 * 1024))
    with glance_agent(tmp_path, glance, "imgcrash") as stack:
        sim, rpc, host, agent, db = stack.sim, stack.rpc, stack.host, stack.agent, stack.db
        # dom0 holds the import request before taking any data: the agent is
        # waiting on a recorded task with a half-made cache VDI when it dies
        sim.control.set_latency("PUT /import_raw_vdi", 3.0)
        first = body(image["id"])
        rpc.api.build_instance(host, first)

        def importing():
            with sim.session() as x:
                recs = x.VDI.get_all_records().values()
                return any(r["other_config"].get(image_cache.STATE) == "importing"
                           for r in recs)
        wait_until(importing, 30, "the import to start", 0.1)
        wait_until(lambda: db.list_tracked_tasks(agent_host=host), 10, "the task row")
        agent.kill9()
        sim.control.set_latency("PUT /import_raw_vdi", 0.0)
        agent.start()
        agent.wait_serving(rpc.api)

        inst = settled(db, first["uuid"])
        assert inst["vm_state"] == "error" and inst["fault"] is not None, inst
        with sim.session() as x:
            vms = [r for r in x.VM.get_all_records().values()
                   if r["other_config"].get("compute_agent_instance_uuid") == first["uuid"]]
            left = [r for r in x.VDI.get_all_records().values()
                    if r["other_config"].get("compute_agent_instance_uuid") == first["uuid"]
                    or r["other_config"].get(image_cache.STATE) == "importing"]
        assert vms == [] and left == [], (vms, left)

        second = body(image["id"])
        rpc.api.build_instance(host, second)
        assert settled(db, second["uuid"])["vm_state"] == "active"
        with sim.session() as x:
            ready = [r["other_config"].get(image_cache.GROWN)
                     for r in x.VDI.get_all_records().values()
                     if r["other_config"].get(image_cache.STATE) == "ready"]
        assert sorted(ready, key=str) == [str(1024**3), None]  # image-sized and 1 GiB
