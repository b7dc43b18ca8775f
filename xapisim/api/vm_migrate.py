"""VM migration within the pool (VM.pool_migrate) and xapi's storage
migration messages (VM.assert_can_migrate, VM.migrate_send). A token
naming a host of this pool migrates inside it; any other goes to the pool
whose coordinator the token names (api/vm_migrate_remote.py)."""

from __future__ import annotations

from xapisim import domains, memory, placement, vm_rules
from xapisim.api import handler, vm_migrate_remote
from xapisim.api.vm import expect_power_state, vm_operation
from xapisim.context import CallContext
from xapisim.errors import XenAPIError
from xapisim.sr_state import sr_plugged_on
from xapisim.vdi_records import copy_vdi, destroy_vdi


@handler("VM.pool_migrate")
def vm_pool_migrate(ctx: CallContext, vm: str, host: str, options: dict[str, str]) -> None:
    sim, store = ctx.sim, ctx.store
    with store.lock:
        vm_rules.assert_vm_op(store, vm, "pool_migrate")
        store.raw("host", host)
        placement.assert_can_boot_here(sim, vm, host)
    with vm_operation(ctx, vm, "pool_migrate"):
        ctx.work()
        with store.lock:
            expect_power_state(store, vm, "Running")
            placement.assert_can_boot_here(sim, vm, host)
            domains.move(sim, vm, host)


def _dest_host(store, dest: dict[str, str]) -> str:
    host = dest.get("host", "")
    if not store.has("host", host):
        raise XenAPIError("VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED")
    return host


def _check_migrate(ctx: CallContext, vm: str, dest: dict[str, str], vdi_map: dict[str, str],
                   vif_map: dict[str, str]) -> str:
    store = ctx.store
    vm_rules.assert_vm_op(store, vm, "migrate_send")
    host = _dest_host(store, dest)
    rec = store.raw("VM", vm)
    for sr in vdi_map.values():
        store.raw("SR", sr)
    for net in vif_map.values():
        store.raw("network", net)
    for vbd in rec["VBDs"]:
        b = store.raw("VBD", vbd)
        if b["empty"] or not store.has("VDI", b["VDI"]):
            continue
        sr = vdi_map.get(b["VDI"], store.raw("VDI", b["VDI"])["SR"])
        if not sr_plugged_on(store, sr, host):
            raise XenAPIError("VDI_NOT_IN_MAP", b["VDI"])
    if rec["power_state"] == "Running":
        if len(rec["snapshots"]) > 1 and host != rec["resident_on"]:
            pass  # xapi refuses many snapshots only cross-pool; here the pool is one
        memory.assert_enough_memory(store, vm, host)
    return host


@handler("VM.assert_can_migrate")
def vm_assert_can_migrate(ctx: CallContext, vm: str, dest: dict[str, str], live: bool,
                          vdi_map: dict[str, str], vif_map: dict[str, str],
                          options: dict[str, str], vgpu_map: dict[str, str]) -> None:
    if vm_migrate_remote.is_cross_pool(ctx, dest):
        vm_migrate_remote.check(ctx, vm, dest, live, vdi_map, vif_map)
        return
    with ctx.store.lock:
        _check_migrate(ctx, vm, dest, vdi_map, vif_map)


@handler("VM.migrate_send")
def vm_migrate_send(ctx: CallContext, vm: str, dest: dict[str, str], live: bool,
                    vdi_map: dict[str, str], vif_map: dict[str, str], options: dict[str, str],
                    vgpu_map: dict[str, str]) -> str:
    sim, store = ctx.sim, ctx.store
    if vm_migrate_remote.is_cross_pool(ctx, dest):
        remote = vm_migrate_remote.check(ctx, vm, dest, live, vdi_map, vif_map)
        with vm_operation(ctx, vm, "migrate_send"):
            ctx.work()
            with store.lock:
                expect_power_state(store, vm, *vm_rules.POWER_STATES_FOR_OP["migrate_send"])
            return vm_migrate_remote.send(ctx, remote, vm, dest, live, vdi_map, vif_map)
    with store.lock:
        host = _check_migrate(ctx, vm, dest, vdi_map, vif_map)
    with vm_operation(ctx, vm, "migrate_send"):
        ctx.work()
        with store.lock:
            host = _check_migrate_again(ctx, vm, dest)
            rec = store.raw("VM", vm)
            for vbd in rec["VBDs"]:
                b = store.raw("VBD", vbd)
                vdi = b["VDI"]
                if b["empty"] or not store.has("VDI", vdi) or vdi not in vdi_map:
                    continue
                if store.raw("VDI", vdi)["SR"] != vdi_map[vdi]:
                    moved = copy_vdi(sim, vdi, vdi_map[vdi])
                    store.update("VBD", vbd, VDI=moved)
                    destroy_vdi(sim, vdi, force=True)
            for vif in rec["VIFs"]:
                if vif in vif_map:
                    store.update("VIF", vif, network=vif_map[vif])
            if rec["power_state"] == "Running":
                domains.move(sim, vm, host)
            sim.refresh_allowed_operations("VM", vm)
    return vm


def _check_migrate_again(ctx: CallContext, vm: str, dest: dict[str, str]) -> str:
    # Inside our own operation the concurrency check would see ourselves.
    expect_power_state(ctx.store, vm, *vm_rules.POWER_STATES_FOR_OP["migrate_send"])
    return _dest_host(ctx.store, dest)
