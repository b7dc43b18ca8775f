"""Helpers of the tests that drive LibvirtDriver in-process on libvirt's
``test:///default`` hypervisor (no daemon: its state lives in the test
process, shared by every connection the process opens, so the test reads
and changes "the host" through a connection of its own)."""

from __future__ import annotations

import uuid as uuidlib

import libvirt

from compute_agent.driver.base import Operation

URI = "test:///default"
POOL = "default-pool"  # the pool test:///default starts with
# The driver's metadata namespace, spelled out: the tests check its promise.
NS = "http://compute-agent.invalid/xmlns/libvirt/instance/1.0"


class Recorder:
    """A TaskListener that keeps what it is told."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: dict[str, tuple[str, list | None]] = {}

    def task_started(self, op, ref, task_uuid, host):
        self.started.append(ref)

    def task_progress(self, op, ref, progress):
        pass

    def task_finished(self, op, ref, status, result, error):
        self.finished[ref] = (status, error)


def instance(name: str = "vm", **metadata) -> dict:
    return {"uuid": str(uuidlib.uuid4()), "name": name,
            "flavor": {"vcpus": 2, "memory_mb": 384, "root_gb": 2},
            "image": {"id": None, "url": None, "disk_format": None},
            "networks": [], "metadata": dict(metadata)}


def op(inst: dict, name: str) -> Operation:
    return Operation(inst["uuid"], name, f"req-{uuidlib.uuid4()}")


def state(conn: libvirt.virConnect, uuid: str) -> int:
    return conn.lookupByUUIDString(uuid).state()[0]


def volumes(conn: libvirt.virConnect, uuid: str) -> list[tuple[str, int]]:
    pool = conn.storagePoolLookupByName(POOL)
    return [(v.name(), v.info()[1]) for v in pool.listAllVolumes() if uuid in v.name()]


def has_domain(conn: libvirt.virConnect, uuid: str) -> bool:
    try:
        conn.lookupByUUIDString(uuid)
        return True
    except libvirt.libvirtError:
        return False
