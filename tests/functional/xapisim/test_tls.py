"""xapisim over HTTPS with its generated certificate: clients that trust
the CA file verify it (XML-RPC SDK, JSON-RPC, HTTP handlers, pool members,
the control client, a plugin calling back); clients that do not, fail
verification."""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.parse
import xmlrpc.client
from collections.abc import Iterator

import pytest
import XenAPI

from xapisim.control_client import SimControl
from xapisim.server import Simulator


@pytest.fixture
def tls_sim() -> Iterator[Simulator]:
    sim = Simulator(hosts=2, task_duration=0.01, tls=True).start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def context(tls_sim) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=tls_sim.ca_file)


def sdk(url: str, context: ssl.SSLContext) -> XenAPI.Session:
    s = XenAPI.Session(url, transport=xmlrpc.client.SafeTransport(context=context))
    s.xenapi.login_with_password("root", "password", "2.0", "tls-tests")
    return s


def test_verified_sdk_session(tls_sim, context):
    assert tls_sim.url.startswith("https://")
    s = sdk(tls_sim.url, context)
    assert len(s.xenapi.host.get_all()) == 2
    # the certificate names the members' addresses too
    member = xmlrpc.client.ServerProxy(tls_sim.urls[1], context=context)
    assert member.session.login_with_password("root", "password", "2.0", "t")[
        "ErrorDescription"] == ["HOST_IS_SLAVE", "127.0.0.1"]
    s.xenapi.session.logout()


def test_unverified_clients_are_refused(tls_sim):
    with pytest.raises(ssl.SSLCertVerificationError):
        XenAPI.Session(tls_sim.url).xenapi.login_with_password("root", "password", "2.0", "t")
    with pytest.raises(urllib.error.URLError) as err:
        SimControl(tls_sim.url).state()
    assert isinstance(err.value.reason, ssl.SSLCertVerificationError)
    # plain HTTP on the TLS port gets nothing useful
    u = urllib.parse.urlsplit(tls_sim.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    with pytest.raises((OSError, http.client.HTTPException)):
        conn.request("GET", "/_sim/state")
        conn.getresponse().read()
    conn.close()


def test_jsonrpc_handlers_and_control_over_tls(tls_sim, context):
    s = sdk(tls_sim.url, context)
    u = urllib.parse.urlsplit(tls_sim.url)
    conn = http.client.HTTPSConnection(u.hostname, u.port, context=context, timeout=10)
    body = json.dumps({"jsonrpc": "2.0", "method": "pool.get_all", "params": [s._session],
                       "id": 1})
    conn.request("POST", "/jsonrpc", body=body, headers={"Content-Type": "application/json"})
    assert json.loads(conn.getresponse().read())["result"]
    vdi = s.xenapi.VDI.create({
        "name_label": "t", "name_description": "",
        "SR": s.xenapi.pool.get_default_SR(s.xenapi.pool.get_all()[0]),
        "virtual_size": str(1 << 20), "type": "user", "sharable": False, "read_only": False,
        "other_config": {},
    })
    conn.request("PUT", f"/import_raw_vdi?session_id={s._session}&vdi={vdi}",
                 body=b"secure" * 1000)
    resp = conn.getresponse()
    assert resp.status == 200
    # The 200 goes out before the data moves (as in xapi); the import is
    # done when the server closes the connection.
    resp.read()
    conn.close()
    conn = http.client.HTTPSConnection(u.hostname, u.port, context=context, timeout=10)
    conn.request("GET", f"/export_raw_vdi?session_id={s._session}&vdi={vdi}")
    assert conn.getresponse().read()[:6000] == b"secure" * 1000
    conn.close()
    assert SimControl(tls_sim.url, ca_file=tls_sim.ca_file).state()["tls"] is True
    s.xenapi.session.logout()


def test_plugin_calls_back_over_tls(tls_sim, context):
    s = sdk(tls_sim.url, context)
    host = tls_sim.master_ref
    assert s.xenapi.host.call_plugin(host, "echo", "host_uuid", {}) == \
        s.xenapi.host.get_uuid(host)
    s.xenapi.session.logout()
