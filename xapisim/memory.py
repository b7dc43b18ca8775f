"""Host memory accounting as xapi does it (Memory_check): a VM's overhead,
what it needs free to start, what resident VMs use, and the host's free
memory (host_metrics.memory_free) kept up to date as domains come and go."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xapisim.errors import XenAPIError
from xapisim.schema import NULL_REF
from xapisim.store import now_datetime

if TYPE_CHECKING:
    from xapisim.store import Store

MiB = 1024 * 1024
PAGES_PER_MIB = 256


def _mib_up(nbytes: int) -> int:
    return -(-max(nbytes, 0) // MiB)


def _mib_of_pages(pages: int) -> int:
    return -(-pages // PAGES_PER_MIB)


def vm_memory_overhead(rec: dict[str, Any]) -> int:
    """xapi's Memory_check.vm_compute_memory_overhead, in bytes."""
    static_max_mib = _mib_up(rec["memory_static_max"])
    vcpus = max(int(rec["VCPUs_max"]), 0)
    kind = rec.get("domain_type") or "unspecified"
    if kind == "unspecified":
        kind = "hvm" if rec.get("HVM_boot_policy") else "pv"
    multiplier = rec.get("HVM_shadow_multiplier") or 1.0
    if kind == "pv":
        internal, multiplier, shim = 0, 1.0, 0
    elif kind == "pv_in_pvh":
        internal, shim = 1, 23 + static_max_mib // 90
    else:
        internal, shim = 1, 0
    shadow = max(1, int(_mib_of_pages(256 * vcpus + 2 * static_max_mib) * multiplier))
    mib = internal + 1 + shadow + _mib_of_pages(38 * vcpus) + shim
    return mib * MiB


def vm_start_memory(rec: dict[str, Any]) -> int:
    """Bytes a VM needs free on a host to start (xapi's dynamic_min policy)."""
    return _mib_up(rec["memory_dynamic_min"]) * MiB + vm_memory_overhead(rec)


def _footprint(store: Store, vm: str) -> tuple[int, int]:
    """(actual bytes in use, bytes it could shrink to) of a resident VM."""
    rec = store.raw("VM", vm)
    actual = 0
    if store.has("VM_metrics", rec["metrics"]):
        actual = store.raw("VM_metrics", rec["metrics"])["memory_actual"]
    overhead = rec["memory_overhead"]
    if rec["is_control_domain"]:
        return actual + overhead, actual + overhead
    return actual + overhead, min(actual, rec["memory_dynamic_min"]) + overhead


def _host_free(store: Store, host: str, shrunk: bool) -> int:
    h = store.raw("host", host)
    total = store.raw("host_metrics", h["metrics"])["memory_total"]
    used = sum(_footprint(store, vm)[1 if shrunk else 0] for vm in h["resident_VMs"]
               if store.has("VM", vm))
    return total - h["memory_overhead"] - used


def host_free_memory(store: Store, host: str) -> int:
    return _host_free(store, host, shrunk=False)


def host_free_memory_compressed(store: Store, host: str) -> int:
    """Free memory if every guest ballooned down to dynamic_min (xapi's
    host.compute_free_memory)."""
    return _host_free(store, host, shrunk=True)


def refresh_host_memory(store: Store, host: str) -> None:
    if host == NULL_REF or not store.has("host", host):
        return
    metrics = store.raw("host", host)["metrics"]
    if store.has("host_metrics", metrics):
        store.update("host_metrics", metrics, memory_free=max(host_free_memory(store, host), 0),
                     last_updated=now_datetime())


def assert_enough_memory(store: Store, vm: str, host: str) -> None:
    rec = store.raw("VM", vm)
    needed = vm_start_memory(rec)
    available = host_free_memory_compressed(store, host)
    if rec["resident_on"] == host:
        available += _footprint(store, vm)[1]
    if available < needed:
        raise XenAPIError("HOST_NOT_ENOUGH_FREE_MEMORY", str(needed), str(available))
