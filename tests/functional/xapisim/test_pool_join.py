"""pool.join and pool.eject between two simulator processes' worth of
simulators (each with its own database and listeners), over real HTTP
with the official SDK: xapi's refusals, the joined host in the pool's
database with its local disk's data, HOST_IS_SLAVE from the joined host,
and a fresh standalone host after the eject."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator

import pytest
import XenAPI

from tests.functional.harness import running_simulator, sdk_session
from tests.functional.xapisim.simvm import MiB, failure, make_disk, vm_record, wait_for

JOINER = "127.0.0.9"


@pytest.fixture
def pools() -> Iterator[tuple]:
    with running_simulator(hosts=2, task_duration=0.02) as pool:
        with running_simulator(listen=f"{JOINER}:{pool.port}", task_duration=0.02) as joiner:
            yield pool, joiner


def _put(sim, session, vdi: str, data: bytes) -> None:
    url = f"{sim.url}/import_raw_vdi?session_id={session._session}&vdi={vdi}&format=raw"
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method="PUT"),
                                timeout=30) as resp:
        resp.read()


def _read(sim, session, vdi: str, n: int) -> bytes:
    url = f"{sim.url}/export_raw_vdi?session_id={session._session}&vdi={vdi}&format=raw"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read(n)


def _slave_of(url: str) -> list[str]:
    session = XenAPI.Session(url)
    try:
        session.xenapi.login_with_password("root", "password", "2.0", "t")
    except XenAPI.Failure as e:
        return list(e.details)
    finally:
        session("close")()
    return []


def test_join_then_eject(pools):
    pool, joiner = pools
    with sdk_session(pool.url, "t") as p:
        x = p.xenapi
        nfs = x.SR.create(x.pool.get_master(x.pool.get_all()[0]), {"server": "nfs"},
                          str(10 * 1024 * MiB), "nfs", "", "nfs", "user", True, {})
    with sdk_session(joiner.url, "t") as j:
        x = j.xenapi
        host_uuid = x.host.get_uuid(x.host.get_all()[0])
        vm = x.VM.create(vm_record("kept-disk", memory=256 * MiB))
        vdi, _ = make_disk(x, vm, size=16 * MiB)
        vdi_uuid = x.VDI.get_uuid(vdi)
        _put(joiner, j, vdi, b"local data" * 100)
        refused = failure(x.pool.join, "127.0.0.1", "root", "wrong")
        assert refused[0] == "SESSION_AUTHENTICATION_FAILED" and "wrong" not in refused
        x.VM.start(vm, False, False)
        assert failure(x.pool.join, "127.0.0.1", "root", "password") == [
            "JOINING_HOST_CANNOT_HAVE_RUNNING_OR_SUSPENDED_VMS"]
        x.VM.hard_shutdown(vm)
        x.pool.join("127.0.0.1", "root", "password")
    wait_for(lambda: _slave_of(joiner.url) == ["HOST_IS_SLAVE", "127.0.0.1"])
    with sdk_session(pool.url, "t") as p:
        x = p.xenapi
        joined = x.host.get_by_uuid(host_uuid)
        # the pool's shared storage is plugged on the new member
        assert any(x.PBD.get_host(pbd) == joined and x.PBD.get_currently_attached(pbd)
                   for pbd in x.SR.get_PBDs(nfs))
        assert x.host.get_address(joined) == JOINER
        assert len(x.host.get_all()) == 3
        vdi = x.VDI.get_by_uuid(vdi_uuid)
        sr = x.VDI.get_SR(vdi)
        assert [x.PBD.get_host(pbd) for pbd in x.SR.get_PBDs(sr)] == [joined]
        assert _read(pool, p, vdi, 1000) == b"local data" * 100
        # the pool runs VMs on the joined host
        guest = x.VM.create(vm_record("on-joined", memory=256 * MiB))
        make_disk(x, guest, size=16 * MiB, sr=sr)
        x.VM.start_on(guest, joined, False, False)
        assert x.VM.get_resident_on(guest) == joined
        assert failure(x.pool.eject, joined) == ["HOST_IN_USE", joined, "VM", guest]
        assert failure(x.pool.eject, x.pool.get_master(x.pool.get_all()[0]))[0] == \
            "OPERATION_NOT_ALLOWED"
        x.VM.hard_shutdown(guest)
        x.pool.eject(joined)
        assert len(x.host.get_all()) == 2
        assert failure(x.VDI.get_by_uuid, vdi_uuid)[0] == "UUID_INVALID"
        assert x.VM.get_affinity(guest) == "OpaqueRef:NULL"
    deadline = time.monotonic() + 5
    while _slave_of(joiner.url) and time.monotonic() < deadline:
        time.sleep(0.05)
    with sdk_session(joiner.url, "t") as j:
        x = j.xenapi  # a freshly installed standalone host again
        assert len(x.host.get_all()) == 1
        assert x.host.get_address(x.host.get_all()[0]) == JOINER
        guests = [r for r in x.VM.get_all_records().values()
                  if not r["is_a_template"] and not r["is_control_domain"]]
        assert guests == []


def test_join_refusals(pools):
    pool, joiner = pools
    with sdk_session(joiner.url, "t") as j:
        x = j.xenapi
        assert failure(x.pool.join, "127.0.0.77", "root", "password") == [
            "JOINING_HOST_CONNECTION_FAILED"]
        shared = x.SR.create(x.host.get_all()[0], {}, str(10 * 1024 * MiB), "nfs", "", "nfs",
                             "user", True, {})
        assert failure(x.pool.join, "127.0.0.1", "root", "password") == [
            "JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS"]
        assert shared
    with sdk_session(pool.url, "t") as p:
        # a pool of two cannot join another pool
        assert failure(p.xenapi.pool.join, JOINER, "root", "password") == [
            "JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS"]
