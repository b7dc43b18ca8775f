"""Host-level messages about time, memory, enablement and migration
targets (pool membership and plugins live elsewhere)."""

from __future__ import annotations

import threading
import time

from xapisim import domains, memory, placement
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
        return max(memory.host_free_memory_compressed(ctx.store, host), 0)


@handler("host.compute_memory_overhead")
def host_compute_memory_overhead(ctx: CallContext, host: str) -> int:
    return ctx.store.field("host", host, "memory_overhead")


@handler("VM.compute_memory_overhead")
def vm_compute_memory_overhead(ctx: CallContext, vm: str) -> int:
    with ctx.store.lock:
        return memory.vm_memory_overhead(ctx.store.raw("VM", vm))


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
        if not placement.host_live(ctx.sim, host):
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
                    placement.assert_can_boot_here(sim, vm, other)
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
        if not placement.host_live(sim, host):
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


def _evacuation_plan(ctx: CallContext, host: str) -> dict[str, str]:
    """For each guest on ``host``, the host it can move to; raises the
    first VM's error if one can go nowhere."""
    store, sim = ctx.store, ctx.sim
    plan: dict[str, str] = {}
    h = store.raw("host", host)
    others = [o for o in store.refs("host") if o != host]
    for vm in h["resident_VMs"]:
        rec = store.raw("VM", vm)
        if rec["is_control_domain"]:
            continue
        error: XenAPIError | None = XenAPIError("NO_HOSTS_AVAILABLE")
        for other in others:
            try:
                placement.assert_can_boot_here(sim, vm, other)
            except XenAPIError as e:
                error = e
                continue
            plan[vm] = other
            error = None
            break
        if error is not None:
            raise error
    return plan


@handler("host.assert_can_evacuate")
def host_assert_can_evacuate(ctx: CallContext, host: str) -> None:
    with ctx.store.lock:
        _evacuation_plan(ctx, host)


@handler("host.evacuate")
def host_evacuate(ctx: CallContext, host: str, network: str, evacuate_batch_size: int) -> None:
    """Move every guest elsewhere (live migration), as xapi's evacuate."""
    store = ctx.store
    with store.lock:
        _evacuation_plan(ctx, host)  # refuse before any time is spent
    ctx.work()
    with store.lock:
        for vm, target in _evacuation_plan(ctx, host).items():
            if store.raw("VM", vm)["power_state"] in ("Running", "Paused"):
                domains.move(ctx.sim, vm, target)


@handler("host.get_management_interface")
def host_get_management_interface(ctx: CallContext, host: str) -> str:
    with ctx.store.lock:
        for pif in ctx.store.raw("host", host)["PIFs"]:
            if ctx.store.raw("PIF", pif)["management"]:
                return pif
    raise XenAPIError("HOST_HAS_NO_MANAGEMENT_IP")


def _assert_can_power_off(ctx: CallContext, host: str) -> None:
    store = ctx.store
    h = store.raw("host", host)
    if h["enabled"]:
        raise XenAPIError("HOST_NOT_DISABLED")
    guests = [v for v in h["resident_VMs"] if not store.raw("VM", v)["is_control_domain"]]
    if guests:
        raise XenAPIError("HOST_IN_USE", host, "VM", guests[0])


@handler("host.reboot")
def host_reboot(ctx: CallContext, host: str) -> None:
    """Only a disabled host without guests reboots; it comes back enabled
    with a fresh control domain start time."""
    store = ctx.store
    with store.lock:
        _assert_can_power_off(ctx, host)
    ctx.work()
    with store.lock:
        h = store.raw("host", host)
        dom0 = h["control_domain"]
        if store.has("VM", dom0) and store.has("VM_metrics", store.raw("VM", dom0)["metrics"]):
            store.update("VM_metrics", store.raw("VM", dom0)["metrics"], start_time=now_datetime())
        store.update("host", host, enabled=True)
        memory.refresh_host_memory(store, host)


@handler("host.shutdown")
def host_shutdown(ctx: CallContext, host: str) -> None:
    """The host powers off: like a failure, but clean (no guests to lose)."""
    from xapisim import guest

    with ctx.store.lock:
        _assert_can_power_off(ctx, host)
    ctx.work()
    guest.host_failed(ctx.sim, host)


@handler("host.power_on")
def host_power_on(ctx: CallContext, host: str) -> None:
    from xapisim import guest

    with ctx.store.lock:
        if placement.host_live(ctx.sim, host):
            raise XenAPIError("HOST_IS_LIVE", host)
    guest.host_recovered(ctx.sim, host)


@handler("host.declare_dead")
def host_declare_dead(ctx: CallContext, host: str) -> None:
    """The admin swears the host is down: its VMs are reset to Halted."""
    from xapisim import guest

    with ctx.store.lock:
        if placement.host_live(ctx.sim, host):
            raise XenAPIError("HOST_IS_LIVE", host)
    guest.host_failed(ctx.sim, host)


@handler("host.destroy")
def host_destroy(ctx: CallContext, host: str) -> None:
    store = ctx.store
    with store.lock:
        store.raw("host", host)
        if host == ctx.sim.master_ref:
            raise XenAPIError("HOST_CANNOT_DESTROY_SELF", host)
        if placement.host_live(ctx.sim, host):
            raise XenAPIError("HOST_IS_LIVE", host)
        guests = [v for v in store.raw("host", host)["resident_VMs"]
                  if not store.raw("VM", v)["is_control_domain"]]
        if guests:
            raise XenAPIError("HOST_HAS_RESIDENT_VMS", host)
        raise XenAPIError("OPERATION_NOT_ALLOWED",
                          "the simulator keeps the hosts it was started with")


@handler("host.set_hostname_live")
def host_set_hostname_live(ctx: CallContext, host: str, hostname: str) -> None:
    if not hostname or len(hostname) > 63 or not all(c.isalnum() or c in "-." for c in hostname):
        raise XenAPIError("HOST_NAME_INVALID", f"hostname {hostname!r} is not a valid DNS name")
    with ctx.store.lock:
        ctx.store.raw("host", host)
        ctx.store.update("host", host, hostname=hostname)


@handler("host.dmesg", "host.get_log")
def host_dmesg(ctx: CallContext, host: str) -> str:
    name = ctx.store.field("host", host, "name_label")
    return f"[    0.000000] Linux version 4.19.0+1 (simulated {name})\n"


@handler("host.restart_agent")
def host_restart_agent(ctx: CallContext, host: str) -> None:
    """xapi restarts shortly after answering: sessions and tasks are lost."""
    ctx.store.raw("host", host)
    timer = threading.Timer(0.2, ctx.sim.restart_xapi)
    timer.daemon = True
    timer.start()


@handler("host.dmesg_clear", "host.syslog_reconfigure", "host.sync_data",
         "host.send_debug_keys", "host.refresh_pack_info")
def host_noop(ctx: CallContext, host: str, *rest: object) -> None:
    ctx.store.raw("host", host)


@handler("host.backup_rrds")
def host_backup_rrds(ctx: CallContext, host: str, delay: float) -> None:
    ctx.store.raw("host", host)


@handler("host.list_methods")
def host_list_methods(ctx: CallContext) -> list[str]:
    model = ctx.store.model
    return sorted(f"{c}.{m}" for c, cls in model.classes.items() for m in cls.messages)


@handler("host.has_extension")
def host_has_extension(ctx: CallContext, host: str, name: str) -> bool:
    ctx.store.raw("host", host)
    return False


@handler("host.get_data_sources")
def host_get_data_sources(ctx: CallContext, host: str) -> list:
    ctx.store.raw("host", host)
    return []


@handler("host.record_data_source", "host.forget_data_source_archives")
def host_record_data_source(ctx: CallContext, host: str, data_source: str) -> None:
    ctx.store.raw("host", host)


@handler("host.query_data_source")
def host_query_data_source(ctx: CallContext, host: str, data_source: str) -> float:
    with ctx.store.lock:
        metrics = ctx.store.raw("host", host)["metrics"]
        rec = ctx.store.raw("host_metrics", metrics)
        if data_source == "memory_free_kib":
            return rec["memory_free"] / 1024
        if data_source == "memory_total_kib":
            return rec["memory_total"] / 1024
    return 0.0


@handler("host.get_system_status_capabilities")
def host_get_system_status_capabilities(ctx: CallContext, host: str) -> str:
    ctx.store.raw("host", host)
    return '<?xml version="1.0" ?><system-status-capabilities></system-status-capabilities>'
