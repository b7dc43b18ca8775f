"""Host-level messages about time, memory, enablement and migration
targets (pool membership and plugins live elsewhere)."""

from __future__ import annotations

import time

from xapisim import lifecycle
from xapisim.api import handler
from xapisim.context import CallContext
from xapisim.errors import XenAPIError
from xapisim.store import XDateTime, now_datetime


@handler("host.get_servertime", member_ok=True)
def host_get_servertime(ctx: CallContext, host: str) -> XDateTime:
    ctx.store.raw("host", host)
    return now_datetime()


@handler("host.get_server_localtime", member_ok=True)
def host_get_server_localtime(ctx: CallContext, host: str) -> XDateTime:
    ctx.store.raw("host", host)
    return XDateTime(time.strftime("%Y%m%dT%H:%M:%S", time.localtime()))


@handler("host.compute_free_memory")
def host_compute_free_memory(ctx: CallContext, host: str) -> int:
    with ctx.store.lock:
        ctx.store.raw("host", host)
        return max(lifecycle.host_free_memory_compressed(ctx.store, host), 0)


@handler("host.compute_memory_overhead")
def host_compute_memory_overhead(ctx: CallContext, host: str) -> int:
    return ctx.store.field("host", host, "memory_overhead")


@handler("VM.compute_memory_overhead")
def vm_compute_memory_overhead(ctx: CallContext, vm: str) -> int:
    with ctx.store.lock:
        return lifecycle.vm_memory_overhead(ctx.store.raw("VM", vm))


@handler("host.disable")
def host_disable(ctx: CallContext, host: str) -> None:
    with ctx.store.lock:
        ctx.store.raw("host", host)
        ctx.store.update("host", host, enabled=False)
        ctx.sim.refresh_allowed_operations("host", host)


@handler("host.enable")
def host_enable(ctx: CallContext, host: str) -> None:
    with ctx.store.lock:
        ctx.store.raw("host", host)
        if not lifecycle.host_live(ctx.sim, host):
            raise XenAPIError("HOST_OFFLINE", host)
        ctx.store.update("host", host, enabled=True)
        ctx.sim.refresh_allowed_operations("host", host)


@handler("host.get_vms_which_prevent_evacuation")
def host_get_vms_which_prevent_evacuation(ctx: CallContext, host: str) -> dict[str, list[str]]:
    """Running VMs that no other host could take (xapi maps each to an error)."""
    store, sim = ctx.store, ctx.sim
    out: dict[str, list[str]] = {}
    with store.lock:
        h = store.raw("host", host)
        others = [o for o in store.refs("host") if o != host]
        for vm in h["resident_VMs"]:
            rec = store.raw("VM", vm)
            if rec["is_control_domain"]:
                continue
            error: list[str] | None = None
            for other in others:
                try:
                    lifecycle.assert_can_boot_here(sim, vm, other)
                except XenAPIError as e:
                    error = e.description
                    continue
                error = None
                break
            else:
                if not others:
                    error = ["NO_HOSTS_AVAILABLE"]
            if error:
                out[vm] = error
    return out


@handler("host.get_uncooperative_resident_VMs")
def host_get_uncooperative_resident_vms(ctx: CallContext, host: str) -> list[str]:
    ctx.store.raw("host", host)
    return []


@handler("host.migrate_receive")
def host_migrate_receive(ctx: CallContext, host: str, network: str,
                         options: dict[str, str]) -> dict[str, str]:
    """The token a migrate_send needs: where the destination's services are."""
    store, sim = ctx.store, ctx.sim
    with store.lock:
        store.raw("host", host)
        store.raw("network", network)
        if not lifecycle.host_live(sim, host):
            raise XenAPIError("HOST_OFFLINE", host)
        address = store.raw("host", host)["address"]
    base = f"{sim.scheme}://{address}:{sim.port}"
    return {
        "host": host,
        "xenops": f"{base}/services/xenops?session_id={ctx.session_ref}",
        "SM": f"{base}/services/SM?session_id={ctx.session_ref}",
        "master": sim.master_url,
        "session_id": ctx.session_ref or "",
    }
