"""The agent with ``compute_driver = libvirt`` end to end: a real
``compute-agent`` process on libvirt's ``test:///<file>`` hypervisor (its
state lives inside the agent process, started from the node file), real
RabbitMQ, PostgreSQL; the database read directly and the hypervisor's side
read through the agent's own ``get_host_status`` (the instances libvirt
holds for it), since no other process can see its in-process libvirt.

- The lifecycle (boot, stop, start, reboot SOFT and HARD, delete) through
  ComputeAPI, the database and libvirt agreeing after every step.
- ``kill -9`` in the middle of an image import (a slow HTTP source), the
  restart holding the half-written volume: the build ends in error and
  the volume is removed.
- ``kill -9`` in the middle of builds: the node file is rewritten with what
  a persistent libvirt would still hold for the killed agent (the domains
  of built instances, a half-built one's domain or volume, and a leftover
  of an instance the database never heard of) and the agent restarted on
  it: every instance settles, and nothing is left in libvirt that the
  database does not know.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from compute_agent import exceptions
from tests.functional.agent_stack import AgentStack
from tests.functional.harness import wait_until
from tests.functional.image_http import http_server
from tests.functional.libvirt_node import libvirt_agent_options, node_xml

pytestmark = pytest.mark.timeout(120)

SETTLE_S = 30.0
RUNNING, SHUTDOWN = 1, 4


class LibvirtStack(AgentStack):
    """The agent stack (agent_stack.py) with the libvirt driver on a node
    file of its own, on PostgreSQL, and what these tests do with it."""

    def __init__(self, workdir: Path, concurrency: str = "threading"):
        self.node = workdir / "node.xml"
        self.pool_dir = workdir / "pool"  # where images are written into volumes
        self.pool_dir.mkdir()
        super().__init__(
            workdir, "libvirt", backend="postgresql", driver="libvirt", concurrency=concurrency,
            options={"DEFAULT": {"reap_orphans": "true", "max_concurrent_builds": 2},
                     **libvirt_agent_options(self.node)})
        self.node.write_text(node_xml(self.host, {}, [], self.pool_dir))

    def start(self) -> LibvirtStack:
        super().start()
        assert self.pong["driver"] == "LibvirtDriver", self.pong
        return self

    def body(self, name: str) -> dict:
        return {"uuid": str(uuidlib.uuid4()), "name": name,
                "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1},
                "image": {"id": None, "url": None, "disk_format": None},
                "networks": [], "metadata": {}}

    def settle(self, uuid: str, want: str | None = None) -> dict:
        def check():
            try:
                inst = self.api.get_instance(self.host, uuid)
            except exceptions.InstanceNotFound:
                return None  # a build cast the agent has not consumed yet
            if inst["task_state"] is None and inst["vm_state"] != "building" and (
                    want is None or inst["vm_state"] == want):
                return inst
            return None
        return wait_until(check, SETTLE_S, f"{uuid} to settle ({want})", 0.05)

    def hypervisor(self) -> dict[str, int]:
        status = self.api.get_host_status(self.host)
        assert status["hypervisor_available"] is True, status
        return status["hypervisor_instances"]

    def assert_agree(self) -> dict[str, int]:
        """libvirt holds a domain for exactly the instances the database
        shows with a VM, in the power state it shows; nothing else."""
        rows = self.db.list_instances(host=self.host, include_deleted=True, internal=True)
        expected = {}
        for row in rows:
            assert row["task_state"] is None, row
            if row["vm_state"] in ("active", "stopped", "paused", "suspended"):
                expected[row["uuid"]] = row["power_state"]
            elif row["vm_state"] == "error":
                assert row["fault"] is not None, row
        assert self.hypervisor() == expected
        return expected


@pytest.fixture
def make_stack(tmp_path) -> Iterator[Callable[[str], LibvirtStack]]:
    with contextlib.ExitStack() as made:  # each stack closed after the test
        yield lambda concurrency="threading": made.enter_context(
            LibvirtStack(tmp_path, concurrency))


@pytest.fixture
def stack(make_stack):
    return make_stack()


# Under eventlet, libvirt's event loop must run on a native thread and hand
# events to the green world: both backends run the lifecycle.
@pytest.mark.parametrize("backend", ["threading", "eventlet"])
def test_lifecycle_through_rabbitmq_with_libvirt_agreeing(make_stack, backend):
    stack = make_stack(backend)
    stack.start()
    assert stack.api.ping(stack.host)["backend"] == backend
    api, host = stack.api, stack.host
    caps = api.get_host_status(host)["capabilities"]
    assert caps["driver"] == "libvirt" and caps["virt_type"] == "xen"
    assert {"spawn", "pause", "suspend"} <= set(caps["operations"])
    assert caps["uri"] == f"test://{stack.node}"

    body = stack.body("life")
    uuid = body["uuid"]
    api.build_instance(host, body)
    inst = stack.settle(uuid, "active")
    assert (inst["power_state"], inst["fault"]) == (RUNNING, None)
    assert stack.assert_agree() == {uuid: RUNNING}
    resources = api.get_host_status(host)["resources"]
    assert resources["hypervisor_type"] == "xen" and resources["vcpus"] > 0

    steps = [
        # confirm=True: returns once the agent accepted the request.
        (lambda: api.stop_instance(host, uuid, confirm=True), "stopped", SHUTDOWN),
        (lambda: api.start_instance(host, uuid, confirm=True), "active", RUNNING),
        (lambda: api.reboot_instance(host, uuid, "SOFT", confirm=True), "active", RUNNING),
        (lambda: api.reboot_instance(host, uuid, "HARD", confirm=True), "active", RUNNING),
    ]
    for request, vm_state, power in steps:
        request()
        inst = stack.settle(uuid, vm_state)
        assert inst["power_state"] == power and inst["fault"] is None, inst
        assert stack.assert_agree() == {uuid: power}

    api.terminate_instance(host, uuid, confirm=True)
    stack.settle(uuid, "deleted")
    assert stack.assert_agree() == {}
    assert [(a["action"], a["result"]) for a in stack.db.list_actions(uuid)] == [
        ("create", "success"), ("stop", "success"), ("start", "success"),
        ("reboot", "success"), ("reboot", "success"), ("delete", "success")]
    # Each libvirt call was recorded as a step of its action, all ended.
    assert stack.db.list_tracked_tasks(host, status="pending") == []
    assert stack.agent.stop() == 0


def test_kill9_mid_build_then_restart_settles_everything(stack):
    stack.start()
    api, host = stack.api, stack.host
    bodies = [stack.body(f"crash-{i}") for i in range(8)]
    for body in bodies:
        api.build_instance(host, body)
    # Some builds have run, some are running or queued: kill the agent.
    wait_until(lambda: any(r["vm_state"] == "active" for r in
                           stack.db.list_instances(host=host, internal=True)),
               SETTLE_S, "a first build to finish", 0.005)
    stack.agent.kill9()
    rows = {r["uuid"]: r for r in stack.db.list_instances(host=host, internal=True)}
    built = [u for u, r in rows.items() if r["vm_state"] == "active" and not r["task_state"]]
    half = [u for u, r in rows.items() if u not in built]
    assert built, rows

    # What a persistent libvirt still holds: the built instances' running
    # domains and volumes; of the interrupted builds, one with its domain
    # defined and running, one with only its volume; and the domain and
    # volume of an instance the database never recorded.
    stray = str(uuidlib.uuid4())
    domains = {u: "running" for u in built}
    volumes = [f"instance-{u}-root" for u in built]
    if half:
        domains[half[0]] = "running"
        volumes.append(f"instance-{half[0]}-root")
    if len(half) > 1:
        volumes.append(f"instance-{half[1]}-root")
    domains[stray] = "shutoff"
    volumes.append(f"instance-{stray}-root")
    stack.node.write_text(node_xml(host, domains, volumes, stack.pool_dir))

    stack.start()
    for body in bodies:
        inst = stack.settle(body["uuid"])
        assert inst["vm_state"] in ("active", "error"), inst
    # The stray is reaped (reap_orphans), half-built ones settle by what
    # libvirt shows, the built ones are untouched.
    held = wait_until(lambda: (h := stack.hypervisor()) and stray not in h and h, SETTLE_S,
                      "the stray domain to be reaped", 0.1)
    expected = stack.assert_agree()
    assert held == expected
    for uuid in built:
        assert expected[uuid] == RUNNING
    if half:
        assert stack.api.get_instance(host, half[0])["vm_state"] == "active"
    for uuid in half[1:]:
        inst = stack.api.get_instance(host, uuid)
        assert inst["vm_state"] in ("active", "error"), inst
        if inst["vm_state"] == "error":
            assert uuid not in held  # its leftover volume is gone too
    print(f"\nbuilt before the kill: {len(built)}, interrupted: {len(half)}; "
          f"after recovery: {sorted(r['vm_state'] for r in stack.db.list_instances(host=host))}")


def test_kill9_mid_image_import_then_restart_removes_the_volume(stack, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    data = hashlib.sha256(b"slow image").digest() * 2048 * 64  # 4 MiB
    (www / "disk.raw").write_bytes(data)
    stack.start()
    api, host = stack.api, stack.host
    body = stack.body("importing")
    uuid = body["uuid"]
    volume = stack.pool_dir / f"instance-{uuid}-root"
    # 64 KiB every 50 ms: the import takes about 3 s.
    with http_server(www, pause=0.05) as base:
        body["image"] = {"id": None, "url": f"{base}/disk.raw", "disk_format": "raw"}
        api.build_instance(host, body)
        wait_until(lambda: volume.exists() and volume.stat().st_size >= 256 * 1024, SETTLE_S,
                   "the import to be under way", 0.01)
        steps = [t for t in stack.db.list_tracked_tasks(host, status="pending")
                 if t["instance_uuid"] == uuid]
        assert steps, "the import is no pending step of the build"
        stack.agent.kill9()
    written = volume.stat().st_size
    assert 0 < written < len(data)

    # What a persistent libvirt holds after the kill: the volume, no domain.
    stack.node.write_text(node_xml(host, {}, [f"instance-{uuid}-root"], stack.pool_dir))
    stack.start()
    inst = stack.settle(uuid)
    assert inst["vm_state"] == "error" and inst["fault"] is not None, inst
    wait_until(lambda: stack.hypervisor() == {}, SETTLE_S, "the volume to be removed", 0.1)
    assert stack.assert_agree() == {}
    assert stack.db.list_tracked_tasks(host, status="pending") == []
    print(f"\nkilled with {written} of {len(data)} bytes written; after the restart: "
          f"{inst['vm_state']} ({inst['fault']['code']}), the volume removed")
