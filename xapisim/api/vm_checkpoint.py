"""VM.checkpoint: a snapshot of a live VM that includes its memory, as
xapi's Xapi_vm_snapshot.checkpoint makes it. The VM is suspended for a
moment to write its memory image, its disks are snapshotted, and it runs
on; the snapshot is a Suspended VM whose suspend_VDI holds the image, so
VM.revert to it brings the VM back suspended, ready to resume where it
was. A suspended VM's checkpoint gets a copy of its suspend image."""

from __future__ import annotations

from xapisim import memory
from xapisim.api import handler
from xapisim.api.vm import expect_power_state, vm_operation
from xapisim.api.vm_copy import clone_vm
from xapisim.api.vm_power import _suspend_sr
from xapisim.context import CallContext
from xapisim.errors import XenAPIError
from xapisim.vdi_records import copy_vdi, new_vdi

LIVE = ("Running", "Paused")


@handler("VM.checkpoint")
def vm_checkpoint(ctx: CallContext, vm: str, new_name: str) -> str:
    sim, store = ctx.sim, ctx.store
    with vm_operation(ctx, vm, "checkpoint"):
        with store.lock:
            rec = expect_power_state(store, vm, *LIVE, "Suspended")
            sr = _suspend_sr(store, vm, rec, rec["resident_on"]) if rec["power_state"] in LIVE \
                else None
        ctx.work()
        with store.lock:
            rec = expect_power_state(store, vm, *LIVE, "Suspended")
            snap = clone_vm(sim, vm, new_name, "snapshot")
            if rec["power_state"] in LIVE and sr is not None:
                image = new_vdi(sim, sr, rec["memory_static_max"] + 8 * memory.MiB,
                                name_label=f"Suspend image for {new_name}",
                                vdi_type="suspend", other_config={"vm": snap})
            else:
                src = rec["suspend_VDI"]
                if not store.has("VDI", src):
                    raise XenAPIError("VM_HAS_NO_SUSPEND_VDI", vm)
                image = copy_vdi(sim, src, store.raw("VDI", src)["SR"])
            boot_record = rec["last_booted_record"] or f"<simulated boot record of {rec['uuid']}>"
            store.update("VM", snap, power_state="Suspended", suspend_VDI=image,
                         last_booted_record=boot_record,
                         last_boot_CPU_flags=dict(rec["last_boot_CPU_flags"]))
            sim.refresh_allowed_operations("VM", snap)
            return snap
