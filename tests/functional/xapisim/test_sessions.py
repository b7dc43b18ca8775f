"""Sessions on xapisim over real HTTP: login, bad credentials, logout,
get_this_host, the per-user session limit, a simulated xapi restart, and
secrets kept out of the logs. Raw ServerProxy where the error itself is
under test (the SDK re-logs in on SESSION_INVALID)."""

from __future__ import annotations

import logging
import xmlrpc.client

import pytest
import XenAPI

from xapisim.control_client import SimControl
from xapisim.server import Simulator


def _login(proxy, user="root", pwd="password", originator="t") -> dict:
    return proxy.session.login_with_password(user, pwd, "2.0", originator)


def test_login_and_get_this_host(sim, rawxml):
    env = _login(rawxml)
    assert env["Status"] == "Success"
    session = env["Value"]
    host = rawxml.session.get_this_host(session, session)["Value"]
    assert rawxml.host.get_all(session)["Value"] == [host]
    rec = rawxml.session.get_record(session, session)["Value"]
    assert rec["auth_user_name"] == "root" and rec["originator"] == "t"
    assert rec["this_host"] == host


def test_login_with_only_user_and_password(sim, rawxml):
    # older clients send two parameters; xapi accepts them
    assert rawxml.session.login_with_password("root", "password")["Status"] == "Success"


@pytest.mark.parametrize("user, pwd", [("root", "wrong"), ("nobody", "password"), ("", "")])
def test_bad_credentials(sim, rawxml, user, pwd):
    # xapi's local authentication: the user name and PAM's message
    assert _login(rawxml, user, pwd) == {
        "Status": "Failure",
        "ErrorDescription": ["SESSION_AUTHENTICATION_FAILED", user, "Authentication failure"]}


def test_bad_credentials_through_the_sdk(sim):
    sdk = XenAPI.Session(sim.url)
    with pytest.raises(XenAPI.Failure) as e:
        sdk.xenapi.login_with_password("root", "nope", "2.0", "t")
    assert e.value.details == ["SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure"]


def test_configured_users():
    s = Simulator(users={"alice": "s3cret", "bob": "hunter2"}).start()
    try:
        proxy = xmlrpc.client.ServerProxy(s.url)
        assert _login(proxy, "alice", "s3cret")["Status"] == "Success"
        assert _login(proxy, "bob", "hunter2")["Status"] == "Success"
        assert _login(proxy, "root", "password")["ErrorDescription"] == [
            "SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure"]
        assert _login(proxy, "alice", "hunter2")["ErrorDescription"] == [
            "SESSION_AUTHENTICATION_FAILED", "alice", "Authentication failure"]
    finally:
        s.stop()


def test_logout_invalidates_the_session(sim, rawxml):
    session = _login(rawxml)["Value"]
    assert rawxml.session.logout(session) == {"Status": "Success", "Value": ""}
    for env in (rawxml.VM.get_all(session), rawxml.session.get_this_host(session, session),
                rawxml.session.logout(session)):
        assert env == {"Status": "Failure", "ErrorDescription": ["SESSION_INVALID", session]}


def test_other_sessions_survive_a_logout(sim, rawxml):
    a, b = _login(rawxml)["Value"], _login(rawxml)["Value"]
    rawxml.session.logout(a)
    assert rawxml.VM.get_all(b)["Status"] == "Success"


def test_sessions_are_objects_with_events(sim, xapi, rawxml):
    """A login is a session object: visible to event.from on class session."""
    token = getattr(xapi.xenapi.event, "from")(["session"], "", 0.0)["token"]
    session = _login(rawxml)["Value"]
    events = getattr(xapi.xenapi.event, "from")(["session"], token, 5.0)["events"]
    assert [(e["operation"], e["ref"]) for e in events] == [("add", session)]


def test_session_limit_drops_the_least_recently_used():
    s = Simulator(session_limit=3).start()
    try:
        proxy = xmlrpc.client.ServerProxy(s.url)
        first, second, third = (_login(proxy)["Value"] for _ in range(3))
        assert proxy.VM.get_all(first)["Status"] == "Success"  # first is now the freshest
        fourth = _login(proxy)["Value"]
        assert proxy.VM.get_all(second)["ErrorDescription"] == ["SESSION_INVALID", second]
        for alive in (first, third, fourth):
            assert proxy.VM.get_all(alive)["Status"] == "Success"
        # Used in that order just now: a fifth login drops the least recent, first.
        _login(proxy)
        assert proxy.VM.get_all(first)["ErrorDescription"] == ["SESSION_INVALID", first]
        # The limit is per user and originator: another originator's sessions stay.
        others = [_login(proxy, originator="other")["Value"] for _ in range(3)]
        assert all(proxy.VM.get_all(o)["Status"] == "Success" for o in others)
        assert proxy.VM.get_all(fourth)["Status"] == "Success"
    finally:
        s.stop()


def test_restart_invalidates_sessions_but_keeps_objects(sim, rawxml):
    session = _login(rawxml)["Value"]
    vms = rawxml.VM.get_all(session)["Value"]
    sim.restart_xapi()
    # the restart drops connections: a fresh proxy, as a client would reconnect
    proxy = xmlrpc.client.ServerProxy(sim.url)
    assert proxy.VM.get_all(session) == {"Status": "Failure",
                                         "ErrorDescription": ["SESSION_INVALID", session]}
    again = _login(proxy)["Value"]
    assert again != session
    assert sorted(proxy.VM.get_all(again)["Value"]) == sorted(vms)


def test_restart_through_the_control_api(sim, rawxml):
    session = _login(rawxml)["Value"]
    SimControl(sim.url).restart_xapi()
    proxy = xmlrpc.client.ServerProxy(sim.url)
    assert proxy.pool.get_all(session)["ErrorDescription"] == ["SESSION_INVALID", session]
    assert proxy.pool.get_all(_login(proxy)["Value"])["Status"] == "Success"


def test_the_sdk_logs_in_again_after_a_restart(sim, xapi):
    """The SDK's own recovery path: SESSION_INVALID -> re-login -> retry."""
    before = xapi._session
    pools = xapi.xenapi.pool.get_all()
    sim.restart_xapi()
    assert xapi.xenapi.pool.get_all() == pools
    assert xapi._session != before


def test_login_on_a_pool_member_names_the_coordinator():
    s = Simulator(hosts=2).start()
    try:
        member = xmlrpc.client.ServerProxy(s.urls[1])
        assert _login(member) == {"Status": "Failure",
                                  "ErrorDescription": ["HOST_IS_SLAVE", s.addresses[0]]}
        assert _login(xmlrpc.client.ServerProxy(s.urls[0]))["Status"] == "Success"
    finally:
        s.stop()


def test_passwords_and_session_refs_stay_out_of_the_logs(caplog):
    secret, wrong = "Zq8-not-in-logs", "Wx3-not-in-logs-either"
    s = Simulator(users={"root": secret}).start()
    try:
        caplog.set_level(logging.DEBUG, logger="xapisim")
        proxy = xmlrpc.client.ServerProxy(s.url)
        session = _login(proxy, "root", secret)["Value"]
        proxy.VM.get_all(session)
        proxy.VM.get_record(session, "OpaqueRef:NULL")
        getattr(proxy, "Async.pool.get_all")(session)
        _login(proxy, "root", wrong)
        proxy.session.logout(session)
    finally:
        s.stop()
    text = caplog.text
    assert caplog.records, "no debug logging at all: the check below would prove nothing"
    assert secret not in text and wrong not in text
    assert session not in text and session.split(":")[1] not in text
