"""libvirt ``test:///<file>`` nodes for agent processes running
``compute_driver = libvirt``: the hypervisor's state lives inside the agent
process, started from the node file this module writes (a storage pool, the
``default`` network, and optionally domains and volumes the agent is meant
to find, marked as one agent host's the way the driver marks its own).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

# The driver's metadata namespace (compute_agent/driver/libvirt/domain_xml.py),
# spelled out: the tests check the driver's promise, not its constant.
NS = "http://compute-agent.invalid/xmlns/libvirt/instance/1.0"
POOL = "agent-pool"
NODE_MEMORY_MIB = 65536
NODE_CPUS = 8


def node_xml(host: str, domains: dict[str, str], volumes: list[str],
             pool_dir: Path | None = None) -> str:
    """A test:/// node of NODE_CPUS CPUs and NODE_MEMORY_MIB of memory: a
    storage pool, the 'default' network and the given domains (uuid ->
    'running' | 'shutoff', 256 MiB, 1 vCPU each), marked as ``host``'s,
    with the volumes named. The pool's target is ``pool_dir``, a real
    directory where the driver writes images into volumes' files (libvirt's
    test driver itself keeps volumes in memory only), or a path that does
    not exist."""
    target = pool_dir or f"/{POOL}"
    parts = ["<node><cpu><mhz>2400</mhz><model>x86_64</model><nodes>1</nodes>"
             f"<sockets>1</sockets><cores>{NODE_CPUS}</cores><threads>1</threads>"
             f"<active>{NODE_CPUS}</active></cpu><memory>{NODE_MEMORY_MIB * 1024}</memory>"]
    for uuid, run in domains.items():
        parts.append(
            f"<domain type='xen' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
            f"<name>instance-{uuid}</name><uuid>{uuid}</uuid>"
            f"<metadata><agent:instance xmlns:agent='{NS}'><agent:uuid>{uuid}</agent:uuid>"
            f"<agent:host>{escape(host)}</agent:host></agent:instance></metadata>"
            "<memory unit='MiB'>256</memory><vcpu>1</vcpu><os><type>xen</type></os>"
            f"<test:runstate>{1 if run == 'running' else 5}</test:runstate></domain>")
    parts.append(f"<pool type='dir'><name>{POOL}</name><capacity unit='GiB'>100</capacity>"
                 "<allocation>0</allocation><available unit='GiB'>100</available>"
                 f"<target><path>{target}</path></target>")
    for name in volumes:
        parts.append(f"<volume><name>{name}</name><capacity unit='GiB'>1</capacity>"
                     f"<allocation>0</allocation><target><path>{target}/{name}</path></target>"
                     "</volume>")
    parts.append("</pool><network><name>default</name><bridge name='virbr0'/></network></node>")
    return "".join(parts)


def libvirt_agent_options(node: Path, virt_type: str = "xen") -> dict[str, dict[str, Any]]:
    """The [libvirt] section of an agent on the node file ``node``."""
    return {"libvirt": {"connection_uri": f"test://{node}", "virt_type": virt_type,
                        "storage_pool": POOL}}
