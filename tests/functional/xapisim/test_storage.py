"""Storage on xapisim through the official SDK over HTTP: VDI create/
destroy/clone/snapshot/copy/resize with SR accounting, VDI_IN_USE, SR
scan/introduce/forget/create/destroy, PBD plug/unplug, and VBD
create/destroy/plug/unplug/insert/eject with their state errors and
allowed_operations."""

from __future__ import annotations

import pytest
from simvm import GiB, default_sr, failure, make_disk, make_vm, vbd_record, vm_record

NULL = "OpaqueRef:NULL"


@pytest.fixture
def x(xapi):
    return xapi.xenapi


def vdi_record(sr: str, size: int = GiB, **extra) -> dict:
    rec = {"name_label": "v", "name_description": "", "SR": sr, "virtual_size": str(size),
           "type": "user", "sharable": False, "read_only": False, "other_config": {}}
    rec.update(extra)
    return rec


def usage(x, sr: str) -> tuple[int, int]:
    return int(x.SR.get_physical_utilisation(sr)), int(x.SR.get_virtual_allocation(sr))


# -- VDI ----------------------------------------------------------------------------------------


def test_vdi_create_and_destroy_account_sr_space(x):
    sr = default_sr(x)
    phys, virt = usage(x, sr)
    vdi = x.VDI.create(vdi_record(sr, 3 * GiB, name_label="data", sm_config={"k": "v"}))
    rec = x.VDI.get_record(vdi)
    assert rec["virtual_size"] == str(3 * GiB) and rec["SR"] == sr
    assert rec["name_label"] == "data" and rec["sm_config"] == {"k": "v"}
    assert rec["managed"] is True and rec["location"] == rec["uuid"]
    assert rec["snapshot_of"] == NULL and rec["VBDs"] == []
    assert vdi in x.SR.get_VDIs(sr)
    assert usage(x, sr) == (phys + 3 * GiB, virt + 3 * GiB)
    assert set(rec["allowed_operations"]) >= {"clone", "copy", "destroy", "resize", "snapshot"}
    x.VDI.destroy(vdi)
    assert usage(x, sr) == (phys, virt)
    assert vdi not in x.SR.get_VDIs(sr)


def test_vdi_create_errors(x):
    sr = default_sr(x)
    rec = vdi_record(sr)
    del rec["virtual_size"]
    assert failure(x.VDI.create, rec) == ["FIELD_TYPE_ERROR", "virtual_size"]
    size = int(x.SR.get_physical_size(sr))
    assert failure(x.VDI.create, vdi_record(sr, size + 1)) == [
        "SR_FULL", str(int(x.SR.get_physical_utilisation(sr)) + size + 1), str(size)]
    assert failure(x.VDI.create, vdi_record("OpaqueRef:nosr")) == [
        "HANDLE_INVALID", "SR", "OpaqueRef:nosr"]
    pbd = x.SR.get_PBDs(sr)[0]
    x.PBD.unplug(pbd)
    assert failure(x.VDI.create, vdi_record(sr)) == ["SR_HAS_NO_PBDS", sr]


def test_vdi_in_use_while_attached(x):
    vm = x.VM.create(vm_record())
    vdi, vbd = make_disk(x, vm)
    x.VM.start(vm, False, False)
    ops = x.VDI.get_allowed_operations(vdi)
    assert "destroy" not in ops and "resize" not in ops
    assert {"snapshot", "clone", "resize_online"} <= set(ops)
    assert failure(x.VDI.destroy, vdi) == ["VDI_IN_USE", vdi, "destroy"]
    assert failure(x.VDI.resize, vdi, str(2 * GiB)) == ["VDI_IN_USE", vdi, "resize"]
    x.VDI.resize_online(vdi, str(2 * GiB))
    assert x.VDI.get_virtual_size(vdi) == str(2 * GiB)
    x.VM.hard_shutdown(vm)
    assert "destroy" in x.VDI.get_allowed_operations(vdi)
    assert failure(x.VDI.resize_online, vdi, str(3 * GiB)) == ["VDI_NOT_AVAILABLE", vdi]
    x.VDI.destroy(vdi)
    # xapi destroys the VDI's VBDs with it
    assert failure(x.VBD.get_record, vbd)[0] == "HANDLE_INVALID"
    assert x.VM.get_VBDs(vm) == []


def test_vdi_clone_snapshot_copy(x):
    sr = default_sr(x)
    vdi = x.VDI.create(vdi_record(sr, GiB, name_label="base"))
    phys, _ = usage(x, sr)
    clone = x.VDI.clone(vdi, {})
    assert x.VDI.get_virtual_size(clone) == str(GiB)
    assert x.VDI.get_is_a_snapshot(clone) is False
    snap = x.VDI.snapshot(vdi, {})
    assert x.VDI.get_is_a_snapshot(snap) is True and x.VDI.get_snapshot_of(snap) == vdi
    assert x.VDI.get_snapshots(vdi) == [snap]
    assert usage(x, sr)[0] == phys + 2 * GiB
    sr2 = x.SR.create(x.host.get_all()[0], {}, str(10 * GiB), "b", "", "ext", "user", False, {})
    copy = x.VDI.copy(vdi, sr2, NULL, NULL)
    assert x.VDI.get_SR(copy) == sr2 and x.VDI.get_name_label(copy) == "base"
    assert usage(x, sr2) == (GiB, GiB)
    big = x.VDI.create(vdi_record(sr, 2 * GiB))
    assert x.VDI.copy(vdi, NULL, NULL, big) == big
    assert failure(x.VDI.copy, big, NULL, NULL, vdi) == ["VDI_TOO_SMALL", vdi, str(2 * GiB)]


def test_vdi_resize_accounting_and_shrink(x):
    sr = default_sr(x)
    vdi = x.VDI.create(vdi_record(sr, GiB))
    phys, virt = usage(x, sr)
    x.VDI.resize(vdi, str(5 * GiB))
    assert x.VDI.get_virtual_size(vdi) == str(5 * GiB)
    assert usage(x, sr) == (phys + 4 * GiB, virt + 4 * GiB)
    assert failure(x.VDI.resize, vdi, str(GiB)) == ["VDI_TOO_SMALL", vdi, str(5 * GiB)]
    size = int(x.SR.get_physical_size(sr))
    assert failure(x.VDI.resize, vdi, str(size * 2))[0] == "SR_FULL"


def test_async_vdi_create_reports_ref(x):
    sr = default_sr(x)
    task = x.Async.VDI.create(vdi_record(sr))
    from simvm import wait_task

    assert wait_task(x, task) == "success"
    vdi = x.task.get_result(task).removeprefix("<value>").removesuffix("</value>")
    assert x.VDI.get_SR(vdi) == sr


# -- SR and PBD ---------------------------------------------------------------------------------


def test_pbd_plug_unplug_and_sr_operations(x):
    sr = default_sr(x)
    pbd = x.SR.get_PBDs(sr)[0]
    assert x.PBD.get_currently_attached(pbd) is True
    assert "unplug" in x.SR.get_allowed_operations(sr)
    assert failure(x.SR.forget, sr) == ["SR_HAS_PBD", sr]
    assert failure(x.SR.destroy, sr) == ["SR_HAS_PBD", sr]
    x.PBD.unplug(pbd)
    assert x.PBD.get_currently_attached(pbd) is False
    ops = x.SR.get_allowed_operations(sr)
    assert "plug" in ops and "unplug" not in ops
    assert failure(x.SR.scan, sr) == ["SR_HAS_NO_PBDS", sr]
    x.PBD.unplug(pbd)  # already unplugged: quietly nothing, as xapi
    x.PBD.plug(pbd)
    assert x.PBD.get_currently_attached(pbd) is True
    x.SR.scan(sr)


def test_pbd_unplug_refused_while_vm_uses_sr(x):
    vm = x.VM.create(vm_record())
    vdi, _ = make_disk(x, vm)
    x.VM.start(vm, False, False)
    sr = default_sr(x)
    pbd = x.SR.get_PBDs(sr)[0]
    assert failure(x.PBD.unplug, pbd) == ["VDI_IN_USE", vdi, "unplug"]


def test_sr_create_introduce_forget_destroy(x):
    host = x.host.get_all()[0]
    assert "nfs" in x.SR.get_supported_types()
    assert failure(x.SR.create, host, {}, "0", "x", "", "bogus", "user", False, {}) == [
        "SR_UNKNOWN_DRIVER", "bogus"]
    sr = x.SR.create(host, {"server": "nfs1", "serverpath": "/x"}, str(50 * GiB), "nfs sr",
                     "", "nfs", "user", True, {})
    pbds = x.SR.get_PBDs(sr)
    assert len(pbds) == 1 and x.PBD.get_host(pbds[0]) == host
    assert x.PBD.get_device_config(pbds[0])["server"] == "nfs1"
    x.VDI.create(vdi_record(sr))
    x.PBD.unplug(pbds[0])
    x.SR.destroy(sr)
    assert failure(x.SR.get_record, sr)[0] == "HANDLE_INVALID"
    assert failure(x.PBD.get_record, pbds[0])[0] == "HANDLE_INVALID"

    uuid = "0b1c2d3e-0000-4000-8000-000000000001"
    sr = x.SR.introduce(uuid, "intro", "", "iso", "iso", True, {})
    assert x.SR.get_uuid(sr) == uuid and x.SR.get_PBDs(sr) == []
    assert failure(x.SR.introduce, uuid, "again", "", "iso", "iso", True, {}) == [
        "SR_UUID_EXISTS", uuid]
    pbd = x.PBD.create({"host": host, "SR": sr, "device_config": {"location": "/iso"}})
    assert x.PBD.get_currently_attached(pbd) is False
    assert failure(x.PBD.create, {"host": host, "SR": sr, "device_config": {}}) == [
        "PBD_EXISTS", sr, host, pbd]
    x.PBD.plug(pbd)
    assert failure(x.PBD.destroy, pbd)[0] == "OPERATION_NOT_ALLOWED"
    x.PBD.unplug(pbd)
    x.SR.forget(sr)
    assert failure(x.PBD.get_record, pbd)[0] == "HANDLE_INVALID"


def test_vdi_introduce_on_sr(x):
    sr = default_sr(x)
    vdi = x.VDI.introduce("", "found", "", sr, "user", False, False, {}, "loc-1", {}, {}, True,
                          str(GiB), str(GiB), NULL, False, "19700101T00:00:00Z", NULL)
    assert x.VDI.get_location(vdi) == "loc-1" and vdi in x.SR.get_VDIs(sr)
    assert failure(x.VDI.introduce, "", "nl", "", sr, "user", False, False, {}, "", {}, {},
                   True, "0", "0", NULL, False, "19700101T00:00:00Z", NULL) == [
        "VDI_LOCATION_MISSING", sr, ""]
    x.VDI.forget(vdi)
    assert vdi not in x.SR.get_VDIs(sr)


# -- VBD ----------------------------------------------------------------------------------------


def test_vbd_create_checks(x):
    vm = x.VM.create(vm_record())
    sr = default_sr(x)
    vdi = x.VDI.create(vdi_record(sr))
    vbd = x.VBD.create(vbd_record(vm, vdi, userdevice="autodetect"))
    assert x.VBD.get_userdevice(vbd) == "0"
    assert x.VBD.get_currently_attached(vbd) is False
    assert x.VM.get_VBDs(vm) == [vbd] and x.VDI.get_VBDs(vdi) == [vbd]
    assert failure(x.VBD.create, vbd_record(vm, vdi, userdevice="0")) == [
        "DEVICE_ALREADY_EXISTS", "0"]
    assert failure(x.VBD.create, vbd_record(vm, vdi, userdevice="bogus!")) == [
        "INVALID_DEVICE", "bogus!"]
    assert failure(x.VBD.create, vbd_record(vm, NULL, userdevice="3", vbd_type="CD",
                                            empty=True)) == ["VBD_CDS_MUST_BE_READONLY"]
    assert failure(x.VBD.create, vbd_record(vm, NULL, userdevice="3", empty=True)) == [
        "VBD_NOT_REMOVABLE_MEDIA", "in constructor"]
    ro = x.VDI.create(vdi_record(sr, read_only=True))
    assert failure(x.VBD.create, vbd_record(vm, ro, userdevice="4")) == ["VDI_READONLY", ro]
    rec = vbd_record(vm, vdi, userdevice="5")
    del rec["mode"]
    assert failure(x.VBD.create, rec) == ["FIELD_TYPE_ERROR", "mode"]


def test_vbd_plug_unplug_follow_power_state(x):
    vm = make_vm(x, disk=False, vif=False)
    vdi, vbd = make_disk(x, vm)
    assert failure(x.VBD.plug, vbd) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert x.VBD.get_allowed_operations(vbd) == ["attach"]
    x.VM.start(vm, False, False)
    assert x.VBD.get_currently_attached(vbd) is True
    assert failure(x.VBD.plug, vbd) == ["DEVICE_ALREADY_ATTACHED", vbd]
    assert set(x.VBD.get_allowed_operations(vbd)) == {"attach", "unplug", "unplug_force",
                                                      "pause", "unpause"}
    assert failure(x.VBD.destroy, vbd)[0] == "OPERATION_NOT_ALLOWED"
    x.VBD.unplug(vbd)
    assert x.VBD.get_currently_attached(vbd) is False
    assert failure(x.VBD.unplug, vbd) == ["DEVICE_ALREADY_DETACHED", vbd]
    assert "plug" in x.VBD.get_allowed_operations(vbd)
    x.VBD.plug(vbd)
    assert x.VBD.get_device(vbd) == "xvda"
    # a second disk hot-plugged to the running VM
    vdi2, vbd2 = make_disk(x, vm, userdevice="1")
    x.VBD.plug(vbd2)
    assert x.VBD.get_device(vbd2) == "xvdb"
    x.VM.clean_shutdown(vm)
    assert not x.VBD.get_currently_attached(vbd) and not x.VBD.get_currently_attached(vbd2)
    x.VBD.destroy(vbd2)
    assert x.VM.get_VBDs(vm) == [vbd] and x.VDI.get_VBDs(vdi2) == []


def test_vbd_not_unpluggable(x):
    vm = x.VM.create(vm_record())
    vdi = x.VDI.create(vdi_record(default_sr(x)))
    vbd = x.VBD.create(vbd_record(vm, vdi, unpluggable=False))
    x.VM.start(vm, False, False)
    assert failure(x.VBD.unplug, vbd) == ["VBD_NOT_UNPLUGGABLE", vbd]
    assert "unplug" not in x.VBD.get_allowed_operations(vbd)


def test_vdi_attached_rw_twice_is_in_use(x):
    vdi = x.VDI.create(vdi_record(default_sr(x)))
    a = x.VM.create(vm_record("a"))
    b = x.VM.create(vm_record("b"))
    x.VBD.create(vbd_record(a, vdi))
    vbd_b = x.VBD.create(vbd_record(b, vdi))
    x.VM.start(a, False, False)
    assert failure(x.VM.start, b, False, False) == ["VDI_IN_USE", vdi, "attach"]
    x.VBD.destroy(vbd_b)
    x.VBD.create(vbd_record(b, vdi, mode="RO"))
    # read-only beside a writer is refused too, unless the VDI is sharable
    assert failure(x.VM.start, b, False, False) == ["VDI_IN_USE", vdi, "attach"]
    x.VDI.set_sharable(vdi, True)
    x.VM.start(b, False, False)
    assert x.VM.get_power_state(b) == "Running"


def test_cd_insert_eject(x):
    vm = x.VM.create(vm_record())
    cd = x.VBD.create(vbd_record(vm, NULL, userdevice="3", mode="RO", vbd_type="CD",
                                 empty=True))
    assert failure(x.VBD.eject, cd) == ["VBD_IS_EMPTY", cd]
    iso = x.VDI.create(vdi_record(default_sr(x), 100 * 1024 * 1024, read_only=True))
    x.VBD.insert(cd, iso)
    assert x.VBD.get_empty(cd) is False and x.VBD.get_VDI(cd) == iso
    assert failure(x.VBD.insert, cd, iso) == ["VBD_NOT_EMPTY", cd]
    assert "eject" in x.VBD.get_allowed_operations(cd)
    x.VBD.eject(cd)
    assert x.VBD.get_empty(cd) is True and x.VBD.get_VDI(cd) == NULL
    assert x.VDI.get_VBDs(iso) == []
    vdi, disk = make_disk(x, vm, userdevice="0")
    assert failure(x.VBD.insert, disk, iso) == ["VBD_NOT_REMOVABLE_MEDIA", disk]
    assert failure(x.VBD.eject, disk) == ["VBD_NOT_REMOVABLE_MEDIA", disk]
