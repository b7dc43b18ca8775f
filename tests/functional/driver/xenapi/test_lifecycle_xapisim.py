"""The XenAPI driver's pause, suspend, rescue and resize (RPC 1.2) against a
real simulator over HTTP, checked through a separate SDK session: what each
leaves in dom0 (VMs, VBDs, VDIs, power states, memory, vCPUs, disk sizes),
that undoing each leaves nothing behind, and that a revert gives back the
root disk's old contents (written and read through the simulator's HTTP
import and export handlers)."""

from __future__ import annotations

import urllib.request

import pytest
from xenapi_fixtures import make_instance, no_tasks_left, op_for

from compute_agent import exceptions
from compute_agent.driver import power_state
from compute_agent.driver.xenapi import ownership

GiB = 1024**3
MiB = 1024**2
PATTERN = bytes(range(256)) * 256  # 64 KiB


def counts(xapi) -> dict[str, int]:
    x = xapi.xenapi
    return {"VM": len(x.VM.get_all()), "VDI": len(x.VDI.get_all()),
            "VBD": len(x.VBD.get_all()), "VIF": len(x.VIF.get_all())}


def marked_vms(xapi, uuid: str) -> dict[str, dict]:
    return {r: v for r, v in xapi.xenapi.VM.get_all_records().items()
            if ownership.instance_of(v) == uuid}


def root_of(xapi, vm_ref: str) -> tuple[str, dict]:
    for vbd in xapi.xenapi.VM.get_VBDs(vm_ref):
        rec = xapi.xenapi.VBD.get_record(vbd)
        if rec["userdevice"] == "0":
            return rec["VDI"], xapi.xenapi.VDI.get_record(rec["VDI"])
    raise AssertionError("no root disk")


def transfer(sim, xapi, method: str, path: str, vdi: str, body: bytes | None = None) -> bytes:
    url = f"{sim.url}{path}?session_id={xapi._session}&vdi={vdi}&format=raw"
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Length", str(len(body)))
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - the test's simulator
        # The head of the disk only: the export streams all of its size.
        return resp.read(len(PATTERN)) if method == "GET" else resp.read()


def test_pause_suspend_and_back(driver, xapi):
    inst = make_instance(root_gb=1)
    driver.spawn(op_for(inst, "spawn"), inst)
    for name, power in (("pause", power_state.PAUSED), ("unpause", power_state.RUNNING),
                        ("suspend", power_state.SUSPENDED), ("resume", power_state.RUNNING)):
        getattr(driver, name)(op_for(inst, name), inst)
        assert driver.get_info(inst).power_state == power, name
        # Asked again in the state it asked for: nothing to do, no error.
        getattr(driver, name)(op_for(inst, name), inst)
    driver.pause(op_for(inst, "pause"), inst)
    with pytest.raises(exceptions.HypervisorError) as err:
        driver.suspend(op_for(inst, "suspend"), inst)
    assert err.value.code == "VM_BAD_POWER_STATE"
    driver.destroy(op_for(inst, "destroy"), inst)
    no_tasks_left(xapi)


def test_rescue_keeps_the_vm_and_unrescue_removes_only_what_it_made(driver, xapi):
    inst = make_instance(root_gb=2)
    driver.spawn(op_for(inst, "spawn"), inst)
    before = counts(xapi)
    (own_ref, own), = marked_vms(xapi, inst["uuid"]).items()
    root, _ = root_of(xapi, own_ref)

    driver.rescue(op_for(inst, "rescue"), inst, None)
    vms = marked_vms(xapi, inst["uuid"])
    assert set(vms) - {own_ref}, "no rescue VM"
    rescue_ref = next(r for r in vms if r != own_ref)
    rescue = vms[rescue_ref]
    assert rescue["name_label"] == f"{inst['name']}-rescue"
    assert rescue["other_config"][ownership.RESCUE_KEY] == "true"
    assert rescue["other_config"][ownership.HOST_KEY] == driver.host
    assert rescue["power_state"] == "Running"
    assert vms[own_ref]["power_state"] == "Halted"
    disks = {xapi.xenapi.VBD.get_userdevice(b): xapi.xenapi.VBD.get_VDI(b)
             for b in rescue["VBDs"]}
    assert disks["1"] == root
    assert xapi.xenapi.VDI.get_other_config(disks["0"])[ownership.DISK_KEY] == "rescue"
    # The instance's own VM is found, not the rescue VM; a rescued
    # instance reports the rescue VM's power state.
    assert driver.get_info(inst).power_state == power_state.SHUTDOWN
    assert driver.get_info({**inst, "vm_state": "rescued"}).power_state == power_state.RUNNING
    assert driver.get_info(inst).vm_ref == own_ref

    driver.unrescue(op_for(inst, "unrescue"), inst)
    assert counts(xapi) == before
    assert list(marked_vms(xapi, inst["uuid"])) == [own_ref]
    assert xapi.xenapi.VM.get_power_state(own_ref) == "Running"
    assert root_of(xapi, own_ref)[0] == root
    # Terminating a rescued instance removes the rescue VM too.
    driver.rescue(op_for(inst, "rescue"), inst, None)
    driver.destroy(op_for(inst, "destroy"), inst)
    assert marked_vms(xapi, inst["uuid"]) == {}
    assert [v for v in xapi.xenapi.VDI.get_all_records().values()
            if ownership.instance_of(v) == inst["uuid"]] == []
    no_tasks_left(xapi)


def test_resize_grows_and_revert_gives_back_the_old_disk(driver, xapi, sim):
    inst = make_instance(vcpus=1, memory_mb=256, root_gb=1)
    driver.spawn(op_for(inst, "spawn"), inst)
    (ref, _), = marked_vms(xapi, inst["uuid"]).items()
    root, _ = root_of(xapi, ref)
    transfer(sim, xapi, "PUT", "/import_raw_vdi", root, PATTERN)
    before = counts(xapi)

    new = {"vcpus": 2, "memory_mb": 512, "root_gb": 3}
    driver.resize(op_for(inst, "resize"), inst, new)
    vm = xapi.xenapi.VM.get_record(ref)
    assert (vm["power_state"], int(vm["VCPUs_max"]), int(vm["memory_static_max"])) == (
        "Running", 2, 512 * MiB)
    grown, grown_rec = root_of(xapi, ref)
    assert int(grown_rec["virtual_size"]) == 3 * GiB
    backups = [r for r, v in xapi.xenapi.VDI.get_all_records().items()
               if v["other_config"].get(ownership.DISK_KEY) == "resize-backup"
               and ownership.instance_of(v) == inst["uuid"]]
    assert len(backups) == 1 and int(xapi.xenapi.VDI.get_virtual_size(backups[0])) == GiB
    transfer(sim, xapi, "PUT", "/import_raw_vdi", grown, b"\xff" * len(PATTERN))

    restored = driver.revert_resize(op_for(inst, "revert_resize"), inst)
    assert restored == {"flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1}}
    vm = xapi.xenapi.VM.get_record(ref)
    assert (vm["power_state"], int(vm["VCPUs_max"]), int(vm["memory_static_max"])) == (
        "Running", 1, 256 * MiB)
    now, now_rec = root_of(xapi, ref)
    assert int(now_rec["virtual_size"]) == GiB
    assert now_rec["other_config"][ownership.DISK_KEY] == "root"
    assert "compute_agent_resize_flavor" not in vm["other_config"]
    assert transfer(sim, xapi, "GET", "/export_raw_vdi", now) == PATTERN
    assert counts(xapi) == before
    # Nothing left to revert: a second revert changes nothing.
    assert driver.revert_resize(op_for(inst, "revert_resize"), inst) == restored
    assert counts(xapi) == before


def test_resize_confirm_and_refusals(driver, xapi):
    inst = make_instance(vcpus=1, memory_mb=256, root_gb=2)
    driver.spawn(op_for(inst, "spawn"), inst)
    driver.power_off(op_for(inst, "power_off"), inst, clean=False)
    before = counts(xapi)
    with pytest.raises(exceptions.HypervisorError) as err:
        driver.resize(op_for(inst, "resize"), inst, {"vcpus": 1, "memory_mb": 256,
                                                     "root_gb": 1})
    assert err.value.code == "VDI_TOO_SMALL"
    assert counts(xapi) == before
    driver.resize(op_for(inst, "resize"), inst, {"vcpus": 4, "memory_mb": 1024, "root_gb": 2})
    (ref, vm), = marked_vms(xapi, inst["uuid"]).items()
    assert vm["power_state"] == "Halted" and int(vm["VCPUs_at_startup"]) == 4
    assert counts(xapi)["VDI"] == before["VDI"] + 1
    driver.confirm_resize(op_for(inst, "confirm_resize"), inst)
    assert counts(xapi) == before
    assert "compute_agent_resize_flavor" not in xapi.xenapi.VM.get_other_config(ref)
    driver.destroy(op_for(inst, "destroy"), inst)
    no_tasks_left(xapi)
