"""The host figures the libvirt driver reports (compute_nodes, the
scheduler's free memory), read from real libvirt test:/// nodes: one read
from a node file (no NUMA cells: libvirt cannot count free memory) and the
shared test:///default (two cells with their free memory)."""

from __future__ import annotations

import uuid as uuidlib

import libvirt

from compute_agent.driver.libvirt import host
from compute_agent.driver.libvirt.storage import Pool
from tests.functional.libvirt_node import NODE_CPUS, NODE_MEMORY_MIB, POOL, node_xml


def test_free_memory_falls_as_guests_start_on_a_node_without_cells(tmp_path):
    running, stopped = str(uuidlib.uuid4()), str(uuidlib.uuid4())
    node = tmp_path / "node.xml"
    node.write_text(node_xml("h", {running: "running", stopped: "shutoff"}, []))
    conn = libvirt.open(f"test://{node}")
    try:
        pool = Pool(POOL, "qcow2")
        figures = host.resources(conn, pool, "xen")
        assert (figures["memory_mb"], figures["vcpus"]) == (NODE_MEMORY_MIB, NODE_CPUS)
        # One running guest of 256 MiB and 1 vCPU; the stopped one uses nothing.
        assert figures["free_memory_mb"] == NODE_MEMORY_MIB - 256
        assert figures["memory_mb_used"] == 256
        assert (figures["running_vms"], figures["vcpus_used"]) == (1, 1)
        assert figures["local_gb"] == 100
        conn.lookupByUUIDString(stopped).create()
        figures = host.resources(conn, pool, "xen")
        assert figures["free_memory_mb"] == NODE_MEMORY_MIB - 512
        assert (figures["running_vms"], figures["vcpus_used"]) == (2, 2)
    finally:
        conn.close()


def test_free_memory_is_libvirts_when_it_counts_it():
    conn = libvirt.open("test:///default")
    try:
        counted = conn.getFreeMemory() // 1024**2
        assert counted > 0
        figures = host.resources(conn, Pool("default-pool", "qcow2"), "kvm")
        assert figures["free_memory_mb"] == min(counted, figures["memory_mb"])
    finally:
        conn.close()
