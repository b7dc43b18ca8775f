"""Pools across simulator processes: what a coordinator does when a host of
another simulator process joins or is ejected, and what that host does.

A simulator keeps one object database per pool, in the coordinator's
process. When the host of a standalone simulator joins (pool.join, in
api/pool_join.py), the coordinator adds it the way xapi's join copies the
joining host's non-VM metadata to the master: a host record with the
joiner's uuid and address, its CPUs and metrics, a control domain, a
management PIF on the pool's management network, and its local SR (same
uuid) with its VDIs; their data is uploaded to the coordinator, which then
serves it. The joiner's own VMs are not carried (as in xapi). The joiner
then answers HOST_IS_SLAVE [coordinator address] to every call.

pool.eject removes such a host from the pool's database (its local SR's
disks are lost, as on xapi) and tells its simulator, which comes back as
the standalone pool of a freshly installed host.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from xapisim import vdi_data
from xapisim.bootstrap import PoolShape, _make_host, bootstrap
from xapisim.errors import XenAPIError
from xapisim.schema import NULL_REF
from xapisim.vdi_records import destroy_vdi, new_vdi

if TYPE_CHECKING:
    from xapisim.services import SimServices

LOG = logging.getLogger("xapisim.pool")
# how long after answering a host waits before its xapi "restarts"
RESTART_DELAY = 0.2


def joiner_description(sim: SimServices) -> dict[str, Any]:
    """What the coordinator needs to know of this (standalone) host."""
    store = sim.store
    with store.lock:
        host = sim.master_ref
        h = store.raw("host", host)
        metrics = store.raw("host_metrics", h["metrics"])
        local = [store.raw("PBD", p)["SR"] for p in h["PBDs"]]
        srs = [sr for sr in local if not store.raw("SR", sr)["shared"]
               and store.raw("SR", sr)["content_type"] != "iso"]
        sr = srs[0] if srs else NULL_REF
        vdis = []
        if sr != NULL_REF:
            for vdi in store.raw("SR", sr)["VDIs"]:
                v = store.raw("VDI", vdi)
                vdis.append({k: v[k] for k in ("uuid", "name_label", "name_description",
                                               "virtual_size", "type", "sharable",
                                               "read_only", "other_config")})
        return {
            "address": h["address"], "uuid": h["uuid"],
            "memory_mb": metrics["memory_total"] // (1024 * 1024),
            "cpus": int(h["cpu_info"].get("cpu_count", "1") or 1),
            "sr_uuid": store.raw("SR", sr)["uuid"] if sr != NULL_REF else "",
            "sr_size_gb": (store.raw("SR", sr)["physical_size"] // 1024 ** 3
                           if sr != NULL_REF else sim.sr_size_gb),
            "product_version": h["software_version"].get("product_version", ""),
            "vdis": vdis,
        }


def add_member(sim: SimServices, doc: dict[str, Any]) -> dict[str, Any]:
    """On the coordinator: the joining host's records; returns its ref and
    the refs of its VDIs by uuid."""
    store = sim.store
    with store.lock:
        address = str(doc["address"])
        if any(rec["address"] == address for rec in store.tables["host"].values()):
            raise XenAPIError("HOST_NAME_INVALID", f"a host of the pool has address {address}")
        if doc["uuid"] in store.by_uuid:
            raise XenAPIError("UUID_INVALID", "host", doc["uuid"])
        pool = store.refs("pool")[0]
        master = store.raw("pool", pool)["master"]
        net = next(store.raw("PIF", p)["network"] for p in store.raw("host", master)["PIFs"]
                   if store.raw("PIF", p)["management"])
        shape = PoolShape([address], host_memory_mb=int(doc["memory_mb"]),
                          host_cpus=int(doc["cpus"]), sr_size_gb=int(doc["sr_size_gb"]))
        host = _make_host(store, shape, len(store.refs("host")), address, net)
        store.update("host", host, uuid=str(doc["uuid"]))
        sr = store.raw("PBD", store.raw("host", host)["PBDs"][0])["SR"]
        if doc.get("sr_uuid") and doc["sr_uuid"] not in store.by_uuid:
            store.update("SR", sr, uuid=str(doc["sr_uuid"]))
        vdis: dict[str, str] = {}
        for v in doc.get("vdis", []):
            ref = new_vdi(sim, sr, int(v["virtual_size"]), name_label=v["name_label"],
                          name_description=v["name_description"], vdi_type=v["type"],
                          sharable=bool(v["sharable"]), read_only=False,
                          other_config=dict(v["other_config"]))
            if v["uuid"] not in store.by_uuid:
                store.update("VDI", ref, uuid=v["uuid"], location=v["uuid"])
            if v["read_only"]:
                store.update("VDI", ref, read_only=True)
            vdis[v["uuid"]] = ref
        # the pool's shared storage is plugged on the new member too
        for ref, rec in list(store.tables["SR"].items()):
            if rec["shared"] and rec["PBDs"]:
                config = store.raw("PBD", rec["PBDs"][0])["device_config"]
                store.create("PBD", {"host": host, "SR": ref, "device_config": dict(config),
                                     "currently_attached": True, "other_config": {}})
        sim.joined_hosts.add(host)
        for cls in ("SR", "host"):
            for ref in store.refs(cls):
                sim.refresh_allowed_operations(cls, ref)
    LOG.info("pool: %s joined", address)
    return {"host": host, "vdis": vdis}


def assert_can_eject(sim: SimServices, host: str) -> None:
    store = sim.store
    store.raw("host", host)
    if host == sim.master_ref:
        raise XenAPIError("OPERATION_NOT_ALLOWED", "the coordinator cannot be ejected")
    if host not in sim.joined_hosts:
        raise XenAPIError("OPERATION_NOT_ALLOWED",
                          "the simulator keeps the hosts it was started with")
    for vm in store.raw("host", host)["resident_VMs"]:
        if not store.raw("VM", vm)["is_control_domain"]:
            raise XenAPIError("HOST_IN_USE", host, "VM", vm)


def remove_member(sim: SimServices, host: str) -> str:
    """On the coordinator: the host and everything that was only its go
    (its local SRs with their disks); returns its address."""
    store = sim.store
    with store.lock:
        assert_can_eject(sim, host)
        h = store.raw("host", host)
        address = h["address"]
        for pbd in list(h["PBDs"]):
            sr = store.raw("PBD", pbd)["SR"]
            store.destroy("PBD", pbd)
            if store.has("SR", sr) and not store.raw("SR", sr)["PBDs"]:
                for vdi in list(store.raw("SR", sr)["VDIs"]):
                    destroy_vdi(sim, vdi, force=True)
                store.destroy("SR", sr)
        for pif in list(h["PIFs"]):
            store.destroy("PIF", pif)
        for cpu in list(h["host_CPUs"]):
            store.destroy("host_cpu", cpu)
        dom0 = h["control_domain"]
        if store.has("VM", dom0):
            for console in list(store.raw("VM", dom0)["consoles"]):
                store.destroy("console", console)
            metrics = store.raw("VM", dom0)["metrics"]
            store.destroy("VM", dom0)
            if store.has("VM_metrics", metrics):
                store.destroy("VM_metrics", metrics)
        for vm, rec in list(store.tables["VM"].items()):
            if rec["affinity"] == host:
                store.update("VM", vm, affinity=NULL_REF)
        metrics = h["metrics"]
        store.destroy("host", host)
        if store.has("host_metrics", metrics):
            store.destroy("host_metrics", metrics)
        sim.joined_hosts.discard(host)
    LOG.info("pool: %s ejected", address)
    return address


def become_member(sim: SimServices, coordinator_address: str) -> None:
    """This host now belongs to the pool at ``coordinator_address``: its
    xapi restarts (sessions and tasks end) and answers HOST_IS_SLAVE."""

    def switch() -> None:
        sim.coordinator_address = coordinator_address
        sim.restart_xapi()

    _later(switch)


def reset_standalone(sim: SimServices) -> None:
    """Ejected: the host comes back as a freshly installed standalone pool
    (its database reinitialised, its local disks gone)."""

    def reset() -> None:
        store = sim.store
        with store.lock:
            for table in store.tables.values():
                table.clear()
            store.by_uuid.clear()
            store.meta.clear()
            vdi_data.wipe_all(sim)
            bootstrap(store, PoolShape(list(sim.addresses), sim.host_memory_mb, sim.host_cpus,
                                       sim.sr_size_gb))
            by_addr = {store.raw("host", r)["address"]: r for r in store.refs("host")}
            for srv in sim.servers:
                srv.host_ref = by_addr.get(srv.server_address[0], srv.host_ref)
            sim.coordinator_address = None
        sim.restart_xapi()
        LOG.info("pool: ejected; standalone again")

    _later(reset)


def _later(fn) -> None:
    t = threading.Timer(RESTART_DELAY, fn)
    t.daemon = True
    t.start()
