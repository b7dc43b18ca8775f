"""This host as libvirt shows it: capacity and usage for compute_nodes, and
the capabilities the driver reports in get_host_status."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import libvirt

from compute_agent.driver.libvirt.storage import Pool

# Domain id 0 under Xen is dom0 itself, not a guest.
CONTROL_DOMAIN_ID = 0
MiB = 1024**2


def version_string(number: int) -> str:
    """libvirt's version numbers are major * 1,000,000 + minor * 1,000 + micro."""
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def resources(conn: libvirt.virConnect, pool: Pool, virt_type: str) -> dict[str, Any]:
    """The HOST_RESOURCE_KEYS dict from the node info, the free memory, the
    running domains and the storage pool."""
    _model, memory_mib, cpus, *_ = conn.getInfo()
    guests = [d for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
              if not (virt_type == "xen" and d.ID() == CONTROL_DOMAIN_ID)]
    infos = [d.info() for d in guests]  # [state, max KiB, KiB, vCPUs, cpu time]
    vcpus_used = sum(info[3] for info in infos)
    free_mib = free_memory_mib(conn, memory_mib, sum(info[2] for info in infos) // 1024)
    try:
        local_gb, local_gb_used = pool.usage_gb(conn)
    except libvirt.libvirtError:
        local_gb = local_gb_used = 0  # the rest is still worth reporting
    return {
        "vcpus": int(cpus),
        "vcpus_used": int(vcpus_used),
        "memory_mb": int(memory_mib),
        "memory_mb_used": int(memory_mib - free_mib),
        "free_memory_mb": int(free_mib),
        "local_gb": int(local_gb),
        "local_gb_used": int(local_gb_used),
        "hypervisor_type": virt_type,
        "hypervisor_version": version_string(conn.getVersion()),
        "hypervisor_hostname": conn.getHostname(),
        "running_vms": len(guests),
        # no sampled figure behind libvirt's cumulative CPU times yet
        "cpu_utilisation": None,
    }


def free_memory_mib(conn: libvirt.virConnect, memory_mib: int, guests_mib: int) -> int:
    """The node's free memory as libvirt counts it (the free memory of its
    NUMA cells). A node libvirt knows no cells of answers 0 (libvirt's
    test:/// nodes read from a file, some remote drivers): then the node's
    memory less what its running guests were given, so that the figure
    still falls as guests start."""
    try:
        free = conn.getFreeMemory() // MiB
    except libvirt.libvirtError:
        free = 0
    if free <= 0:
        free = memory_mib - guests_mib
    return max(0, min(int(free), int(memory_mib)))


def guest_modes(capabilities_xml: str) -> list[str]:
    """The guest OS types the hypervisor offers ('xen' = Xen PV, 'hvm', ...),
    from libvirt's capabilities document."""
    root = ET.fromstring(capabilities_xml)
    return sorted({(g.findtext("os_type") or "").strip() for g in root.findall("guest")} - {""})
