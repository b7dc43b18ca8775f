"""VM lifecycle on xapisim through the official SDK over HTTP: power-state
transitions and their exact errors, allowed/current operations, domids,
resident_on, metrics and guest metrics, memory accounting per host,
last_shutdown_* keys, clone/copy/snapshot/provision, migration, Async
variants with cancel, events, and guest-initiated events."""

from __future__ import annotations

import time
import xmlrpc.client

import pytest
import XenAPI
from simvm import (
    GiB,
    MiB,
    default_sr,
    failure,
    make_disk,
    make_vm,
    management_network,
    vbd_record,
    vif_record,
    vm_record,
    wait_for,
    wait_task,
)

from xapisim import guest
from xapisim.errors import XenAPIError
from xapisim.server import Simulator

NULL = "OpaqueRef:NULL"


@pytest.fixture
def x(xapi):
    return xapi.xenapi


def host_of(x) -> str:
    return x.host.get_all()[0]


def free_memory(x, host: str) -> int:
    return int(x.host_metrics.get_memory_free(x.host.get_metrics(host)))


# -- create and destroy ---------------------------------------------------------------------------


def test_create_gives_halted_vm_with_metrics_and_allowed_operations(x):
    vm = x.VM.create(vm_record("new"))
    rec = x.VM.get_record(vm)
    assert rec["power_state"] == "Halted"
    assert rec["domid"] == "-1" and rec["resident_on"] == NULL
    assert rec["guest_metrics"] == NULL
    assert "mac_seed" in rec["other_config"]
    assert int(rec["memory_overhead"]) > 0
    assert int(rec["memory_overhead"]) == int(x.VM.compute_memory_overhead(vm))
    assert {"start", "start_on", "clone", "copy", "destroy", "snapshot",
            "make_into_template"} <= set(rec["allowed_operations"])
    assert not {"clean_shutdown", "hard_shutdown", "pause", "resume"} & set(
        rec["allowed_operations"])
    metrics = x.VM_metrics.get_record(rec["metrics"])
    assert metrics["memory_actual"] == "0"
    assert metrics["current_domain_type"] == "unspecified"


def test_create_requires_xapi_fields(x):
    rec = vm_record("incomplete")
    del rec["memory_static_max"]
    assert failure(x.VM.create, rec) == ["FIELD_TYPE_ERROR", "memory_static_max"]


def test_create_suspended_without_image_is_refused(x):
    err = failure(x.VM.create, vm_record("s", power_state="Suspended"))
    assert err[0] == "VM_BAD_POWER_STATE" and err[2:] == ["halted", "suspended"]


def test_destroy_removes_devices_and_metrics_but_keeps_vdis(x):
    vm = make_vm(x)
    rec = x.VM.get_record(vm)
    vbd = rec["VBDs"][0]
    vif = rec["VIFs"][0]
    vdi = x.VBD.get_VDI(vbd)
    x.VM.destroy(vm)
    assert failure(x.VM.get_record, vm) == ["HANDLE_INVALID", "VM", vm]
    assert failure(x.VBD.get_record, vbd) == ["HANDLE_INVALID", "VBD", vbd]
    assert failure(x.VIF.get_record, vif) == ["HANDLE_INVALID", "VIF", vif]
    assert failure(x.VM_metrics.get_record, rec["metrics"])[0] == "HANDLE_INVALID"
    assert x.VDI.get_VBDs(vdi) == []
    assert vdi in x.SR.get_VDIs(x.VDI.get_SR(vdi))


def test_destroy_running_vm_is_bad_power_state(x):
    vm = make_vm(x)
    x.VM.start(vm, False, False)
    assert failure(x.VM.destroy, vm) == ["VM_BAD_POWER_STATE", vm, "halted, suspended", "running"]


def test_control_domain_and_default_templates_are_protected(x):
    dom0 = x.host.get_control_domain(host_of(x))
    assert x.VM.get_domid(dom0) == "0"
    # xapi checks the power state before anything else
    assert failure(x.VM.destroy, dom0) == ["VM_BAD_POWER_STATE", dom0, "halted, suspended",
                                           "running"]
    assert failure(x.VM.suspend, dom0) == ["OPERATION_NOT_ALLOWED",
                                           "This operation is not allowed on a control domain"]
    tpl = x.VM.get_by_name_label("Debian Bookworm 12")[0]
    assert failure(x.VM.destroy, tpl) == ["VM_IS_TEMPLATE", tpl]
    assert failure(x.VM.start, tpl, False, False) == ["VM_IS_TEMPLATE", tpl]
    assert "destroy" not in x.VM.get_allowed_operations(tpl)


# -- start and the things that follow a domain ----------------------------------------------------


def test_start_runs_vm_on_host_with_domid_metrics_and_devices(x):
    host = host_of(x)
    vm = make_vm(x, vcpus=3)
    before = time.time()
    x.VM.start(vm, False, False)
    rec = x.VM.get_record(vm)
    assert rec["power_state"] == "Running"
    assert rec["resident_on"] == host and vm in x.host.get_resident_VMs(host)
    assert int(rec["domid"]) >= 1
    m = x.VM_metrics.get_record(rec["metrics"])
    assert m["memory_actual"] == str(1 * GiB)
    assert m["VCPUs_number"] == "3"
    assert m["current_domain_type"] == "pv"
    assert isinstance(m["start_time"], xmlrpc.client.DateTime)
    started = time.mktime(time.strptime(m["start_time"].value, "%Y%m%dT%H:%M:%SZ")) - \
        time.timezone
    assert started >= int(before) - 1
    assert all(x.VBD.get_currently_attached(b) for b in rec["VBDs"])
    assert all(x.VIF.get_currently_attached(v) for v in rec["VIFs"])
    assert x.VBD.get_device(rec["VBDs"][0]) == "xvda"
    assert set(rec["allowed_operations"]) >= {"clean_shutdown", "hard_shutdown", "clean_reboot",
                                              "hard_reboot", "suspend", "pause", "pool_migrate",
                                              "snapshot"}
    assert "start" not in rec["allowed_operations"]
    assert rec["current_operations"] == {}


def test_domids_increase_per_host_and_change_on_reboot(x):
    a, b = make_vm(x, "a"), make_vm(x, "b")
    x.VM.start(a, False, False)
    x.VM.start(b, False, False)
    da, db = int(x.VM.get_domid(a)), int(x.VM.get_domid(b))
    assert db == da + 1
    x.VM.clean_reboot(a)
    assert int(x.VM.get_domid(a)) == db + 1
    x.VM.hard_reboot(b)
    assert int(x.VM.get_domid(b)) == db + 2
    x.VM.hard_shutdown(a)
    assert x.VM.get_domid(a) == "-1"


def test_guest_metrics_appear_after_start_and_go_on_shutdown(x):
    vm = make_vm(x)
    x.VM.start(vm, False, False)
    gm = wait_for(lambda: (g := x.VM.get_guest_metrics(vm)) != NULL and g)
    rec = x.VM_guest_metrics.get_record(gm)
    assert rec["os_version"]["distro"] and rec["os_version"]["name"]
    assert rec["PV_drivers_version"]["major"]
    assert rec["networks"]["0/ip"].count(".") == 3
    assert rec["live"] is True
    x.VM.clean_shutdown(vm)
    assert x.VM.get_guest_metrics(vm) == NULL
    assert failure(x.VM_guest_metrics.get_record, gm)[0] == "HANDLE_INVALID"


def test_power_state_errors_are_exact(x):
    vm = make_vm(x)
    assert failure(x.VM.clean_shutdown, vm) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert failure(x.VM.hard_shutdown, vm) == [
        "VM_BAD_POWER_STATE", vm, "paused, suspended, running", "halted"]
    assert failure(x.VM.clean_reboot, vm) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert failure(x.VM.hard_reboot, vm) == ["VM_BAD_POWER_STATE", vm, "paused, running",
                                             "halted"]
    assert failure(x.VM.suspend, vm) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert failure(x.VM.resume, vm, False, False) == ["VM_BAD_POWER_STATE", vm, "suspended",
                                                      "halted"]
    assert failure(x.VM.unpause, vm) == ["VM_BAD_POWER_STATE", vm, "paused", "halted"]
    x.VM.start(vm, False, False)
    assert failure(x.VM.start, vm, False, False) == ["VM_BAD_POWER_STATE", vm, "halted",
                                                     "running"]
    assert failure(x.VM.unpause, vm) == ["VM_BAD_POWER_STATE", vm, "paused", "running"]


def test_bad_handles_and_parameter_counts(xapi, x):
    assert failure(x.VM.start, "OpaqueRef:nope", False, False) == [
        "HANDLE_INVALID", "VM", "OpaqueRef:nope"]
    vm = make_vm(x)
    assert failure(x.VM.start, vm) == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.start", "4", "2"]
    assert failure(x.VM.start_on, vm, "OpaqueRef:h", False, False) == [
        "HANDLE_INVALID", "host", "OpaqueRef:h"]


def test_start_validates_vcpus_and_memory(x):
    vm = x.VM.create(vm_record("novcpu", vcpus=0))
    assert failure(x.VM.start, vm, False, False) == ["INVALID_VALUE", "VCPUs_max", "0"]
    bad = vm_record("badmem", memory=GiB, memory_dynamic_min=str(2 * GiB))
    vm2 = x.VM.create(bad)
    err = failure(x.VM.start, vm2, False, False)
    assert err[0] == "MEMORY_CONSTRAINT_VIOLATION" and len(err) == 2
    many = x.VM.create(vm_record("wide", vcpus=64))
    assert failure(x.VM.start, many, False, False)[0] == "NO_HOSTS_AVAILABLE"
    assert failure(x.VM.start_on, many, host_of(x), False, False) == [
        "HOST_NOT_ENOUGH_PCPUS", "64", "8"]


def test_start_paused_then_unpause(x):
    vm = make_vm(x)
    x.VM.start(vm, True, False)
    assert x.VM.get_power_state(vm) == "Paused"
    assert set(x.VM.get_allowed_operations(vm)) >= {"unpause", "hard_shutdown", "hard_reboot"}
    assert "clean_shutdown" not in x.VM.get_allowed_operations(vm)
    x.VM.unpause(vm)
    assert x.VM.get_power_state(vm) == "Running"
    x.VM.pause(vm)
    assert x.VM.get_power_state(vm) == "Paused"
    assert x.VM_metrics.get_state(x.VM.get_metrics(vm)) == ["paused"]
    x.VM.hard_shutdown(vm)
    assert x.VM.get_power_state(vm) == "Halted"


# -- shutdown facts -------------------------------------------------------------------------------


def _shutdown_keys(x, vm: str) -> dict[str, str]:
    return {k: v for k, v in x.VM.get_other_config(vm).items() if k.startswith("last_shutdown")}


def test_last_shutdown_keys_after_api_shutdown_and_reboot(x):
    vm = make_vm(x)
    x.VM.start(vm, False, False)
    x.VM.clean_reboot(vm)
    keys = _shutdown_keys(x, vm)
    assert keys["last_shutdown_reason"] == "rebooted"
    assert keys["last_shutdown_initiator"] == "external"
    assert keys["last_shutdown_action"] == "Restart"
    assert len(keys["last_shutdown_time"]) == len("20260101T00:00:00Z")
    x.VM.clean_shutdown(vm)
    keys = _shutdown_keys(x, vm)
    assert keys["last_shutdown_reason"] == "halted"
    assert keys["last_shutdown_initiator"] == "external"
    assert keys["last_shutdown_action"] == "Destroy"
    assert set(keys) == {"last_shutdown_reason", "last_shutdown_initiator",
                         "last_shutdown_action", "last_shutdown_time"}


def test_shutdown_falls_back_to_hard_for_paused_vm(x):
    vm = make_vm(x)
    x.VM.start(vm, True, False)
    x.VM.shutdown(vm)
    assert x.VM.get_power_state(vm) == "Halted"
    assert failure(x.VM.shutdown, vm) == ["VM_BAD_POWER_STATE", vm,
                                          "paused, suspended, running", "halted"]


def test_halt_detaches_devices_and_clears_residence(x):
    host = host_of(x)
    vm = make_vm(x)
    x.VM.start(vm, False, False)
    x.VM.hard_shutdown(vm)
    rec = x.VM.get_record(vm)
    assert rec["resident_on"] == NULL and vm not in x.host.get_resident_VMs(host)
    assert not any(x.VBD.get_currently_attached(b) for b in rec["VBDs"])
    assert not any(x.VIF.get_currently_attached(v) for v in rec["VIFs"])
    assert x.VM_metrics.get_memory_actual(rec["metrics"]) == "0"
    assert "start" in rec["allowed_operations"]


# -- memory accounting ----------------------------------------------------------------------------


def test_memory_free_follows_vms_starting_and_stopping(x):
    host = host_of(x)
    base = free_memory(x, host)
    vm = make_vm(x, memory=2 * GiB)
    x.VM.start(vm, False, False)
    overhead = int(x.VM.get_memory_overhead(vm))
    assert overhead == int(x.VM.compute_memory_overhead(vm))
    assert free_memory(x, host) == base - 2 * GiB - overhead
    assert int(x.host.compute_free_memory(host)) == free_memory(x, host)
    x.VM.suspend(vm)
    assert free_memory(x, host) == base
    x.VM.resume(vm, False, False)
    assert free_memory(x, host) == base - 2 * GiB - overhead
    x.VM.hard_shutdown(vm)
    assert free_memory(x, host) == base
    total = int(x.host_metrics.get_memory_total(x.host.get_metrics(host)))
    dom0 = x.host.get_control_domain(host)
    dom0_mem = int(x.VM_metrics.get_memory_actual(x.VM.get_metrics(dom0)))
    assert base == total - int(x.host.get_memory_overhead(host)) - dom0_mem


def test_host_not_enough_free_memory(x):
    host = host_of(x)
    big = make_vm(x, "big", memory=50 * GiB)
    x.VM.start(big, False, False)
    other = make_vm(x, "other", memory=12 * GiB)
    available = int(x.host.compute_free_memory(host))
    needed = 12 * GiB + int(x.VM.compute_memory_overhead(other))
    for call in (lambda: x.VM.start(other, False, False),
                 lambda: x.VM.start_on(other, host, False, False)):
        assert failure(call) == ["HOST_NOT_ENOUGH_FREE_MEMORY", str(needed), str(available)]
    assert x.VM.get_power_state(other) == "Halted"
    x.VM.hard_shutdown(big)
    x.VM.start(other, False, False)
    assert x.VM.get_power_state(other) == "Running"


# -- storage and network requirements -------------------------------------------------------------


def test_vm_requires_sr_plugged(x):
    host = host_of(x)
    sr = default_sr(x)
    vm = make_vm(x)
    pbd = x.SR.get_PBDs(sr)[0]
    x.PBD.unplug(pbd)
    assert failure(x.VM.start_on, vm, host, False, False) == ["VM_REQUIRES_SR", vm, sr]
    # VM.start looks for any host that can see the SR, and finds none
    assert failure(x.VM.start, vm, False, False) == ["NO_HOSTS_AVAILABLE"]
    x.PBD.plug(pbd)
    x.VM.start_on(vm, host, False, False)
    assert x.VM.get_resident_on(vm) == host


def test_disabled_host_refuses_new_vms(x):
    host = host_of(x)
    vm = make_vm(x)
    x.host.disable(host)
    assert failure(x.VM.start_on, vm, host, False, False) == ["HOST_DISABLED", host]
    assert failure(x.VM.start, vm, False, False) == ["NO_HOSTS_AVAILABLE"]
    x.host.enable(host)
    x.VM.start(vm, False, False)


# -- Async, cancel, concurrency -------------------------------------------------------------------


def test_async_start_succeeds_with_empty_result(x):
    vm = make_vm(x)
    task = x.Async.VM.start(vm, False, False)
    assert wait_task(x, task) == "success"
    assert x.task.get_result(task) == ""
    assert x.task.get_progress(task) == 1.0
    assert x.VM.get_power_state(vm) == "Running"


def test_async_clone_returns_new_vm_ref(x):
    vm = make_vm(x)
    task = x.Async.VM.clone(vm, "copy-of")
    assert wait_task(x, task) == "success"
    result = x.task.get_result(task)
    new = result.removeprefix("<value>").removesuffix("</value>")
    assert x.VM.get_name_label(new) == "copy-of"


def test_cancelled_async_start_leaves_vm_halted(sim: Simulator, x):
    vm = make_vm(x)
    sim.faults.set_duration("VM.start", 2.0)
    task = x.Async.VM.start(vm, False, False)
    wait_for(lambda: x.VM.get_current_operations(vm))
    assert x.VM.get_current_operations(vm) == {task: "start"}
    assert "start" not in x.VM.get_allowed_operations(vm)
    x.task.cancel(task)
    assert wait_task(x, task) == "cancelled"
    assert x.task.get_error_info(task) == ["TASK_CANCELLED", task]
    assert x.VM.get_power_state(vm) == "Halted"
    assert x.VM.get_current_operations(vm) == {}
    assert "start" in x.VM.get_allowed_operations(vm)


def test_other_operation_in_progress_and_hard_shutdown_cancels_clean(sim: Simulator, x):
    vm = make_vm(x)
    x.VM.start(vm, False, False)
    sim.faults.set_duration("VM.clean_shutdown", 3.0)
    task = x.Async.VM.clean_shutdown(vm)
    wait_for(lambda: x.VM.get_current_operations(vm))
    assert failure(x.VM.clean_reboot, vm) == [
        "OTHER_OPERATION_IN_PROGRESS", "VM", vm, "clean_shutdown", task]
    assert "hard_shutdown" in x.VM.get_allowed_operations(vm)
    assert "clean_reboot" not in x.VM.get_allowed_operations(vm)
    started = time.monotonic()
    x.VM.hard_shutdown(vm)
    assert time.monotonic() - started < 2.5
    assert x.VM.get_power_state(vm) == "Halted"
    assert wait_task(x, task) == "cancelled"
    assert x.task.get_error_info(task) == ["TASK_CANCELLED", task]


def test_lifecycle_seen_through_event_from(x):
    vm = make_vm(x)
    token = getattr(x.event, "from")(["vm/" + vm], "", 0.0)["token"]
    seen: list[tuple[str, dict]] = []

    def collect():
        nonlocal token
        ev = getattr(x.event, "from")(["vm/" + vm], token, 1.0)
        token = ev["token"]
        for e in ev["events"]:
            seen.append((e["operation"], e["snapshot"]))

    task = x.Async.VM.start(vm, False, False)
    while x.task.get_status(task) == "pending" or not seen or \
            seen[-1][1]["power_state"] != "Running":
        collect()
    x.VM.clean_shutdown(vm)
    while seen[-1][1]["power_state"] != "Halted":
        collect()
    states = [s["power_state"] for _, s in seen]
    last_halted = len(states) - 1 - states[::-1].index("Halted")
    assert states.index("Running") < last_halted
    assert any(s["current_operations"] == {task: "start"} for _, s in seen)
    assert all(op == "mod" for op, _ in seen)
    assert seen[-1][1]["other_config"]["last_shutdown_reason"] == "halted"


# -- suspend / resume -----------------------------------------------------------------------------


def test_suspend_and_resume(x):
    host = host_of(x)
    vm = make_vm(x)
    sr = default_sr(x)
    x.VM.start(vm, False, False)
    domid = int(x.VM.get_domid(vm))
    util = int(x.SR.get_physical_utilisation(sr))
    x.VM.suspend(vm)
    rec = x.VM.get_record(vm)
    assert rec["power_state"] == "Suspended"
    assert rec["resident_on"] == NULL and rec["domid"] == "-1"
    suspend_vdi = rec["suspend_VDI"]
    assert x.VDI.get_type(suspend_vdi) == "suspend"
    assert int(x.SR.get_physical_utilisation(sr)) == util + int(x.VDI.get_virtual_size(
        suspend_vdi))
    assert x.VBD.get_currently_attached(rec["VBDs"][0])
    assert set(rec["allowed_operations"]) >= {"resume", "resume_on", "hard_shutdown", "destroy"}
    x.VM.resume_on(vm, host, False, False)
    assert x.VM.get_power_state(vm) == "Running"
    assert int(x.VM.get_domid(vm)) > domid
    assert failure(x.VDI.get_record, suspend_vdi)[0] == "HANDLE_INVALID"
    assert x.VM.get_suspend_VDI(vm) == NULL
    x.VM.suspend(vm)
    suspend_vdi = x.VM.get_suspend_VDI(vm)
    x.VM.hard_shutdown(vm)
    assert x.VM.get_power_state(vm) == "Halted"
    assert failure(x.VDI.get_record, suspend_vdi)[0] == "HANDLE_INVALID"


# -- clone / copy / snapshot / provision ----------------------------------------------------------


def test_clone_makes_new_disks_and_macs(x):
    vm = make_vm(x)
    src_vdi = x.VBD.get_VDI(x.VM.get_VBDs(vm)[0])
    src_mac = x.VIF.get_MAC(x.VM.get_VIFs(vm)[0])
    clone = x.VM.clone(vm, "clone")
    rec = x.VM.get_record(clone)
    assert rec["name_label"] == "clone" and rec["power_state"] == "Halted"
    assert rec["is_a_template"] is False and rec["parent"] == NULL
    new_vdi = x.VBD.get_VDI(rec["VBDs"][0])
    assert new_vdi != src_vdi
    assert x.VDI.get_virtual_size(new_vdi) == x.VDI.get_virtual_size(src_vdi)
    assert x.VIF.get_MAC(rec["VIFs"][0]) != src_mac
    assert rec["other_config"]["mac_seed"] != x.VM.get_other_config(vm)["mac_seed"]
    x.VM.start(vm, False, False)
    assert failure(x.VM.clone, vm, "c2") == ["VM_BAD_POWER_STATE", vm, "halted", "running"]


def test_copy_puts_disks_on_given_sr(x):
    vm = make_vm(x)
    host = host_of(x)
    sr2 = x.SR.create(host, {}, str(100 * GiB), "second", "", "ext", "user", False, {})
    copy = x.VM.copy(vm, "copy", sr2)
    vdi = x.VBD.get_VDI(x.VM.get_VBDs(copy)[0])
    assert x.VDI.get_SR(vdi) == sr2
    assert int(x.SR.get_virtual_allocation(sr2)) == GiB


def test_snapshot_of_running_vm(x):
    vm = make_vm(x)
    x.VM.start(vm, False, False)
    src_vdi = x.VBD.get_VDI(x.VM.get_VBDs(vm)[0])
    snap = x.VM.snapshot(vm, "snap", [])
    rec = x.VM.get_record(snap)
    assert rec["is_a_snapshot"] is True and rec["is_a_template"] is True
    assert rec["snapshot_of"] == vm and snap in x.VM.get_snapshots(vm)
    assert x.VM.get_parent(vm) == snap and vm in x.VM.get_children(snap)
    assert rec["power_state"] == "Halted"
    snap_vdi = x.VBD.get_VDI(rec["VBDs"][0])
    assert x.VDI.get_is_a_snapshot(snap_vdi) and x.VDI.get_snapshot_of(snap_vdi) == src_vdi
    assert failure(x.VM.start, snap, False, False)[0] == "OPERATION_NOT_ALLOWED"
    assert set(x.VM.get_allowed_operations(snap)) >= {"clone", "copy", "destroy", "revert"}
    x.VM.hard_shutdown(vm)
    x.VM.destroy(snap)
    assert x.VM.get_snapshots(vm) == []


def test_revert_to_snapshot(x):
    vm = make_vm(x)
    old_vdi = x.VBD.get_VDI(x.VM.get_VBDs(vm)[0])
    mac = x.VIF.get_MAC(x.VM.get_VIFs(vm)[0])
    snap = x.VM.snapshot(vm, "before", [])
    extra_vdi, _ = make_disk(x, vm, userdevice="1")
    x.VM.set_VCPUs_max(vm, "4")
    x.VM.start(vm, False, False)
    x.VM.revert(snap)
    rec = x.VM.get_record(vm)
    assert rec["power_state"] == "Halted" and rec["VCPUs_max"] == "2"
    assert rec["parent"] == snap
    assert len(rec["VBDs"]) == 1
    new_vdi = x.VBD.get_VDI(rec["VBDs"][0])
    assert new_vdi != old_vdi
    assert failure(x.VDI.get_record, old_vdi)[0] == "HANDLE_INVALID"
    assert x.VDI.get_VBDs(extra_vdi) == []  # not covered by the snapshot: kept, detached
    assert x.VIF.get_MAC(rec["VIFs"][0]) == mac
    assert failure(x.VM.revert, vm) == ["OPERATION_NOT_ALLOWED",
                                        "Only snapshots can be reverted"]
    x.VM.start(vm, False, False)


def test_provision_template_creates_disks(x):
    tpl = x.VM.get_by_name_label("Debian Bookworm 12")[0]
    sr_uuid = x.SR.get_uuid(default_sr(x))
    vm = x.VM.clone(tpl, "from template")
    assert x.VM.get_is_a_template(vm) is True
    assert x.VM.get_other_config(vm)["base_template_name"] == "Debian Bookworm 12"
    x.VM.remove_from_other_config(vm, "disks")  # the template's own plan, replaced
    x.VM.add_to_other_config(vm, "disks", (
        f'<provision><disk device="0" size="{4 * GiB}" sr="{sr_uuid}" bootable="true" '
        'type="system"/></provision>'))
    x.VM.provision(vm)
    rec = x.VM.get_record(vm)
    assert rec["is_a_template"] is False and "disks" not in rec["other_config"]
    vdi = x.VBD.get_VDI(rec["VBDs"][0])
    assert x.VDI.get_virtual_size(vdi) == str(4 * GiB)
    assert "start" in rec["allowed_operations"]
    assert failure(x.VM.provision, vm)[0] == "OPERATION_NOT_ALLOWED"


def test_make_into_template_changes_allowed_operations(x):
    vm = make_vm(x)
    x.VM.set_is_a_template(vm, True)
    assert "start" not in x.VM.get_allowed_operations(vm)
    assert failure(x.VM.start, vm, False, False) == ["VM_IS_TEMPLATE", vm]
    x.VM.set_is_a_template(vm, False)
    assert "start" in x.VM.get_allowed_operations(vm)


# -- migration ------------------------------------------------------------------------------------


@pytest.fixture
def pool2():
    sim = Simulator(hosts=2, task_duration=0.02).start()
    session = XenAPI.Session(sim.url)
    session.xenapi.login_with_password("root", "password", "2.0", "t")
    try:
        yield sim, session.xenapi
    finally:
        try:
            session.xenapi.session.logout()
        finally:
            sim.stop()


def _hosts(x) -> tuple[str, str]:
    master = x.pool.get_master(x.pool.get_all()[0])
    other = [h for h in x.host.get_all() if h != master][0]
    return master, other


def test_pool_migrate_moves_vm_and_memory(pool2):
    _, x = pool2
    h1, h2 = _hosts(x)
    shared = x.SR.create(h1, {}, str(200 * GiB), "shared", "", "nfs", "user", True, {})
    vm = x.VM.create(vm_record("m", memory=2 * GiB))
    make_disk(x, vm, sr=shared)
    x.VIF.create(vif_record(vm, management_network(x)))
    x.VM.start_on(vm, h1, False, False)
    free1, free2 = free_memory(x, h1), free_memory(x, h2)
    x.VM.pool_migrate(vm, h2, {"live": "true"})
    assert x.VM.get_resident_on(vm) == h2
    assert x.VM.get_power_state(vm) == "Running"
    used = 2 * GiB + int(x.VM.get_memory_overhead(vm))
    assert free_memory(x, h1) == free1 + used
    assert free_memory(x, h2) == free2 - used
    assert vm in x.host.get_resident_VMs(h2) and vm not in x.host.get_resident_VMs(h1)


def test_pool_migrate_needs_sr_on_destination(pool2):
    _, x = pool2
    h1, h2 = _hosts(x)
    vm = x.VM.create(vm_record("local"))
    local_sr = [x.PBD.get_SR(p) for p in x.host.get_PBDs(h1)][0]
    make_disk(x, vm, sr=local_sr)
    x.VM.start_on(vm, h1, False, False)
    assert failure(x.VM.pool_migrate, vm, h2, {}) == ["VM_REQUIRES_SR", vm, local_sr]


def test_migrate_send_with_storage(pool2):
    _, x = pool2
    h1, h2 = _hosts(x)
    sr1 = [x.PBD.get_SR(p) for p in x.host.get_PBDs(h1)][0]
    sr2 = [x.PBD.get_SR(p) for p in x.host.get_PBDs(h2)][0]
    vm = x.VM.create(vm_record("sxm"))
    vdi, vbd = make_disk(x, vm, sr=sr1)
    x.VM.start_on(vm, h1, False, False)
    dest = x.host.migrate_receive(h2, management_network(x), {})
    assert dest["host"] == h2 and set(dest) >= {"xenops", "SM", "master", "session_id"}
    assert failure(x.VM.assert_can_migrate, vm, dest, True, {}, {}, {}, {}) == [
        "VDI_NOT_IN_MAP", vdi]
    x.VM.assert_can_migrate(vm, dest, True, {vdi: sr2}, {}, {}, {})
    assert x.VM.migrate_send(vm, dest, True, {vdi: sr2}, {}, {}, {}) == vm
    assert x.VM.get_resident_on(vm) == h2
    new_vdi = x.VBD.get_VDI(vbd)
    assert x.VDI.get_SR(new_vdi) == sr2
    assert failure(x.VDI.get_record, vdi)[0] == "HANDLE_INVALID"
    assert x.SR.get_physical_utilisation(sr1) == "0"


# -- guest-initiated events -----------------------------------------------------------------------


@pytest.mark.parametrize("action,state", [("restart", "Running"), ("destroy", "Halted"),
                                          ("preserve", "Paused")])
def test_crash_applies_actions_after_crash(sim: Simulator, x, action, state):
    vm = make_vm(x, actions_after_crash=action)
    x.VM.start(vm, False, False)
    domid = int(x.VM.get_domid(vm))
    guest.crash(sim, vm)
    assert x.VM.get_power_state(vm) == state
    if state == "Running":
        assert int(x.VM.get_domid(vm)) > domid
    keys = _shutdown_keys(x, vm)
    assert keys["last_shutdown_reason"] == "crashed"
    assert keys["last_shutdown_initiator"] == "internal"
    assert keys["last_shutdown_action"] == {"restart": "Restart", "destroy": "Destroy",
                                            "preserve": "Preserve"}[action]


def test_guest_shutdown_and_reboot(sim: Simulator, x):
    vm = make_vm(x)
    x.VM.start(vm, False, False)
    domid = int(x.VM.get_domid(vm))
    assert guest.guest_reboot(sim, vm) == "Running"
    assert int(x.VM.get_domid(vm)) > domid
    assert _shutdown_keys(x, vm)["last_shutdown_reason"] == "rebooted"
    assert guest.guest_shutdown(sim, vm) == "Halted"
    keys = _shutdown_keys(x, vm)
    assert keys["last_shutdown_reason"] == "halted"
    assert keys["last_shutdown_initiator"] == "internal"
    assert keys["last_shutdown_action"] == "Destroy"
    with pytest.raises(XenAPIError) as err:
        guest.guest_shutdown(sim, vm)
    assert err.value.description == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    restart = make_vm(x, "r", actions_after_shutdown="restart")
    x.VM.start(restart, False, False)
    assert guest.guest_shutdown(sim, restart) == "Running"


def test_host_failure_halts_its_vms(pool2):
    sim, x = pool2
    h1, h2 = _hosts(x)
    vm = x.VM.create(vm_record("on member"))
    x.VM.start_on(vm, h2, False, False)
    other = x.VM.create(vm_record("on master"))
    x.VM.start_on(other, h1, False, False)
    assert guest.host_failed(sim, h2) == [vm]
    assert x.VM.get_power_state(vm) == "Halted" and x.VM.get_resident_on(vm) == NULL
    assert _shutdown_keys(x, vm)["last_shutdown_reason"] == "crashed"
    assert x.VM.get_power_state(other) == "Running"
    assert x.host_metrics.get_live(x.host.get_metrics(h2)) is False
    assert failure(x.VM.start_on, vm, h2, False, False) == ["HOST_OFFLINE", h2]
    x.VM.start(vm, False, False)
    assert x.VM.get_resident_on(vm) == h1
    x.VM.hard_shutdown(vm)
    guest.host_recovered(sim, h2)
    x.VM.start_on(vm, h2, False, False)
    assert x.VM.get_resident_on(vm) == h2


# -- host messages --------------------------------------------------------------------------------


def test_host_time_and_evacuation_view(x):
    host = host_of(x)
    now = x.host.get_servertime(host)
    assert isinstance(now, xmlrpc.client.DateTime)
    assert abs(time.mktime(time.strptime(now.value, "%Y%m%dT%H:%M:%SZ")) - time.timezone
               - time.time()) < 5
    vm = make_vm(x)
    x.VM.start(vm, False, False)
    assert x.host.get_vms_which_prevent_evacuation(host) == {vm: ["NO_HOSTS_AVAILABLE"]}
    assert int(x.host.compute_memory_overhead(host)) == int(x.host.get_memory_overhead(host))


def test_vm_helpers_answer(x):
    vm = make_vm(x)
    host = host_of(x)
    assert x.VM.get_possible_hosts(vm) == [host]
    x.VM.assert_can_boot_here(vm, host)
    assert "0" not in x.VM.get_allowed_VBD_devices(vm)
    assert x.VM.get_allowed_VIF_devices(vm)[0] == "1"
    assert failure(x.VM.assert_operation_valid, vm, "clean_shutdown") == [
        "VM_BAD_POWER_STATE", vm, "running", "halted"]
    cd = x.VBD.create(vbd_record(vm, NULL, userdevice="3", mode="RO", vbd_type="CD", empty=True))
    x.VM.start(vm, False, False)
    assert x.VBD.get_currently_attached(cd)
    x.VM.set_VCPUs_number_live(vm, "1")
    assert x.VM_metrics.get_VCPUs_number(x.VM.get_metrics(vm)) == "1"
    assert MiB  # the module's units are used elsewhere


def test_declared_setters(x):
    vm = make_vm(x)
    x.VM.set_actions_after_crash(vm, "destroy")
    assert x.VM.get_actions_after_crash(vm) == "destroy"
    x.VM.set_HVM_boot_policy(vm, "BIOS order")
    assert x.VM.get_domain_type(vm) == "hvm"
    assert failure(x.VM.set_actions_after_crash, vm, "coredump_and_restart")[0] == \
        "VALUE_NOT_SUPPORTED"
    x.VM.set_domain_type(vm, "pv")
    assert x.VM.get_HVM_boot_policy(vm) == ""
    x.VM.add_to_NVRAM(vm, "EFI-variables", "AAAA")
    assert x.VM.get_NVRAM(vm) == {"EFI-variables": "AAAA"}
    x.VM.start(vm, False, False)
    assert failure(x.VM.add_to_NVRAM, vm, "k", "v") == ["VM_BAD_POWER_STATE", vm, "halted",
                                                        "running"]
    vif = x.VM.get_VIFs(vm)[0]
    x.VIF.add_ipv4_allowed(vif, "10.0.0.1")
    assert x.VIF.get_ipv4_allowed(vif) == ["10.0.0.1"]
    x.VIF.remove_ipv4_allowed(vif, "10.0.0.1")
    assert x.VIF.get_ipv4_allowed(vif) == []
    vdi = x.VBD.get_VDI(x.VM.get_VBDs(vm)[0])
    x.VDI.set_on_boot(vdi, "reset")
    assert x.VDI.get_on_boot(vdi) == "reset"


def test_host_reboot_and_shutdown_need_disabled_empty_host(x):
    host = host_of(x)
    vm = make_vm(x)
    x.VM.start(vm, False, False)
    assert failure(x.host.reboot, host) == ["HOST_NOT_DISABLED"]
    x.host.disable(host)
    assert failure(x.host.reboot, host) == ["HOST_IN_USE", host, "VM", vm]
    x.VM.hard_shutdown(vm)
    x.host.reboot(host)
    assert x.host.get_enabled(host) is True
    assert x.host.get_management_interface(host) in x.host.get_PIFs(host)


def test_host_evacuate(pool2):
    _, x = pool2
    h1, h2 = _hosts(x)
    shared = x.SR.create(h1, {}, str(200 * GiB), "shared", "", "nfs", "user", True, {})
    vms = []
    for i in range(2):
        vm = x.VM.create(vm_record(f"e{i}"))
        make_disk(x, vm, sr=shared)
        x.VM.start_on(vm, h2, False, False)
        vms.append(vm)
    x.host.assert_can_evacuate(h2)
    x.host.disable(h2)
    x.host.evacuate(h2, NULL, "0")
    assert all(x.VM.get_resident_on(v) == h1 for v in vms)
    assert x.host.get_vms_which_prevent_evacuation(h2) == {}
    local = x.VM.create(vm_record("local"))
    local_sr = [x.PBD.get_SR(p) for p in x.host.get_PBDs(h1)][0]
    make_disk(x, local, sr=local_sr)
    x.VM.start_on(local, h1, False, False)
    assert failure(x.host.assert_can_evacuate, h1) == ["HOST_DISABLED", h2]
    x.host.enable(h2)
    assert failure(x.host.assert_can_evacuate, h1)[0] == "VM_REQUIRES_SR"
    assert x.host.get_vms_which_prevent_evacuation(h1)[local][0] == "VM_REQUIRES_SR"


def test_vm_requires_network_on_host(pool2):
    _, x = pool2
    h1, h2 = _hosts(x)
    net = x.network.create({"name_label": "only on member", "name_description": "",
                            "other_config": {}})
    x.PIF.create_VLAN("eth0", net, h2, "7")
    vm = x.VM.create(vm_record("net"))
    x.VIF.create(vif_record(vm, net))
    assert failure(x.VM.start_on, vm, h1, False, False) == ["VM_REQUIRES_NETWORK", vm, net]
    x.VM.start(vm, False, False)
    assert x.VM.get_resident_on(vm) == h2
    assert x.VM.get_possible_hosts(vm) == [h2]
