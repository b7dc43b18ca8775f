"""Host capacity and usage, as the compute_nodes table wants it."""

from __future__ import annotations

from typing import Any

from compute_agent import exceptions
from compute_agent.driver.xenapi.session import SessionPool
from compute_agent.driver.xenapi.storage import Storage
from compute_agent.driver.xenapi.transport import host_of

MiB = 1024**2
GiB = 1024**3


def _int(value: Any, default: int = 0) -> int:
    """xapi's int64 fields arrive as decimal strings over XML-RPC."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def summarize(
    host: dict[str, Any],
    metrics: dict[str, Any],
    cpu_count: int,
    vms: dict[str, dict[str, Any]],
    sr: dict[str, Any] | None,
) -> dict[str, Any]:
    """The resources dict from the records dom0 gave (pure; unit tested).

    ``vms``: the guest VMs resident on the host (no control domain).
    """
    total = _int(metrics.get("memory_total"))
    free = _int(metrics.get("memory_free"))
    running = [v for v in vms.values() if v.get("power_state") in ("Running", "Paused")]
    software = host.get("software_version") or {}
    return {
        "vcpus": cpu_count,
        "vcpus_used": sum(_int(v.get("VCPUs_at_startup"), 0) for v in running),
        "memory_mb": total // MiB,
        "memory_mb_used": max(0, total - free) // MiB,
        "free_memory_mb": free // MiB,
        "local_gb": _int(sr.get("physical_size")) // GiB if sr else 0,
        "local_gb_used": _int(sr.get("physical_utilisation")) // GiB if sr else 0,
        "hypervisor_type": "xen",
        "hypervisor_version": str(
            software.get("xen") or software.get("product_version") or
            f"{host.get('API_version_major', '')}.{host.get('API_version_minor', '')}"
        ),
        "hypervisor_hostname": str(host.get("hostname") or host.get("name_label") or ""),
        "running_vms": sum(1 for v in vms.values() if v.get("power_state") == "Running"),
    }


class HostInfo:
    def __init__(self, pool: SessionPool, storage: Storage):
        self.pool = pool
        self.storage = storage
        self._host_ref: str | None = None

    def host_ref(self) -> str:
        """The host this agent manages: the one whose address the configured
        URL names, else the pool coordinator (where the URL led us)."""
        if self._host_ref is not None:
            return self._host_ref
        address = host_of(self.pool.coordinator.configured_url)
        hosts = self.pool.call("host.get_all_records")
        ref = next((r for r, rec in sorted(hosts.items()) if rec.get("address") == address), None)
        if ref is None:
            pool_ref = self.pool.call("pool.get_all")[0]
            ref = self.pool.call("pool.get_master", pool_ref)
        self._host_ref = ref
        return ref

    def forget(self) -> None:
        """The host's ref may have changed (it joined or left a pool)."""
        self._host_ref = None

    def resources(self) -> dict[str, Any]:
        ref = self.host_ref()
        host = self.pool.call("host.get_record", ref)
        metrics = self.pool.call("host_metrics.get_record", host["metrics"])
        cpus = len(host.get("host_CPUs") or []) or _int(
            (host.get("cpu_info") or {}).get("cpu_count"), 0
        )
        vms = self.pool.call(
            "VM.get_all_records_where",
            f'field "resident_on" = "{ref}" and field "is_control_domain" = "false"',
        )
        try:
            sr = self.pool.call("SR.get_record", self.storage.find_sr())
        except exceptions.HypervisorError:
            sr = None  # the rest is still worth reporting without disk figures
        return summarize(host, metrics, cpus, vms, sr)
