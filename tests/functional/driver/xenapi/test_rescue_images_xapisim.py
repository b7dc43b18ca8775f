"""Rescue from an image with the XenAPI driver: the real Glance as the
image service, the simulator over HTTP as dom0. The rescue disk comes
through the build's image path (stream handler, checksum, per-SR cache):
its bytes are read back with GET /export_raw_vdi; unrescue removes the
rescue VM and the disk made from the image, never the cache base nor the
root disk it borrowed; a failed rescue leaves dom0 as it was."""

from __future__ import annotations

import uuid as uuidlib

import pytest
from xenapi_fixtures import make_instance, no_tasks_left, op_for

from compute_agent import exceptions
from compute_agent.driver.xenapi import image_cache, ownership
from tests.functional.driver.xenapi.test_images_glance_xapisim import (
    MiB,
    cache_vdis,
    disk_head,
    image_bytes,
    images_driver,  # noqa: F401  (a fixture)
    vdis,
)
from tests.functional.glance_fixture import glance  # noqa: F401  (a fixture)


def vm_of(xapi, uuid: str, rescue: bool) -> tuple[str, dict]:
    (found,) = [(r, rec) for r, rec in xapi.xenapi.VM.get_all_records().items()
                if ownership.instance_of(rec) == uuid and ownership.is_rescue(rec) == rescue]
    return found


def disks_of(xapi, vm: str) -> dict[str, str]:
    x = xapi.xenapi
    return {x.VBD.get_userdevice(b): x.VBD.get_VDI(b) for b in x.VM.get_VBDs(vm)}


def spawn_blank(driver) -> dict:
    inst = make_instance(root_gb=1)
    driver.spawn(op_for(inst, "spawn"), inst)
    return inst


@pytest.mark.parametrize("cache", [True, False], ids=["cache", "nocache"])
def test_rescue_disk_holds_the_image_and_unrescue_removes_only_it(
        sim, xapi, glance, images_driver, cache):  # noqa: F811
    data = image_bytes(2 * MiB)
    image = glance.create_image(data)
    driver = images_driver(cache=cache)
    inst = spawn_blank(driver)
    own_ref, _ = vm_of(xapi, inst["uuid"], rescue=False)
    root = disks_of(xapi, own_ref)["0"]
    before = set(vdis(xapi))

    driver.rescue(op_for(inst, "rescue"), inst, {"id": image["id"], "url": None,
                                                  "disk_format": None})
    rescue_ref, rescue = vm_of(xapi, inst["uuid"], rescue=True)
    assert rescue["power_state"] == "Running"
    assert xapi.xenapi.VM.get_power_state(own_ref) == "Halted"
    disks = disks_of(xapi, rescue_ref)
    assert disks["1"] == root
    # exactly the image: its bytes, its size (nothing grown)
    assert disk_head(sim, xapi, disks["0"], len(data) + MiB) == data
    assert int(xapi.xenapi.VDI.get_virtual_size(disks["0"])) == len(data)
    oc = xapi.xenapi.VDI.get_other_config(disks["0"])
    assert oc[ownership.DISK_KEY] == ownership.RESCUE_DISK
    assert ownership.instance_of({"other_config": oc}) == inst["uuid"]
    bases = set(cache_vdis(xapi)) - {disks["0"]}
    assert len(bases) == (1 if cache else 0)
    if cache:
        (base,) = bases
        assert oc[image_cache.BASE] == xapi.xenapi.VDI.get_uuid(base)

    driver.unrescue(op_for(inst, "unrescue"), inst)
    assert [r for r, _ in [vm_of(xapi, inst["uuid"], rescue=False)]] == [own_ref]
    assert not [r for r, rec in xapi.xenapi.VM.get_all_records().items()
                if ownership.is_rescue(rec)]
    assert xapi.xenapi.VM.get_power_state(own_ref) == "Running"
    assert set(vdis(xapi)) == before | bases  # the cache base stays cached
    assert disks_of(xapi, own_ref)["0"] == root
    # a second rescue of a cached image is a clone: still exactly the image
    driver.rescue(op_for(inst, "rescue"), inst, {"id": image["id"]})
    assert disk_head(sim, xapi, disks_of(xapi, vm_of(xapi, inst["uuid"], True)[0])["0"],
                     len(data)) == data
    assert glance.downloads(image["id"]) == (1 if cache else 2)
    driver.destroy(op_for(inst, "destroy"), inst)
    assert set(vdis(xapi)) == (before - {root}) | bases
    no_tasks_left(xapi)


def test_rescue_without_an_image_is_blank(xapi, images_driver):  # noqa: F811
    driver = images_driver()
    inst = spawn_blank(driver)
    driver.rescue(op_for(inst, "rescue"), inst, {"id": None, "url": None,
                                                  "disk_format": None})
    disk = disks_of(xapi, vm_of(xapi, inst["uuid"], rescue=True)[0])["0"]
    assert int(xapi.xenapi.VDI.get_virtual_size(disk)) == 1024**3
    assert cache_vdis(xapi) == {}


def _rescue_fails_clean(xapi, driver, inst: dict, image: dict, error: type):
    own_ref, _ = vm_of(xapi, inst["uuid"], rescue=False)
    before_vdis, before_vms = set(vdis(xapi)), set(xapi.xenapi.VM.get_all())
    with pytest.raises(error) as e:
        driver.rescue(op_for(inst, "rescue"), inst, image)
    left = set(vdis(xapi)) - before_vdis - set(cache_vdis(xapi))
    assert left == set(), "a VDI was left behind"
    assert set(xapi.xenapi.VM.get_all()) == before_vms, "a VM was left behind"
    assert xapi.xenapi.VM.get_power_state(own_ref) == "Running"
    return e.value


def test_failed_rescues_leave_the_instance_as_it_was(xapi, glance, images_driver):  # noqa: F811
    driver = images_driver()
    inst = spawn_blank(driver)
    missing = str(uuidlib.uuid4())
    err = _rescue_fails_clean(xapi, driver, inst, {"id": missing}, exceptions.ImageNotFound)
    assert err.params == [missing]
    iso = glance.create_image(bytes(4096), disk_format="iso")
    err = _rescue_fails_clean(xapi, driver, inst, {"id": iso["id"]},
                              exceptions.ImageFormatUnsupported)
    assert err.params == [iso["id"], "iso"]
    # found, but its data is bad: the VM was halted and is started again
    bad = glance.create_image(image_bytes(MiB))
    glance.corrupt(bad["id"])
    _rescue_fails_clean(xapi, driver, inst, {"id": bad["id"]},
                        exceptions.ImageChecksumMismatch)
    assert cache_vdis(xapi) == {}
    no_tasks_left(xapi)
