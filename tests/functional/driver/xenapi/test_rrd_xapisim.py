"""The RRD poller against the simulator's real /rrd_updates over HTTP, in
XML and in JSON: figures per VM and for the host, VMs appearing and
disappearing between two polls, a dead session handled, and one request
per host and poll whatever the number of VMs (counted at the simulator)."""

from __future__ import annotations

import time

import pytest
import XenAPI

from compute_agent.driver.xenapi import rrd
from compute_agent.driver.xenapi.transport import TLSSettings
from tests.functional.harness import running_simulator
from tests.functional.xapisim.simvm import MiB, make_vm, management_network, vif_record
from xapisim.control_client import SimControl


def _poller(sim, session: XenAPI.Session, host_ref: str, fmt: str) -> rrd.RrdPoller:
    x = session.xenapi
    address = x.host.get_address(host_ref)
    handle = {"ref": session._session}

    def relogin() -> None:
        session.xenapi.login_with_password("root", "password", "2.0", "rrd-test")
        handle["ref"] = session._session

    return rrd.RrdPoller(f"http://{address}:{sim.port}", x.host.get_uuid(host_ref),
                         lambda: handle["ref"], relogin, TLSSettings(), fmt=fmt)


def _start(x, name: str) -> tuple[str, str]:
    vm = make_vm(x, name, memory=512 * MiB, vcpus=2)
    x.VIF.create(vif_record(vm, management_network(x), device="1"))
    x.VM.start(vm, False, False)
    return vm, x.VM.get_uuid(vm)


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_poll_gives_figures_and_follows_vms_coming_and_going(fmt, sim, xapi):
    x = xapi.xenapi
    ctl = SimControl(sim.url)
    ctl.clear()
    host = sim.master_ref
    a, a_uuid = _start(x, "a")
    _b, b_uuid = _start(x, "b")
    poller = _poller(sim, xapi, host, fmt)

    first = poller.poll()
    assert {a_uuid, b_uuid} <= set(first.vms)
    assert first.step == 5 and first.end > time.time() - 60
    fig = rrd.vm_figures(first.vms[a_uuid])
    assert fig["cpu"]["count"] == 2
    assert all(0.01 <= u <= 0.95 for u in fig["cpu"]["utilisation"])
    memory_actual = int(x.VM_metrics.get_memory_actual(x.VM.get_metrics(a)))
    assert fig["memory"]["total_bytes"] == memory_actual
    assert 0.05 * memory_actual <= fig["memory"]["free_bytes"] <= 0.6 * memory_actual
    assert [n["device"] for n in fig["nics"]] == ["0", "1"]
    assert [d["device"] for d in fig["disks"]] == ["xvda"]
    assert all(0 <= d["read_bytes_per_second"] <= 1e8 for d in fig["disks"])
    hfig = rrd.host_figures(first.host)
    assert 0.01 <= hfig["cpu"]["average"] <= 0.9 and hfig["cpu"]["count"] == 8
    metrics = x.host.get_metrics(host)
    assert hfig["memory"]["total_bytes"] == int(x.host_metrics.get_memory_total(metrics))

    # between two polls a goes away and c appears
    x.VM.hard_shutdown(a)
    _c, c_uuid = _start(x, "c")
    second = poller.poll()
    assert a_uuid not in second.vms
    assert {b_uuid, c_uuid} <= set(second.vms)
    assert rrd.vm_figures(second.vms[c_uuid])["cpu"]["count"] == 2
    # the second poll asked only for what is new: from the first poll's end
    assert second.end >= first.end
    assert poller.requests == 2
    assert ctl.http_requests("/rrd_updates") == 2


def test_xml_and_json_give_the_same_numbers(sim, xapi):
    x = xapi.xenapi
    _start(x, "same")
    for _ in range(5):  # the two must see the same newest row
        snaps = [_poller(sim, xapi, sim.master_ref, fmt).poll() for fmt in ("xml", "json")]
        if snaps[0].end == snaps[1].end:
            break
    assert snaps[0].end == snaps[1].end
    assert snaps[0].vms == snaps[1].vms
    assert snaps[0].host == snaps[1].host


def test_a_dead_session_is_replaced_once(sim, xapi):
    x = xapi.xenapi
    _start(x, "relogin")
    poller = _poller(sim, xapi, sim.master_ref, "xml")
    x.session.logout()
    snap = poller.poll()
    assert snap.vms and poller.requests == 2  # 401, then again with a new session


def test_one_request_per_host_and_poll_with_100_vms():
    with running_simulator(hosts=2, host_memory_mb=262144) as sim:
        session = XenAPI.Session(sim.url)
        session.xenapi.login_with_password("root", "password", "2.0", "rrd-count")
        x = session.xenapi
        hosts = sorted(x.host.get_all())
        uuids = set()
        for i in range(100):
            vm = make_vm(x, f"vm{i:03}", memory=256 * MiB, vcpus=1, disk=False)
            x.VM.start_on(vm, hosts[i % 2], False, False)
            uuids.add(x.VM.get_uuid(vm))
        ctl = SimControl(sim.url)
        ctl.clear()
        pollers = [_poller(sim, session, h, "json") for h in hosts]
        seen: set[str] = set()
        for _ in range(3):
            for p in pollers:
                snap = p.poll()
                assert len(snap.vms) == 51  # its 50 guests and its control domain
                seen |= set(snap.vms)
        assert uuids <= seen
        rows = SimControl(sim.url)._request("GET", "http_requests")["requests"]
        counts = {r["address"]: r["count"] for r in rows if r["path"] == "/rrd_updates"}
        assert sorted(counts.values()) == [3, 3]
        assert ctl.http_requests() == 6  # nothing but those
        session.xenapi.session.logout()
