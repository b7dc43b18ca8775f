"""Cross-pool migration between two simulators over real HTTP, with the
official SDK: host.migrate_receive on the destination pool, then
VM.assert_can_migrate / VM.migrate_send on the source pool. The VM's
records and its disk's data move; refusals leave everything in place."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator

import pytest

from tests.functional.harness import running_simulator, sdk_session
from tests.functional.xapisim.simvm import (
    MiB,
    default_sr,
    failure,
    make_disk,
    management_network,
    vif_record,
    vm_record,
    wait_task,
)
from xapisim.control_client import SimControl

DISK = 64 * MiB


@pytest.fixture
def pools() -> Iterator[tuple]:
    with running_simulator(task_duration=0.02) as src_sim, \
            running_simulator(task_duration=0.02) as dst_sim, \
            sdk_session(src_sim.url, "src") as src, sdk_session(dst_sim.url, "dst") as dst:
        yield src_sim, src, dst_sim, dst


def _running_vm(sim, session, data: bytes, memory: int = 512 * MiB) -> tuple[str, str]:
    x = session.xenapi
    vm = x.VM.create(vm_record("traveller", memory=memory))
    vdi, _ = make_disk(x, vm, size=DISK)
    x.VIF.create(vif_record(vm, management_network(x)))
    _put(sim, session, vdi, data)
    x.VM.start(vm, False, False)
    return vm, vdi


def _put(sim, session, vdi: str, data: bytes) -> None:
    url = f"{sim.url}/import_raw_vdi?session_id={session._session}&vdi={vdi}&format=raw"
    req = urllib.request.Request(url, data=data, method="PUT")
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


def _read(sim, session, vdi: str) -> bytes:
    url = f"{sim.url}/export_raw_vdi?session_id={session._session}&vdi={vdi}&format=raw"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read()


def _token_and_maps(x_src, x_dst, vm: str, vdi: str) -> tuple[dict, dict, dict]:
    host = x_dst.host.get_all()[0]
    token = x_dst.host.migrate_receive(host, management_network(x_dst), {})
    vif = x_src.VM.get_VIFs(vm)[0]
    return token, {vdi: default_sr(x_dst)}, {vif: management_network(x_dst)}


def test_live_migration_moves_vm_and_disk_data(pools):
    src_sim, s, dst_sim, d = pools
    xs, xd = s.xenapi, d.xenapi
    data = os.urandom(3 * MiB) + bytes(5 * MiB) + b"tail" * 1000
    vm, vdi = _running_vm(src_sim, s, data)
    uuid = xs.VM.get_uuid(vm)
    token, vdi_map, vif_map = _token_and_maps(xs, xd, vm, vdi)
    assert token["master"] == dst_sim.url
    xs.VM.assert_can_migrate(vm, token, True, vdi_map, vif_map, {}, {})
    task = xs.Async.VM.migrate_send(vm, token, True, vdi_map, vif_map, {}, {})
    assert wait_task(xs, task) == "success", xs.task.get_error_info(task)
    result = xs.task.get_result(task)
    # arrived running on the destination host, same uuid, same data
    arrived = xd.VM.get_by_uuid(uuid)
    assert arrived in result  # the task's result names the VM in the other pool
    assert xd.VM.get_power_state(arrived) == "Running"
    assert xd.VM.get_resident_on(arrived) == xd.host.get_all()[0]
    new_vdi = xd.VBD.get_VDI(xd.VM.get_VBDs(arrived)[0])
    assert xd.VDI.get_SR(new_vdi) == default_sr(xd)
    assert _read(dst_sim, d, new_vdi)[:len(data)] == data
    assert xd.VIF.get_network(xd.VM.get_VIFs(arrived)[0]) == management_network(xd)
    # gone from the source, disk included
    assert failure(xs.VM.get_by_uuid, uuid)[0] == "UUID_INVALID"
    assert failure(xs.VDI.get_record, vdi)[0] == "HANDLE_INVALID"


def test_refusals_are_xapis_errors_and_move_nothing(pools):
    src_sim, s, dst_sim, d = pools
    xs, xd = s.xenapi, d.xenapi
    vm, vdi = _running_vm(src_sim, s, b"x" * 4096)
    token, vdi_map, vif_map = _token_and_maps(xs, xd, vm, vdi)
    vif = xs.VM.get_VIFs(vm)[0]
    assert failure(xs.VM.assert_can_migrate, vm, token, True, {}, vif_map, {}, {}) == [
        "VDI_NOT_IN_MAP", vdi]
    assert failure(xs.VM.assert_can_migrate, vm, token, True, vdi_map, {}, {}, {}) == [
        "VIF_NOT_IN_MAP", vif]
    host = token["host"]
    xd.host.disable(host)
    assert failure(xs.VM.migrate_send, vm, token, True, vdi_map, vif_map, {}, {}) == [
        "HOST_DISABLED", host]
    xd.host.enable(host)
    # a destination without the memory
    big = xs.VM.create(vm_record("big", memory=40 * 1024 * MiB))
    xs.VM.start(big, False, False)
    hog = xd.VM.create(vm_record("hog", memory=40 * 1024 * MiB))
    xd.VM.start(hog, False, False)
    err = failure(xs.VM.assert_can_migrate, big, token, True, {}, {}, {}, {})
    assert err[0] == "HOST_NOT_ENOUGH_FREE_MEMORY"
    # an unreachable destination
    gone = dict(token, master="http://127.0.0.1:9")
    assert failure(xs.VM.assert_can_migrate, vm, gone, True, vdi_map, vif_map, {}, {}) == [
        "CANNOT_CONTACT_HOST", "127.0.0.1"]
    assert xs.VM.get_power_state(vm) == "Running"
    assert len(xd.VDI.get_all()) == 0 or all(
        xd.VDI.get_SR(v) != default_sr(xd) for v in xd.VDI.get_all())


def test_failure_on_arrival_cleans_the_remote_and_keeps_the_vm(pools):
    src_sim, s, dst_sim, d = pools
    xs, xd = s.xenapi, d.xenapi
    vm, vdi = _running_vm(src_sim, s, b"y" * 8192)
    token, vdi_map, vif_map = _token_and_maps(xs, xd, vm, vdi)
    vdis_before = set(xd.VDI.get_all())
    SimControl(dst_sim.url).fail("PUT /import_metadata", ["INTERNAL_ERROR", "disk full"])
    err = failure(xs.VM.migrate_send, vm, token, True, vdi_map, vif_map, {}, {})
    assert err == ["INTERNAL_ERROR", "disk full"]
    assert set(xd.VDI.get_all()) == vdis_before  # the copied disk was destroyed again
    assert xs.VM.get_power_state(vm) == "Running"
    assert xs.VM.get_current_operations(vm) == {}
    assert _read(src_sim, s, vdi)[:8192] == b"y" * 8192


def test_version_must_not_decrease(pools):
    src_sim, s, dst_sim, d = pools
    xs, xd = s.xenapi, d.xenapi
    vm, vdi = _running_vm(src_sim, s, b"z")
    token, vdi_map, vif_map = _token_and_maps(xs, xd, vm, vdi)
    with src_sim.store.lock:
        host = src_sim.store.refs("host")[0]
        sv = dict(src_sim.store.raw("host", host)["software_version"], product_version="99.0.0")
        src_sim.store.update("host", host, software_version=sv)
    assert failure(xs.VM.assert_can_migrate, vm, token, True, vdi_map, vif_map, {}, {}) == [
        "VM_HOST_INCOMPATIBLE_VERSION_MIGRATE", token["host"], vm]


def test_halted_vm_moves_with_its_disk_and_stays_halted(pools):
    src_sim, s, dst_sim, d = pools
    xs, xd = s.xenapi, d.xenapi
    vm = xs.VM.create(vm_record("cold"))
    vdi, _ = make_disk(xs, vm, size=DISK)
    _put(src_sim, s, vdi, b"cold data")
    uuid = xs.VM.get_uuid(vm)
    host = xd.host.get_all()[0]
    token = xd.host.migrate_receive(host, management_network(xd), {})
    xs.VM.migrate_send(vm, token, False, {vdi: default_sr(xd)}, {}, {}, {})
    arrived = xd.VM.get_by_uuid(uuid)
    assert xd.VM.get_power_state(arrived) == "Halted"
    assert xd.VM.get_affinity(arrived) == host
    new_vdi = xd.VBD.get_VDI(xd.VM.get_VBDs(arrived)[0])
    assert _read(dst_sim, d, new_vdi)[:9] == b"cold data"
