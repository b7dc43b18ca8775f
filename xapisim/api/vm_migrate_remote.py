"""Cross-pool VM.assert_can_migrate and VM.migrate_send: the destination
host named in the token (from the other pool's ``host.migrate_receive``)
is not in this pool's database, so this xapi talks to the other pool's
coordinator with the token's ``master`` URL and ``session_id``.

The send, as xapi's storage motion does it in outline: for each disk a
new VDI on the mapped remote SR, its data streamed into it
(``/import_raw_vdi``, as a sparse VHD); then the VM's records, mapped to
the remote VDIs and networks, through ``/import_metadata``, which starts
the VM on the destination host when the migration is live; then the VM
and its disks are destroyed here. Any failure on the way destroys what
was made on the remote side and leaves the VM where it was.

Checks, in xapi's spirit: every disk VDI in ``vdi_map`` (VDI_NOT_IN_MAP),
every VIF in ``vif_map`` (VIF_NOT_IN_MAP), the remote reachable
(CANNOT_CONTACT_HOST), the destination enabled (HOST_DISABLED) and not
older (VM_HOST_INCOMPATIBLE_VERSION_MIGRATE), the mapped SRs seen by the
destination (VM_REQUIRES_SR), memory there for a running VM
(HOST_NOT_ENOUGH_FREE_MEMORY), and a dry run of the metadata import.

Deviation: snapshots are not carried across pools; a VM with snapshots is
refused (OPERATION_NOT_ALLOWED) rather than half moved.
"""

from __future__ import annotations

import json
from typing import Any

from xapisim import memory, vdi_data, vhd, vm_rules
from xapisim.context import CallContext
from xapisim.errors import XenAPIError
from xapisim.remote_xapi import RemoteXapi, json_body
from xapisim.schema import NULL_REF
from xapisim.vdi_records import destroy_vdi

# VM fields that are references into this pool: never sent
_VM_REFS = {"affinity", "suspend_VDI", "suspend_SR", "parent", "snapshot_of", "appliance",
            "protection_policy", "snapshot_schedule", "groups", "metrics", "guest_metrics",
            "resident_on", "scheduled_to_be_resident_on", "children", "snapshots",
            "VBDs", "VIFs", "consoles", "VGPUs", "VUSBs", "VTPMs", "crash_dumps",
            "attached_PCIs", "power_state"}


def is_cross_pool(ctx: CallContext, dest: dict[str, str]) -> bool:
    return not ctx.store.has("host", dest.get("host", ""))


def _remote(dest: dict[str, str]) -> RemoteXapi:
    if "master" not in dest or "session_id" not in dest:
        raise XenAPIError("VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED")
    return RemoteXapi(dest["master"], dest["session_id"])


def _disks(store, vm: str) -> list[tuple[str, str]]:
    """(VBD, VDI) of the VM's non-empty disks."""
    out = []
    for vbd in store.raw("VM", vm)["VBDs"]:
        b = store.raw("VBD", vbd)
        if not b["empty"] and store.has("VDI", b["VDI"]):
            out.append((vbd, b["VDI"]))
    return out


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split("."))
    except ValueError:
        return ()


def check(ctx: CallContext, vm: str, dest: dict[str, str], live: bool,
          vdi_map: dict[str, str], vif_map: dict[str, str]) -> RemoteXapi:
    store = ctx.store
    with store.lock:
        vm_rules.assert_vm_op(store, vm, "migrate_send")
        rec = store.raw("VM", vm)
        if rec["snapshots"]:
            raise XenAPIError("OPERATION_NOT_ALLOWED",
                              "the simulator does not carry snapshots across pools")
        for _vbd, vdi in _disks(store, vm):
            if vdi not in vdi_map:
                raise XenAPIError("VDI_NOT_IN_MAP", vdi)
        for vif in rec["VIFs"]:
            if vif not in vif_map:
                raise XenAPIError("VIF_NOT_IN_MAP", vif)
        source_host = rec["resident_on"] if rec["resident_on"] != NULL_REF else ctx.sim.master_ref
        source_version = store.raw("host", source_host)["software_version"].get(
            "product_version", "")
        running = rec["power_state"] == "Running"
        needed = memory.vm_start_memory(rec)
        doc = _metadata(ctx, vm, dest["host"], {}, vif_map, live and running)
    remote = _remote(dest)
    host = dest["host"]
    host_rec = remote.call("host.get_record", host)
    if not host_rec.get("enabled"):
        raise XenAPIError("HOST_DISABLED", host)
    dest_version = (host_rec.get("software_version") or {}).get("product_version", "")
    if _version(dest_version) < _version(source_version):
        raise XenAPIError("VM_HOST_INCOMPATIBLE_VERSION_MIGRATE", host, vm)
    for sr in set(vdi_map.values()):
        pbds = [remote.call("PBD.get_record", p) for p in remote.call("SR.get_PBDs", sr)]
        if not any(p.get("host") == host and p.get("currently_attached") for p in pbds):
            raise XenAPIError("VM_REQUIRES_SR", vm, sr)
    if running:
        available = int(remote.call("host.compute_free_memory", host))
        if available < needed:
            raise XenAPIError("HOST_NOT_ENOUGH_FREE_MEMORY", str(needed), str(available))
    # the receiver's own checks: networks, host, a VM of the same uuid
    body, length = json_body(doc)
    remote.put("/import_metadata", {"dry_run": "true"}, body, length, "VM metadata check")
    return remote


def _metadata(ctx: CallContext, vm: str, host: str, remote_vdis: dict[str, str],
              vif_map: dict[str, str], live: bool) -> dict[str, Any]:
    """The VM's records as the receiver imports them, mapped to its objects."""
    store = ctx.store
    model = ctx.sim.model
    rec = store.raw("VM", vm)
    vm_fields: dict[str, Any] = {}
    for n, f in model.classes["VM"].fields.items():
        if not f.in_constructor or n not in rec:
            continue
        if n not in _VM_REFS:
            vm_fields[n] = rec[n]
        elif f.type.kind == "ref":
            vm_fields[n] = NULL_REF  # this pool's object: nothing there
        elif f.type.kind in ("set", "map"):
            vm_fields[n] = [] if f.type.kind == "set" else {}
    vm_fields["uuid"] = rec["uuid"]
    vbds = []
    for vbd in rec["VBDs"]:
        b = store.raw("VBD", vbd)
        fields = {n: b[n] for n, f in model.classes["VBD"].fields.items()
                  if f.in_constructor and n not in ("VM", "VDI", "metrics") and n in b}
        fields["VDI"] = remote_vdis.get(b["VDI"], NULL_REF)
        if fields["VDI"] == NULL_REF:
            fields["empty"] = True
        vbds.append(fields)
    vifs = []
    for vif in rec["VIFs"]:
        v = store.raw("VIF", vif)
        fields = {n: v[n] for n, f in model.classes["VIF"].fields.items()
                  if f.in_constructor and n not in ("VM", "network", "metrics") and n in v}
        fields["network"] = vif_map.get(vif, NULL_REF)
        vifs.append(fields)
    return json.loads(json.dumps(
        {"VM": vm_fields, "VBDs": vbds, "VIFs": vifs, "host": host, "live": live},
        default=str))


def _send_disk(ctx: CallContext, remote: RemoteXapi, vdi: str, sr: str) -> str:
    """A new VDI on remote ``sr`` with ``vdi``'s settings and data."""
    store = ctx.store
    with store.lock:
        rec = store.raw("VDI", vdi)
        uuid, size = rec["uuid"], rec["virtual_size"]
        record = {"name_label": rec["name_label"], "name_description": rec["name_description"],
                  "SR": sr, "virtual_size": str(size), "type": rec["type"],
                  "sharable": rec["sharable"], "read_only": False,
                  "other_config": dict(rec["other_config"]), "xenstore_data": {},
                  "sm_config": {}, "tags": list(rec["tags"])}
    new = remote.call("VDI.create", record)
    path = vdi_data.path(ctx.sim, uuid)
    f = open(path, "rb") if path.exists() else None
    try:
        length = vhd.dynamic_size(f, size)
        if f is not None:
            f.seek(0)
        remote.put("/import_raw_vdi", {"vdi": new, "format": "vhd"},
                   vhd.export_dynamic(f, size), length, "Storage migration",
                   base_url=remote.url_for_sr(sr))
    except BaseException:
        _forget(remote, "VDI", new)
        raise
    finally:
        if f is not None:
            f.close()
    return new


def _forget(remote: RemoteXapi, cls: str, ref: str) -> None:
    try:
        remote.call(f"{cls}.destroy", ref)
    except XenAPIError:
        pass  # best effort, as xapi's clean-up after a failed migration


def send(ctx: CallContext, remote: RemoteXapi, vm: str, dest: dict[str, str], live: bool,
         vdi_map: dict[str, str], vif_map: dict[str, str]) -> str:
    """The transfer; the caller holds the VM's migrate_send operation."""
    from xapisim.api.vm import destroy_vm_records

    store = ctx.store
    with store.lock:
        disks = _disks(store, vm)
        running = store.raw("VM", vm)["power_state"] == "Running"
    remote_vdis: dict[str, str] = {}
    try:
        for i, (_vbd, vdi) in enumerate(disks):
            ctx.check_cancel()
            remote_vdis[vdi] = _send_disk(ctx, remote, vdi, vdi_map[vdi])
            if ctx.task_ref:
                ctx.sim.tasks.set_progress(ctx.task_ref, 0.5 + 0.4 * (i + 1) / len(disks))
        ctx.check_cancel()
        with store.lock:
            doc = _metadata(ctx, vm, dest["host"], remote_vdis, vif_map, live and running)
        body, length = json_body(doc)
        new_vm = remote.put("/import_metadata", {}, body, length, "VM metadata import")
    except BaseException:
        for ref in remote_vdis.values():
            _forget(remote, "VDI", ref)
        raise
    with store.lock:
        for _vbd, vdi in disks:
            if store.has("VDI", vdi):
                destroy_vdi(ctx.sim, vdi, force=True)
        destroy_vm_records(ctx.sim, vm)
    ctx.sim.log.info("migrate_send: VM %s went to %s", doc["VM"]["uuid"], remote.address)
    return new_vm
