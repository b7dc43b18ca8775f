"""VM messages: create/destroy, the power-state lifecycle, clone/copy/
snapshot/provision, migration, and the VM's allowed_operations.

Each lifecycle handler checks xapi's preconditions (vm_rules.vm_op_error:
blocked, power state, concurrency, template, ...), records the operation
in current_operations, spends the message's configured duration (where a
task.cancel stops it with nothing changed) and then applies the effect."""

from __future__ import annotations

import contextlib
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

from xapisim import domains, memory, placement, vm_rules
from xapisim.api import allowed_operations, generic, handler
from xapisim.api.network import new_mac
from xapisim.context import CallContext
from xapisim.errors import XenAPIError
from xapisim.schema import NULL_REF
from xapisim.sr_state import pool_default_sr, sr_plugged_on
from xapisim.store import XDateTime, new_ref, now_datetime
from xapisim.vdi_records import clone_vdi, copy_vdi, destroy_vdi, new_vdi

EPOCH = XDateTime("19700101T00:00:00Z")


@allowed_operations("VM")
def vm_allowed(sim, ref: str) -> list[str]:
    return vm_rules.vm_allowed_operations(sim.store, ref)


@contextlib.contextmanager
def vm_operation(ctx: CallContext, vm: str, op: str) -> Iterator[None]:
    """Hold ``op`` in the VM's current_operations, refusing it first with
    xapi's checks (several operations may run at once where xapi allows it,
    e.g. hard_shutdown during a clean_shutdown)."""
    store = ctx.store
    with store.lock:
        vm_rules.assert_vm_op(store, vm, op)
        cur = dict(store.raw("VM", vm)["current_operations"])
        cur[ctx.op_ref] = op
        store.update("VM", vm, current_operations=cur)
        ctx.sim.refresh_allowed_operations("VM", vm)
    try:
        yield
    finally:
        with store.lock:
            if store.has("VM", vm):
                cur = dict(store.raw("VM", vm)["current_operations"])
                cur.pop(ctx.op_ref, None)
                store.update("VM", vm, current_operations=cur)
                ctx.sim.refresh_allowed_operations("VM", vm)


def _cancel_others(ctx: CallContext, vm: str, ops: set[str]) -> None:
    """hard_shutdown/hard_reboot cancel the VM's pending clean operations
    first, as xapi's message forwarding does, and wait for them to stop."""
    store = ctx.store
    with store.lock:
        current = dict(store.raw("VM", vm)["current_operations"])
    # Only Async calls run under a task object that can be cancelled; a sync
    # call in progress finds the VM halted when it resumes, and fails.
    victims = [t for t, op in current.items()
               if op in ops and t != ctx.op_ref and store.has("task", t)]
    for task in victims:
        with contextlib.suppress(XenAPIError):
            ctx.sim.tasks.cancel(task)
    deadline = time.monotonic() + 5.0
    while victims and time.monotonic() < deadline:
        with store.lock:
            current = store.raw("VM", vm)["current_operations"] if store.has("VM", vm) else {}
            victims = [t for t in victims if t in current]
        if victims:
            time.sleep(0.01)


def _expect(store, vm: str, *states: str) -> dict[str, Any]:
    rec = store.raw("VM", vm)
    if rec["power_state"] not in states:
        raise vm_rules.bad_power_state(vm, states, rec["power_state"])
    return rec


# -- create / destroy -----------------------------------------------------------------


@handler("VM.create")
def vm_create(ctx: CallContext, record: dict[str, Any]) -> str:
    store = ctx.store
    ref = new_ref()
    other = dict(record.get("other_config", {}))
    other.setdefault("mac_seed", str(uuidlib.uuid4()))
    power = record.get("power_state", "Halted")
    suspended = power == "Suspended"
    if suspended and (not record.get("last_boot_CPU_flags") or
                      not record.get("last_booted_record") or
                      record.get("suspend_VDI", NULL_REF) == NULL_REF):
        raise vm_rules.bad_power_state(ref, ("Halted",), power)
    domain_type = record.get("domain_type", "unspecified")
    if domain_type == "unspecified":
        domain_type = "hvm" if record.get("HVM_boot_policy") else "pv"
    with store.lock:
        for name in ("affinity", "suspend_VDI", "suspend_SR"):
            value = record.get(name, NULL_REF)
            cls = {"affinity": "host", "suspend_VDI": "VDI", "suspend_SR": "SR"}[name]
            if value != NULL_REF and not store.has(cls, value):
                raise XenAPIError("HANDLE_INVALID", cls, value)
        metrics = store.create("VM_metrics", {
            "current_domain_type": domain_type if suspended else "unspecified",
        })
        try:
            vm = generic.create(ctx, "VM", record, **{
                "other_config": other,
                "power_state": "Suspended" if suspended else "Halted",
                "suspend_VDI": record.get("suspend_VDI", NULL_REF) if suspended else NULL_REF,
                "last_booted_record": record.get("last_booted_record", "") if suspended else "",
                "last_boot_CPU_flags": record.get("last_boot_CPU_flags", {}) if suspended
                else {},
                "domain_type": domain_type,
                "metrics": metrics,
                "domid": -1,
                "resident_on": NULL_REF,
                "is_default_template": False,
                "is_control_domain": False,
                "blocked_operations": {},
            })
        except XenAPIError:
            store.destroy("VM_metrics", metrics)
            raise
        store.update("VM", vm, memory_overhead=memory.vm_memory_overhead(store.raw("VM", vm)))
        ctx.sim.refresh_allowed_operations("VM", vm)
    return vm


@handler("VM.destroy")
def vm_destroy(ctx: CallContext, vm: str) -> None:
    store = ctx.store
    with store.lock:
        vm_rules.assert_vm_op(store, vm, "destroy")
        rec = store.raw("VM", vm)
        if rec["other_config"].get("default_template") == "true":
            raise XenAPIError("VM_CANNOT_DELETE_DEFAULT_TEMPLATE", vm)
        destroy_vm_records(ctx.sim, vm)


def destroy_vm_records(sim, vm: str) -> None:
    """VM.destroy's database work: the VM with its VBDs, VIFs, consoles and
    metrics; its VDIs stay (xapi's Xapi_vm_helpers.destroy)."""
    store = sim.store
    with store.lock:
        rec = store.raw("VM", vm)
        for child in rec["children"]:
            if store.has("VM", child):
                store.update("VM", child, parent=rec["parent"])
        for cls, field in (("VBD", "VBDs"), ("VIF", "VIFs"), ("console", "consoles")):
            for dev in list(rec[field]):
                if store.has(cls, dev):
                    if cls == "VBD":
                        vdi = store.raw("VBD", dev)["VDI"]
                    store.destroy(cls, dev)
                    if cls == "VBD" and store.has("VDI", vdi):
                        sim.refresh_allowed_operations("VDI", vdi)
        for cls, field in (("VM_metrics", "metrics"), ("VM_guest_metrics", "guest_metrics")):
            if store.has(cls, rec[field]):
                store.destroy(cls, rec[field])
        host = rec["resident_on"]
        store.destroy("VM", vm)
        memory.refresh_host_memory(store, host)


# -- start / shutdown / reboot ---------------------------------------------------------------


def _start(ctx: CallContext, vm: str, host: str | None, paused: bool, op: str) -> None:
    sim, store = ctx.sim, ctx.store
    with store.lock:
        vm_rules.assert_vm_op(store, vm, op)
        if host is None:
            target = placement.choose_host(sim, vm)
        else:
            store.raw("host", host)
            placement.assert_can_boot_here(sim, vm, host)
            target = host
        placement.assert_vbds_attachable(store, vm)
    with vm_operation(ctx, vm, op):
        ctx.work()
        with store.lock:
            _expect(store, vm, "Halted")
            placement.assert_can_boot_here(sim, vm, target)
            placement.assert_vbds_attachable(store, vm)
            domains.boot(sim, vm, target, paused=paused)


@handler("VM.start")
def vm_start(ctx: CallContext, vm: str, start_paused: bool, force: bool) -> None:
    _start(ctx, vm, None, start_paused, "start")


@handler("VM.start_on")
def vm_start_on(ctx: CallContext, vm: str, host: str, start_paused: bool, force: bool) -> None:
    _start(ctx, vm, host, start_paused, "start_on")


def _halt_running(ctx: CallContext, vm: str, op: str, states: tuple[str, ...]) -> None:
    store = ctx.store
    with store.lock:
        rec = _expect(store, vm, *states)
        if rec["power_state"] == "Suspended":
            suspend_vdi = rec["suspend_VDI"]
            domains.record_shutdown(store, vm, "halted", "external",
                                      rec["actions_after_shutdown"])
            domains.halt(ctx.sim, vm)
            store.update("VM", vm, suspend_VDI=NULL_REF)
            if store.has("VDI", suspend_vdi):
                destroy_vdi(ctx.sim, suspend_vdi)
            return
        domains.record_shutdown(store, vm, "halted", "external", rec["actions_after_shutdown"])
        domains.halt(ctx.sim, vm)


@handler("VM.clean_shutdown")
def vm_clean_shutdown(ctx: CallContext, vm: str) -> None:
    with vm_operation(ctx, vm, "clean_shutdown"):
        ctx.work()
        _halt_running(ctx, vm, "clean_shutdown", ("Running",))


_HARD_CANCELS = {"clean_shutdown", "clean_reboot", "hard_reboot", "pool_migrate", "call_plugin",
                 "shutdown", "suspend"}


@handler("VM.hard_shutdown")
def vm_hard_shutdown(ctx: CallContext, vm: str) -> None:
    with vm_operation(ctx, vm, "hard_shutdown"):
        _cancel_others(ctx, vm, _HARD_CANCELS)
        ctx.work()
        with ctx.store.lock:
            if ctx.store.raw("VM", vm)["power_state"] == "Halted":
                return  # a cancelled operation got there first; xapi is quiet too
            _halt_running(ctx, vm, "hard_shutdown", ("Paused", "Suspended", "Running"))


@handler("VM.shutdown")
def vm_shutdown(ctx: CallContext, vm: str) -> None:
    with vm_operation(ctx, vm, "shutdown"):
        ctx.work()
        with ctx.store.lock:
            rec = _expect(ctx.store, vm, "Paused", "Suspended", "Running")
            # a clean shutdown when the guest can do one, else a hard one
            _halt_running(ctx, vm, "shutdown", (rec["power_state"],))


def _reboot(ctx: CallContext, vm: str, states: tuple[str, ...]) -> None:
    store = ctx.store
    with store.lock:
        rec = _expect(store, vm, *states)
        domains.record_shutdown(store, vm, "rebooted", "external", rec["actions_after_reboot"])
        domains.reboot(ctx.sim, vm)


@handler("VM.clean_reboot")
def vm_clean_reboot(ctx: CallContext, vm: str) -> None:
    with vm_operation(ctx, vm, "clean_reboot"):
        ctx.work()
        _reboot(ctx, vm, ("Running",))


@handler("VM.hard_reboot")
def vm_hard_reboot(ctx: CallContext, vm: str) -> None:
    with vm_operation(ctx, vm, "hard_reboot"):
        _cancel_others(ctx, vm, {"clean_shutdown", "clean_reboot", "pool_migrate",
                                 "call_plugin", "suspend"})
        ctx.work()
        _reboot(ctx, vm, ("Running", "Paused"))


@handler("VM.power_state_reset")
def vm_power_state_reset(ctx: CallContext, vm: str) -> None:
    store = ctx.store
    with store.lock:
        rec = store.raw("VM", vm)
        if rec["is_control_domain"]:
            raise XenAPIError("CANNOT_RESET_CONTROL_DOMAIN", vm)
        store.update("VM", vm, current_operations={})
        if rec["power_state"] != "Halted":
            domains.halt(ctx.sim, vm)
            store.update("VM", vm, suspend_VDI=NULL_REF)
        ctx.sim.refresh_allowed_operations("VM", vm)


# -- pause / suspend / resume --------------------------------------------------------------------


@handler("VM.pause")
def vm_pause(ctx: CallContext, vm: str) -> None:
    with vm_operation(ctx, vm, "pause"):
        ctx.work()
        with ctx.store.lock:
            _expect(ctx.store, vm, "Running")
            domains.set_paused(ctx.sim, vm, True)


@handler("VM.unpause")
def vm_unpause(ctx: CallContext, vm: str) -> None:
    with vm_operation(ctx, vm, "unpause"):
        ctx.work()
        with ctx.store.lock:
            _expect(ctx.store, vm, "Paused")
            domains.set_paused(ctx.sim, vm, False)


def _suspend_sr(store, vm: str, rec: dict[str, Any], host: str) -> str:
    candidates = [rec["suspend_SR"]]
    pools = store.refs("pool")
    if pools:
        p = store.raw("pool", pools[0])
        candidates += [p["suspend_image_SR"], p["default_SR"]]
    candidates.append(store.raw("host", host)["suspend_image_sr"])
    for sr in candidates:
        if store.has("SR", sr) and sr_plugged_on(store, sr, host):
            return sr
    raise XenAPIError("VM_NO_SUSPEND_SR", vm)


@handler("VM.suspend")
def vm_suspend(ctx: CallContext, vm: str) -> None:
    store = ctx.store
    with vm_operation(ctx, vm, "suspend"):
        with store.lock:
            rec = _expect(store, vm, "Running")
            sr = _suspend_sr(store, vm, rec, rec["resident_on"])
        ctx.work()
        with store.lock:
            rec = _expect(store, vm, "Running")
            size = rec["memory_static_max"] + 8 * memory.MiB
            vdi = new_vdi(ctx.sim, sr, size, name_label=f"Suspend image for {rec['name_label']}",
                          vdi_type="suspend", other_config={"vm": vm})
            domains.suspend(ctx.sim, vm, vdi)


def _resume(ctx: CallContext, vm: str, host: str | None, paused: bool, op: str) -> None:
    sim, store = ctx.sim, ctx.store
    with store.lock:
        vm_rules.assert_vm_op(store, vm, op)
        if host is None:
            target = placement.choose_host(sim, vm)
        else:
            store.raw("host", host)
            placement.assert_can_boot_here(sim, vm, host)
            target = host
        placement.assert_vbds_attachable(store, vm)
    with vm_operation(ctx, vm, op):
        ctx.work()
        with store.lock:
            rec = _expect(store, vm, "Suspended")
            placement.assert_can_boot_here(sim, vm, target)
            suspend_vdi = rec["suspend_VDI"]
            domains.boot(sim, vm, target, paused=paused)
            if store.has("VDI", suspend_vdi):
                destroy_vdi(sim, suspend_vdi)


@handler("VM.resume")
def vm_resume(ctx: CallContext, vm: str, start_paused: bool, force: bool) -> None:
    _resume(ctx, vm, None, start_paused, "resume")


@handler("VM.resume_on")
def vm_resume_on(ctx: CallContext, vm: str, host: str, start_paused: bool, force: bool) -> None:
    _resume(ctx, vm, host, start_paused, "resume_on")


# -- clone / copy / snapshot / provision -------------------------------------------------------

# Fields a new VM record (clone, copy, snapshot) takes from its source.
_COPIED = (
    "name_description", "user_version", "affinity", "memory_overhead", "memory_target",
    "memory_static_max", "memory_dynamic_max", "memory_dynamic_min", "memory_static_min",
    "VCPUs_max", "VCPUs_at_startup", "VCPUs_params", "actions_after_softreboot",
    "actions_after_shutdown", "actions_after_reboot", "actions_after_crash", "HVM_boot_policy",
    "HVM_boot_params", "HVM_shadow_multiplier", "platform", "PV_kernel", "PV_ramdisk",
    "PV_args", "PV_bootloader", "PV_bootloader_args", "PV_legacy_args", "PCI_bus",
    "last_boot_CPU_flags", "last_booted_record", "recommendations", "xenstore_data",
    "ha_restart_priority", "tags", "bios_strings", "hardware_platform_version",
    "has_vendor_device", "reference_label", "domain_type", "NVRAM",
)


def clone_vm(sim, vm: str, new_name: str, mode: str, sr: str | None = None,
             ignore_vdis: list[str] | None = None) -> str:
    """A new VM from ``vm``: mode clone (disks cloned), copy (disks copied
    to ``sr`` or their own SR) or snapshot (disks snapshotted)."""
    store = sim.store
    ignore = set(ignore_vdis or [])
    with store.lock:
        src = store.raw("VM", vm)
        snapshot = mode == "snapshot"
        other = dict(src["other_config"])
        if not snapshot:
            other["mac_seed"] = str(uuidlib.uuid4())
            other.pop("default_template", None)
        if src["is_a_template"] and "base_template_name" not in other:
            other["base_template_name"] = src["name_label"]
        fields = {k: src[k] for k in _COPIED}
        fields.update(
            name_label=new_name, other_config=other, power_state="Halted",
            is_a_template=snapshot or src["is_a_template"], is_default_template=False,
            is_a_snapshot=snapshot, snapshot_of=vm if snapshot else NULL_REF,
            snapshot_time=now_datetime() if snapshot else EPOCH,
            parent=src["parent"] if snapshot else NULL_REF, domid=-1,
            metrics=store.create("VM_metrics", {}), blocked_operations={},
            snapshot_info={"power-state-at-snapshot": src["power_state"]} if snapshot else {},
        )
        new = store.create("VM", fields)
        vdi_map: dict[str, str] = {}
        for vbd in src["VBDs"]:
            if not store.has("VBD", vbd):
                continue
            b = store.raw("VBD", vbd)
            vdi = b["VDI"]
            if not b["empty"] and store.has("VDI", vdi) and b["type"] != "CD" and vdi not in ignore:
                if vdi not in vdi_map:
                    if mode == "copy":
                        vdi_map[vdi] = copy_vdi(sim, vdi, sr if sr and store.has("SR", sr)
                                                else store.raw("VDI", vdi)["SR"])
                    else:
                        vdi_map[vdi] = clone_vdi(sim, vdi, snapshot=snapshot)
                new_vdi_ref = vdi_map[vdi]
            elif b["type"] != "CD" and vdi in ignore:
                continue
            else:
                new_vdi_ref = vdi
            store.create("VBD", {
                "VM": new, "VDI": new_vdi_ref,
                **{k: b[k] for k in ("device", "userdevice", "bootable", "mode", "type",
                                     "unpluggable", "empty", "other_config",
                                     "qos_algorithm_type", "qos_algorithm_params")},
                "currently_attached": False,
            })
        for vif in src["VIFs"]:
            if not store.has("VIF", vif):
                continue
            v = store.raw("VIF", vif)
            regen = v["MAC_autogenerated"] and not snapshot
            store.create("VIF", {
                **{k: v[k] for k in ("device", "network", "MTU", "other_config",
                                     "qos_algorithm_type", "qos_algorithm_params",
                                     "locking_mode", "ipv4_allowed", "ipv6_allowed",
                                     "MAC_autogenerated")},
                "VM": new, "MAC": new_mac() if regen else v["MAC"], "currently_attached": False,
            })
        if snapshot:
            store.update("VM", vm, parent=new)
        for child_cls, field in (("VBD", "VBDs"), ("VIF", "VIFs")):
            for dev in store.raw("VM", new)[field]:
                sim.refresh_allowed_operations(child_cls, dev)
        sim.refresh_allowed_operations("VM", new)
        return new


@handler("VM.clone")
def vm_clone(ctx: CallContext, vm: str, new_name: str) -> str:
    with vm_operation(ctx, vm, "clone"):
        ctx.work()
        return clone_vm(ctx.sim, vm, new_name, "clone")


@handler("VM.copy")
def vm_copy(ctx: CallContext, vm: str, new_name: str, sr: str) -> str:
    store = ctx.store
    with store.lock:
        if sr != NULL_REF and store.has("SR", sr) and store.raw("SR", sr)["content_type"] == "iso":
            raise XenAPIError("OPERATION_NOT_ALLOWED", "Cannot copy a VM's disks to an ISO SR")
    with vm_operation(ctx, vm, "copy"):
        ctx.work()
        return clone_vm(ctx.sim, vm, new_name, "copy", sr=sr)


@handler("VM.snapshot")
def vm_snapshot(ctx: CallContext, vm: str, new_name: str, ignore_vdis: list[str]) -> str:
    with vm_operation(ctx, vm, "snapshot"):
        ctx.work()
        return clone_vm(ctx.sim, vm, new_name, "snapshot", ignore_vdis=ignore_vdis)


@handler("VM.revert")
def vm_revert(ctx: CallContext, snapshot: str) -> None:
    """Bring the snapshot's VM back to the snapshot: its domain goes, the
    disks the snapshot covers are replaced by clones of the snapshot's,
    disks it doesn't cover are detached (kept), VIFs come back with their
    MACs, and the VM takes the snapshot's settings."""
    sim, store = ctx.sim, ctx.store
    with vm_operation(ctx, snapshot, "revert"):
        with store.lock:
            vm = store.raw("VM", snapshot)["snapshot_of"]
            if not store.has("VM", vm):
                raise XenAPIError("VM_REVERT_FAILED", snapshot, vm)
        ctx.work()
        with store.lock:
            snap = store.raw("VM", snapshot)
            rec = store.raw("VM", vm)
            if rec["power_state"] != "Halted":
                domains.halt(sim, vm)
            old_suspend = rec["suspend_VDI"]
            covered = {store.raw("VDI", store.raw("VBD", b)["VDI"])["snapshot_of"]
                       for b in snap["VBDs"] if not store.raw("VBD", b)["empty"] and
                       store.has("VDI", store.raw("VBD", b)["VDI"])}
            for vbd in list(rec["VBDs"]):
                b = store.raw("VBD", vbd)
                if b["type"] == "CD" and b["empty"]:
                    continue
                vdi = b["VDI"]
                store.destroy("VBD", vbd)
                if vdi in covered and store.has("VDI", vdi):
                    destroy_vdi(sim, vdi)
            for vbd in snap["VBDs"]:
                b = store.raw("VBD", vbd)
                vdi = b["VDI"]
                if b["type"] == "CD" and b["empty"]:
                    continue
                if not b["empty"] and b["type"] != "CD" and store.has("VDI", vdi):
                    vdi = clone_vdi(sim, vdi, name_label=store.raw("VDI", vdi)["name_label"])
                store.create("VBD", {
                    "VM": vm, "VDI": vdi,
                    **{k: b[k] for k in ("device", "userdevice", "bootable", "mode", "type",
                                         "unpluggable", "empty", "other_config",
                                         "qos_algorithm_type", "qos_algorithm_params")},
                    "currently_attached": False,
                })
            for vif in list(rec["VIFs"]):
                store.destroy("VIF", vif)
            for vif in snap["VIFs"]:
                v = store.raw("VIF", vif)
                store.create("VIF", {
                    **{k: v[k] for k in ("device", "network", "MTU", "other_config", "MAC",
                                         "qos_algorithm_type", "qos_algorithm_params",
                                         "locking_mode", "ipv4_allowed", "ipv6_allowed",
                                         "MAC_autogenerated")},
                    "VM": vm, "currently_attached": False,
                })
            fields = {k: snap[k] for k in _COPIED}
            fields.update(name_label=rec["name_label"], parent=snapshot, suspend_VDI=NULL_REF)
            store.update("VM", vm, **fields)
            if store.has("VDI", old_suspend):
                destroy_vdi(sim, old_suspend)
            for cls, field in (("VBD", "VBDs"), ("VIF", "VIFs")):
                for dev in store.raw("VM", vm)[field]:
                    sim.refresh_allowed_operations(cls, dev)
            sim.refresh_allowed_operations("VM", vm)


@handler("VM.snapshot_with_quiesce")
def vm_snapshot_with_quiesce(ctx: CallContext, vm: str, new_name: str) -> str:
    with ctx.store.lock:
        vm_rules.assert_vm_op(ctx.store, vm, "snapshot_with_quiesce")
    raise XenAPIError("VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED", vm, "VSS support removed")


@handler("VM.provision")
def vm_provision(ctx: CallContext, vm: str) -> None:
    """Turn a template's other_config:disks recipe into VDIs and VBDs, and
    the template into a VM, as xapi's provision does."""
    store = ctx.store
    with vm_operation(ctx, vm, "provision"):
        ctx.work()
        with store.lock:
            rec = store.raw("VM", vm)
            recipe = rec["other_config"].get("disks", "")
            disks = []
            if recipe.strip():
                try:
                    root = ET.fromstring(recipe)
                except ET.ParseError:
                    raise XenAPIError("INVALID_VALUE", "other_config:disks", recipe) from None
                disks = [d.attrib for d in root.iter("disk")]
            for d in disks:
                sr = d.get("sr", "")
                sr_ref = NULL_REF
                if sr:
                    try:
                        sr_ref = store.ref_of_uuid("SR", sr)
                    except XenAPIError:
                        sr_ref = NULL_REF
                if sr_ref == NULL_REF:
                    sr_ref = pool_default_sr(store)
                if sr_ref == NULL_REF:
                    raise XenAPIError("DEFAULT_SR_NOT_FOUND", sr_ref)
                size = int(d.get("size", "0") or 0)
                vdi = new_vdi(ctx.sim, sr_ref, size, name_label=f"{d.get('device', '0')}",
                              vdi_type=d.get("type", "system"))
                store.create("VBD", {
                    "VM": vm, "VDI": vdi, "userdevice": d.get("device", "0"),
                    "bootable": d.get("bootable", "false") == "true", "mode": "RW",
                    "type": "Disk", "unpluggable": True, "empty": False, "other_config": {},
                    "qos_algorithm_type": "", "qos_algorithm_params": {},
                })
            other = dict(rec["other_config"])
            other.pop("disks", None)
            other.pop("default_template", None)
            store.update("VM", vm, is_a_template=False, is_default_template=False,
                         other_config=other)
            for vbd in rec["VBDs"]:
                ctx.sim.refresh_allowed_operations("VBD", vbd)


# -- migration ------------------------------------------------------------------------------------


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
            _expect(store, vm, "Running")
            placement.assert_can_boot_here(sim, vm, host)
            _move(sim, vm, host)


def _move(sim, vm: str, host: str) -> None:
    """The domain now lives on ``host`` under a new domid."""
    store = sim.store
    rec = store.raw("VM", vm)
    old = rec["resident_on"]
    store.update("VM", vm, resident_on=host, domid=domains.alloc_domid(sim, host))
    memory.refresh_host_memory(store, host)
    memory.refresh_host_memory(store, old)
    sim.refresh_allowed_operations("VM", vm)


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
    with ctx.store.lock:
        _check_migrate(ctx, vm, dest, vdi_map, vif_map)


@handler("VM.migrate_send")
def vm_migrate_send(ctx: CallContext, vm: str, dest: dict[str, str], live: bool,
                    vdi_map: dict[str, str], vif_map: dict[str, str], options: dict[str, str],
                    vgpu_map: dict[str, str]) -> str:
    sim, store = ctx.sim, ctx.store
    with store.lock:
        host = _check_migrate(ctx, vm, dest, vdi_map, vif_map)
    with vm_operation(ctx, vm, "migrate_send"):
        ctx.work()
        with store.lock:
            host = _check_migrate_again(ctx, vm, dest, vdi_map, vif_map)
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
                _move(sim, vm, host)
            sim.refresh_allowed_operations("VM", vm)
    return vm


def _check_migrate_again(ctx, vm, dest, vdi_map, vif_map) -> str:
    # Inside our own operation the concurrency check would see ourselves.
    store = ctx.store
    rec = store.raw("VM", vm)
    if rec["power_state"] not in vm_rules.POWER_STATES_FOR_OP["migrate_send"]:
        raise vm_rules.bad_power_state(vm, vm_rules.POWER_STATES_FOR_OP["migrate_send"],
                                        rec["power_state"])
    return _dest_host(store, dest)


# -- checks and small messages -------------------------------------------------------------------


@handler("VM.assert_operation_valid")
def vm_assert_operation_valid(ctx: CallContext, vm: str, op: str) -> None:
    with ctx.store.lock:
        vm_rules.assert_vm_op(ctx.store, vm, op)


@handler("VM.update_allowed_operations")
def vm_update_allowed_operations(ctx: CallContext, vm: str) -> None:
    with ctx.store.lock:
        ctx.store.raw("VM", vm)
        ctx.sim.refresh_allowed_operations("VM", vm)


@handler("VM.assert_can_boot_here")
def vm_assert_can_boot_here(ctx: CallContext, vm: str, host: str) -> None:
    with ctx.store.lock:
        ctx.store.raw("host", host)
        placement.assert_can_boot_here(ctx.sim, vm, host)


@handler("VM.get_possible_hosts")
def vm_get_possible_hosts(ctx: CallContext, vm: str) -> list[str]:
    out = []
    with ctx.store.lock:
        ctx.store.raw("VM", vm)
        for host in ctx.store.refs("host"):
            try:
                placement.assert_can_boot_here(ctx.sim, vm, host)
            except XenAPIError:
                continue
            out.append(host)
    return out


@handler("VM.get_allowed_VBD_devices")
def vm_get_allowed_vbd_devices(ctx: CallContext, vm: str) -> list[str]:
    with ctx.store.lock:
        used = {ctx.store.raw("VBD", b)["userdevice"] for b in ctx.store.raw("VM", vm)["VBDs"]}
    return [str(i) for i in range(16) if str(i) not in used]


@handler("VM.get_allowed_VIF_devices")
def vm_get_allowed_vif_devices(ctx: CallContext, vm: str) -> list[str]:
    with ctx.store.lock:
        used = {ctx.store.raw("VIF", v)["device"] for v in ctx.store.raw("VM", vm)["VIFs"]}
    return [str(i) for i in range(7) if str(i) not in used]


@handler("VM.set_is_a_template")
def vm_set_is_a_template(ctx: CallContext, vm: str, value: bool) -> None:
    store = ctx.store
    with store.lock:
        rec = store.raw("VM", vm)
        if value and not rec["is_a_template"]:
            vm_rules.assert_vm_op(store, vm, "make_into_template")
        store.update("VM", vm, is_a_template=value)
        if not value:
            store.update("VM", vm, is_default_template=False)
        ctx.sim.refresh_allowed_operations("VM", vm)


def _set_memory(ctx: CallContext, vm: str, op: str, **values: int) -> None:
    store = ctx.store
    with store.lock:
        vm_rules.assert_vm_op(store, vm, op)
        rec = store.raw("VM", vm)
        m = {k: values.get(k, rec[k]) for k in ("memory_static_min", "memory_dynamic_min",
                                                "memory_dynamic_max", "memory_static_max")}
        if not (0 <= m["memory_static_min"] <= m["memory_dynamic_min"] <=
                m["memory_dynamic_max"] <= m["memory_static_max"]):
            raise XenAPIError("MEMORY_CONSTRAINT_VIOLATION",
                              "static_min <= dynamic_min <= dynamic_max <= static_max")
        store.update("VM", vm, **values)
        store.update("VM", vm, memory_overhead=memory.vm_memory_overhead(rec))
        ctx.sim.refresh_allowed_operations("VM", vm)


@handler("VM.set_memory_limits")
def vm_set_memory_limits(ctx: CallContext, vm: str, static_min: int, static_max: int,
                         dynamic_min: int, dynamic_max: int) -> None:
    _set_memory(ctx, vm, "changing_memory_limits", memory_static_min=static_min,
                memory_static_max=static_max, memory_dynamic_min=dynamic_min,
                memory_dynamic_max=dynamic_max)


@handler("VM.set_memory_static_range")
def vm_set_memory_static_range(ctx: CallContext, vm: str, min: int, max: int) -> None:
    _set_memory(ctx, vm, "changing_static_range", memory_static_min=min, memory_static_max=max)


@handler("VM.set_memory_dynamic_range")
def vm_set_memory_dynamic_range(ctx: CallContext, vm: str, min: int, max: int) -> None:
    _set_memory(ctx, vm, "changing_dynamic_range", memory_dynamic_min=min,
                memory_dynamic_max=max)


@handler("VM.set_memory")
def vm_set_memory(ctx: CallContext, vm: str, value: int) -> None:
    _set_memory(ctx, vm, "changing_memory_limits", memory_static_max=value,
                memory_dynamic_min=value, memory_dynamic_max=value)


@handler("VM.set_memory_static_max")
def vm_set_memory_static_max(ctx: CallContext, vm: str, value: int) -> None:
    _set_memory(ctx, vm, "changing_static_range", memory_static_max=value)


@handler("VM.set_memory_static_min")
def vm_set_memory_static_min(ctx: CallContext, vm: str, value: int) -> None:
    _set_memory(ctx, vm, "changing_static_range", memory_static_min=value)


@handler("VM.set_memory_dynamic_max")
def vm_set_memory_dynamic_max(ctx: CallContext, vm: str, value: int) -> None:
    _set_memory(ctx, vm, "changing_dynamic_range", memory_dynamic_max=value)


@handler("VM.set_memory_dynamic_min")
def vm_set_memory_dynamic_min(ctx: CallContext, vm: str, value: int) -> None:
    _set_memory(ctx, vm, "changing_dynamic_range", memory_dynamic_min=value)


@handler("VM.set_VCPUs_max")
def vm_set_vcpus_max(ctx: CallContext, vm: str, value: int) -> None:
    store = ctx.store
    with store.lock:
        vm_rules.assert_vm_op(store, vm, "changing_VCPUs")
        if value < 1:
            raise XenAPIError("INVALID_VALUE", "VCPU values must satisfy: 0 < VCPUs_at_startup "
                              "≤ VCPUs_max", str(value))
        if value < store.raw("VM", vm)["VCPUs_at_startup"]:
            raise XenAPIError("VALUE_NOT_SUPPORTED", "VCPUs_max", str(value),
                              "value less than VCPUs_at_startup")
        store.update("VM", vm, VCPUs_max=value)
        store.update("VM", vm, memory_overhead=memory.vm_memory_overhead(store.raw("VM", vm)))


@handler("VM.set_VCPUs_at_startup")
def vm_set_vcpus_at_startup(ctx: CallContext, vm: str, value: int) -> None:
    store = ctx.store
    with store.lock:
        vm_rules.assert_vm_op(store, vm, "changing_VCPUs")
        if value < 1 or value > store.raw("VM", vm)["VCPUs_max"]:
            raise XenAPIError("VALUE_NOT_SUPPORTED", "VCPUs_at_startup", str(value),
                              "value must be between 1 and VCPUs_max")
        store.update("VM", vm, VCPUs_at_startup=value)


@handler("VM.set_VCPUs_number_live")
def vm_set_vcpus_number_live(ctx: CallContext, vm: str, nvcpu: int) -> None:
    store = ctx.store
    with store.lock:
        vm_rules.assert_vm_op(store, vm, "changing_VCPUs_live")
        rec = store.raw("VM", vm)
        if nvcpu < 1 or nvcpu > rec["VCPUs_max"]:
            raise XenAPIError("VALUE_NOT_SUPPORTED", "nvcpu", str(nvcpu),
                              "value must be between 1 and VCPUs_max")
        store.update("VM", vm, VCPUs_at_startup=nvcpu)
        if store.has("VM_metrics", rec["metrics"]):
            store.update("VM_metrics", rec["metrics"], VCPUs_number=nvcpu,
                         VCPUs_utilisation={i: 0.0 for i in range(nvcpu)})


@handler("VM.get_boot_record")
def vm_get_boot_record(ctx: CallContext, vm: str) -> dict[str, Any]:
    return ctx.store.get("VM", vm)


@handler("VM.get_cooperative")
def vm_get_cooperative(ctx: CallContext, vm: str) -> bool:
    ctx.store.raw("VM", vm)
    return True


@handler("VM.set_memory_target_live")
def vm_set_memory_target_live(ctx: CallContext, vm: str, target: int) -> None:
    ctx.store.raw("VM", vm)


@handler("VM.wait_memory_target_live")
def vm_wait_memory_target_live(ctx: CallContext, vm: str) -> None:
    with ctx.store.lock:
        vm_rules.assert_vm_op(ctx.store, vm, "awaiting_memory_live")


@handler("VM.send_sysrq", "VM.send_trigger")
def vm_send_key(ctx: CallContext, vm: str, key: str) -> None:
    with ctx.store.lock:
        vm_rules.assert_vm_op(ctx.store, vm, ctx.method.split(".")[1])


@handler("VM.maximise_memory")
def vm_maximise_memory(ctx: CallContext, vm: str, total: int, approximate: bool) -> int:
    """The largest static_max that fits in ``total`` bytes with overhead."""
    with ctx.store.lock:
        rec = dict(ctx.store.raw("VM", vm))
    lo, hi = 0, max(total, 0)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        rec["memory_static_max"] = mid
        if mid + memory.vm_memory_overhead(rec) <= total:
            lo = mid
        else:
            hi = mid - 1
    if approximate:
        lo -= lo % memory.MiB
    return lo


@handler("VM.add_to_VCPUs_params_live")
def vm_add_to_vcpus_params_live(ctx: CallContext, vm: str, key: str, value: str) -> None:
    with ctx.store.lock:
        vm_rules.assert_vm_op(ctx.store, vm, "changing_VCPUs_live")
        params = dict(ctx.store.raw("VM", vm)["VCPUs_params"])
        params[key] = value
        ctx.store.update("VM", vm, VCPUs_params=params)


@handler("VM.set_shadow_multiplier_live")
def vm_set_shadow_multiplier_live(ctx: CallContext, vm: str, multiplier: float) -> None:
    with ctx.store.lock:
        vm_rules.assert_vm_op(ctx.store, vm, "changing_shadow_memory_live")
        if multiplier < 1.0:
            raise XenAPIError("INVALID_VALUE", "multiplier", str(multiplier))
        ctx.store.update("VM", vm, HVM_shadow_multiplier=multiplier)


@handler("VM.assert_agile")
def vm_assert_agile(ctx: CallContext, vm: str) -> None:
    """A VM is agile when every disk is on a shared SR."""
    store = ctx.store
    with store.lock:
        for sr in placement.vm_srs(store, vm, with_suspend=False):
            if not store.raw("SR", sr)["shared"]:
                raise XenAPIError("HA_CONSTRAINT_VIOLATION_SR_NOT_SHARED", sr)


@handler("VM.get_data_sources")
def vm_get_data_sources(ctx: CallContext, vm: str) -> list[dict[str, Any]]:
    ctx.store.raw("VM", vm)
    return []


@handler("VM.record_data_source", "VM.forget_data_source_archives")
def vm_record_data_source(ctx: CallContext, vm: str, data_source: str) -> None:
    ctx.store.raw("VM", vm)


@handler("VM.query_data_source")
def vm_query_data_source(ctx: CallContext, vm: str, data_source: str) -> float:
    with ctx.store.lock:
        rec = ctx.store.raw("VM", vm)
        if rec["power_state"] != "Running":
            raise vm_rules.bad_power_state(vm, ("Running",), rec["power_state"])
        if data_source == "memory" and ctx.store.has("VM_metrics", rec["metrics"]):
            return float(ctx.store.raw("VM_metrics", rec["metrics"])["memory_actual"])
    return 0.0
