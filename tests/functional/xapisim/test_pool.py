"""Pools on xapisim over real HTTP: a coordinator and members on their own
loopback addresses, HOST_IS_SLAVE, pool.designate_new_master, a failed
coordinator (connection-level failure) and the members' emergency calls."""

from __future__ import annotations

import xmlrpc.client
from collections.abc import Iterator

import pytest
import XenAPI
from simvm import failure, wait_for

from xapisim.control_client import SimControl
from xapisim.server import Simulator


@pytest.fixture
def pool() -> Iterator[Simulator]:
    sim = Simulator(hosts=3, task_duration=0.01).start()
    try:
        yield sim
    finally:
        sim.stop()


def rpc(url: str) -> xmlrpc.client.ServerProxy:
    """Envelopes as they are: no SDK re-login on SESSION_INVALID."""
    return xmlrpc.client.ServerProxy(url)


def login(url: str) -> tuple[xmlrpc.client.ServerProxy, str]:
    proxy = rpc(url)
    result = proxy.session.login_with_password("root", "password", "2.0", "pool-tests")
    assert result["Status"] == "Success", result
    return proxy, result["Value"]


def value(result: dict):
    assert result["Status"] == "Success", result
    return result["Value"]


def members(sim: Simulator) -> list[str]:
    return [h for h in sim.store.refs("host") if h != sim.master_ref]


def test_members_send_callers_to_the_coordinator(pool):
    assert pool.addresses == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    for url in pool.urls[1:]:
        result = rpc(url).session.login_with_password("root", "password", "2.0", "t")
        assert result["ErrorDescription"] == ["HOST_IS_SLAVE", "127.0.0.1"]
    proxy, session = login(pool.url)
    for host in value(proxy.host.get_all(session)):
        record = value(proxy.host.get_record(session, host))
        pif = value(proxy.PIF.get_record(session, record["PIFs"][0]))
        assert pif["IP"] == record["address"]
        assert f"{record['address']}:{pool.port}" in pool.urls[pool.addresses.index(
            record["address"])]


def test_designate_new_master_moves_the_coordinator(pool):
    proxy, session = login(pool.url)
    new = members(pool)[0]
    new_address = value(proxy.host.get_address(session, new))
    assert value(proxy.pool.designate_new_master(session, new)) == ""
    # both xapis restarted: the old session is gone, the old coordinator redirects
    old = rpc(pool.url)
    assert old.pool.get_all(session)["ErrorDescription"] == ["SESSION_INVALID", session]
    assert old.session.login_with_password("root", "password", "2.0", "t")[
        "ErrorDescription"] == ["HOST_IS_SLAVE", new_address]
    proxy, session = login(f"http://{new_address}:{pool.port}")
    the_pool = value(proxy.pool.get_all(session))[0]
    assert value(proxy.pool.get_master(session, the_pool)) == new
    # the SDK follows the same path
    sdk = XenAPI.Session(f"http://{new_address}:{pool.port}")
    sdk.xenapi.login_with_password("root", "password", "2.0", "t")
    assert sdk.xenapi.pool.get_master(the_pool) == new
    sdk.xenapi.session.logout()


def test_designate_the_coordinator_itself_changes_nothing(pool):
    proxy, session = login(pool.url)
    assert value(proxy.pool.designate_new_master(session, pool.master_ref)) == ""
    assert value(proxy.pool.get_all(session))  # the session survived


def test_designate_a_dead_host(pool):
    proxy, session = login(pool.url)
    dead = members(pool)[1]
    SimControl(pool.url).fail_host(dead)
    assert proxy.pool.designate_new_master(session, dead)["ErrorDescription"] == [
        "HOST_OFFLINE", dead]
    assert value(proxy.pool.get_master(session, value(proxy.pool.get_all(session))[0])) == \
        pool.master_ref


def test_async_designate_new_master(pool):
    proxy, session = login(pool.url)
    task = value(proxy.Async.pool.designate_new_master(session, members(pool)[0]))
    assert task.startswith("OpaqueRef:")

    def new_coordinator_answers() -> bool:
        result = rpc(pool.urls[1]).session.login_with_password("root", "password", "2.0", "t")
        return result["Status"] == "Success"

    # the restart takes the task and the session with it; the new coordinator answers
    wait_for(new_coordinator_answers)


def test_failed_coordinator_and_emergency_takeover(pool):
    ctl = SimControl(pool.urls[1])  # the control API answers on every address
    old_master = pool.master_ref
    ctl.fail_host("127.0.0.1")
    assert [h["failed"] for h in ctl.state()["hosts"] if h["address"] == "127.0.0.1"] == [True]
    # the dead coordinator fails at the connection level
    with pytest.raises(OSError):
        rpc(pool.url).session.login_with_password("root", "password", "2.0", "t")
    member_url = pool.urls[1]
    member = rpc(member_url)
    assert member.session.login_with_password("root", "password", "2.0", "t")[
        "ErrorDescription"] == ["HOST_IS_SLAVE", "127.0.0.1"]
    local = value(member.session.slave_local_login_with_password("root", "password"))
    assert value(member.pool.emergency_transition_to_master(local)) == ""
    proxy, session = login(member_url)
    the_pool = value(proxy.pool.get_all(session))[0]
    new_master = value(proxy.pool.get_master(session, the_pool))
    assert new_master != old_master
    assert value(proxy.host.get_address(session, new_master)) == "127.0.0.2"
    # the third host re-points to the new coordinator; the dead one is left out
    recovered = value(proxy.pool.recover_slaves(session))
    assert old_master not in recovered and len(recovered) == 1
    # the old coordinator comes back as a member
    ctl.recover_host("127.0.0.1")
    assert rpc(pool.url).session.login_with_password("root", "password", "2.0", "t")[
        "ErrorDescription"] == ["HOST_IS_SLAVE", "127.0.0.2"]


def test_emergency_reset_master(pool):
    member_url = pool.urls[2]
    member = rpc(member_url)
    local = value(member.session.slave_local_login_with_password("root", "password"))
    assert member.pool.emergency_reset_master(local, "10.9.9.9")["ErrorDescription"][0] == \
        "INTERNAL_ERROR"
    assert value(member.pool.emergency_reset_master(local, "127.0.0.1")) == ""
    # its xapi restarted: the local session ended
    assert member.pool.emergency_reset_master(local, "127.0.0.1")["ErrorDescription"] == [
        "SESSION_INVALID", local]


def test_a_failed_member_drops_connections_until_it_recovers(pool):
    ctl = SimControl(pool.url)
    member = members(pool)[0]
    address = pool.host_address(member)
    url = f"http://{address}:{pool.port}"
    ctl.fail_host(member)
    with pytest.raises(OSError):
        rpc(url).session.slave_local_login_with_password("root", "password")
    sdk = XenAPI.Session(pool.url)
    sdk.xenapi.login_with_password("root", "password", "2.0", "t")
    metrics = sdk.xenapi.host.get_metrics(member)
    assert sdk.xenapi.host_metrics.get_live(metrics) is False
    ctl.recover_host(address)
    assert sdk.xenapi.host_metrics.get_live(metrics) is True
    assert value(rpc(url).session.slave_local_login_with_password("root", "password"))
    assert failure(sdk.xenapi.pool.emergency_reset_master, "nowhere")[0] == "INTERNAL_ERROR"
    sdk.xenapi.session.logout()
