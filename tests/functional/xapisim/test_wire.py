"""xapisim's wire protocols over real HTTP: XML-RPC on / and /RPC2, JSON-RPC
1.0 and 2.0 on /jsonrpc, xapi's envelopes and encodings, HTTPS, and a
threaded server on which a long event.from blocks nobody else."""

from __future__ import annotations

import http.client
import json
import re
import ssl
import threading
import time
import urllib.parse
import xmlrpc.client

import pytest
import XenAPI

from xapisim.server import Simulator

REF = re.compile(r"^OpaqueRef:[0-9a-f-]{36}$")


def _post(url: str, path: str, body: bytes, ctype: str = "text/xml") -> tuple[int, dict, bytes]:
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("POST", path, body, {"Content-Type": ctype})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def _xml_call(url: str, path: str, method: str, *params) -> tuple[dict, bytes]:
    status, headers, body = _post(url, path, xmlrpc.client.dumps(params, method).encode())
    assert status == 200
    assert headers["Content-Type"].startswith("text/xml")
    (envelope,), _ = xmlrpc.client.loads(body)
    return envelope, body


def _login_xml(url: str, path: str = "/") -> str:
    env, _ = _xml_call(url, path, "session.login_with_password", "root", "password", "2.0", "t")
    assert env["Status"] == "Success", env
    return env["Value"]


# -- XML-RPC ----------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/RPC2"])
def test_xmlrpc_success_and_failure_envelopes(sim, path):
    session = _login_xml(sim.url, path)
    assert REF.match(session)
    ok, body = _xml_call(sim.url, path, "pool.get_all", session)
    assert set(ok) == {"Status", "Value"} and ok["Status"] == "Success"
    assert len(ok["Value"]) == 1 and REF.match(ok["Value"][0])
    assert b"<fault>" not in body
    bad, body = _xml_call(sim.url, path, "VM.get_record", session, "OpaqueRef:NULL")
    assert bad == {"Status": "Failure",
                   "ErrorDescription": ["HANDLE_INVALID", "VM", "OpaqueRef:NULL"]}
    assert b"<fault>" not in body


def test_xmlrpc_encodings(sim, xapi):
    """int64 as decimal strings, floats as doubles, datetimes as
    dateTime.iso8601, void as "", refs OpaqueRef:..., OpaqueRef:NULL."""
    session = xapi._session
    host = xapi.xenapi.host.get_all()[0]
    metrics = xapi.xenapi.host.get_metrics(host)
    env, body = _xml_call(sim.url, "/", "host_metrics.get_record", session, metrics)
    rec = env["Value"]
    total = rec["memory_total"]
    assert isinstance(total, str) and int(total) > 2**32  # beyond a 32-bit <i4>
    assert f"<value>{total}</value>".encode() in body or \
        f"<string>{total}</string>".encode() in body
    assert b"<i4>" not in body and b"<int>" not in body
    assert isinstance(rec["last_updated"], xmlrpc.client.DateTime)
    assert b"<dateTime.iso8601>" in body
    assert isinstance(rec["live"], bool) and b"<boolean>1</boolean>" in body

    vm = xapi.xenapi.VM.get_all_records_where('field "is_a_template" = "true"')
    tpl = next(iter(vm))
    env, _ = _xml_call(sim.url, "/", "VM.get_resident_on", session, tpl)
    assert env["Value"] == "OpaqueRef:NULL"
    env, body = _xml_call(sim.url, "/", "VM.set_name_description", session, tpl, "x")
    assert env == {"Status": "Success", "Value": ""}
    env, body = _xml_call(sim.url, "/", "host_cpu.get_all_records", session)
    assert b"<double>" in body
    assert all(isinstance(r["utilisation"], float) for r in env["Value"].values())


def test_xmlrpc_ints_are_accepted_as_strings_and_ints(sim, xapi):
    session = xapi._session
    net = xapi.xenapi.network.get_all()[0]
    for value in ("1400", 1400):
        env, _ = _xml_call(sim.url, "/", "network.set_MTU", session, net, value)
        assert env["Status"] == "Success", env
        assert xapi.xenapi.network.get_MTU(net) == "1400"


def test_malformed_xmlrpc_is_a_xenapi_failure(sim):
    status, _, body = _post(sim.url, "/", b"<methodCall><methodName>x</methodName><params>")
    assert status == 200
    (env,), _ = xmlrpc.client.loads(body)
    assert env["Status"] == "Failure"
    assert env["ErrorDescription"][0] == "XMLRPC_UNMARSHAL_FAILURE"


# -- JSON-RPC -----------------------------------------------------------------------------
def test_jsonrpc_2_envelopes(sim, jsonrpc):
    answer = jsonrpc.call("session.login_with_password", "root", "password", "2.0", "t")
    assert set(answer) == {"jsonrpc", "result", "id"}
    assert answer["jsonrpc"] == "2.0" and answer["id"] == jsonrpc.next_id
    session = answer["result"]
    assert REF.match(session)
    answer = jsonrpc.call("VM.get_record", session, "OpaqueRef:NULL")
    assert answer == {
        "jsonrpc": "2.0",
        "error": {"code": answer["error"]["code"], "message": "HANDLE_INVALID",
                  "data": ["VM", "OpaqueRef:NULL"]},
        "id": jsonrpc.next_id,
    }
    assert isinstance(answer["error"]["code"], int) and answer["error"]["code"] != 0
    unknown = jsonrpc.call("VM.frobnicate", session)
    assert unknown["error"]["message"] == "MESSAGE_METHOD_UNKNOWN"
    assert unknown["error"]["data"] == ["VM.frobnicate"]


def test_jsonrpc_1_envelopes(sim, jsonrpc):
    answer = jsonrpc.call("session.login_with_password", "root", "password", version="1.0")
    assert answer == {"result": answer["result"], "error": None, "id": jsonrpc.next_id}
    session = answer["result"]
    answer = jsonrpc.call("VM.get_record", session, "OpaqueRef:NULL", version="1.0")
    assert answer == {"result": None, "error": ["HANDLE_INVALID", "VM", "OpaqueRef:NULL"],
                      "id": jsonrpc.next_id}


def test_jsonrpc_ids_echoed_and_content_type(sim):
    for request_id in ("abc", 7, None):
        body = json.dumps({"jsonrpc": "2.0", "method": "session.login_with_password",
                           "params": ["root", "password"], "id": request_id}).encode()
        status, headers, raw = _post(sim.url, "/jsonrpc", body, "application/json")
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        assert json.loads(raw)["id"] == request_id


def test_jsonrpc_encodings(sim, jsonrpc, xapi):
    """On JSON-RPC ints are numbers, datetimes strings, void null."""
    session = xapi._session
    host = xapi.xenapi.host.get_all()[0]
    metrics = xapi.xenapi.host.get_metrics(host)
    rec = jsonrpc.call("host_metrics.get_record", session, metrics)["result"]
    assert isinstance(rec["memory_total"], int) and rec["memory_total"] > 2**32
    assert re.match(r"^\d{8}T\d\d:\d\d:\d\dZ$", rec["last_updated"])
    assert rec["live"] is True
    answer = jsonrpc.call("pool.set_name_description", session,
                          xapi.xenapi.pool.get_all()[0], "from json")
    assert answer["result"] is None and "error" not in answer
    assert xapi.xenapi.pool.get_name_description(xapi.xenapi.pool.get_all()[0]) == "from json"


def test_malformed_json_is_a_xenapi_failure(sim, jsonrpc):
    for body in (b"{not json", b"[1, 2]", b'{"method": 3}', b'{"method": "x", "params": {}}',
                 b"\xff\xfe"):
        status, raw = jsonrpc.post(body)
        assert status == 200, body
        answer = json.loads(raw)
        assert answer["error"]["message"] == "INTERNAL_ERROR", (body, answer)


# -- across protocols ------------------------------------------------------------------------
def test_session_from_xmlrpc_is_valid_on_jsonrpc_and_back(sim, jsonrpc, rawxml):
    xml_session = rawxml.session.login_with_password("root", "password", "2.0", "t")["Value"]
    pools = jsonrpc.call("pool.get_all", xml_session)["result"]
    assert len(pools) == 1
    json_session = jsonrpc.call("session.login_with_password", "root", "password")["result"]
    assert rawxml.pool.get_all(json_session) == {"Status": "Success", "Value": pools}
    assert jsonrpc.call("session.logout", xml_session)["result"] is None
    assert rawxml.pool.get_all(xml_session)["ErrorDescription"] == ["SESSION_INVALID",
                                                                   xml_session]


def test_async_over_jsonrpc_returns_a_task(sim, jsonrpc, xapi):
    task = jsonrpc.call("Async.pool.get_all", xapi._session)["result"]
    assert REF.match(task)
    deadline = time.monotonic() + 10
    while xapi.xenapi.task.get_status(task) == "pending" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert xapi.xenapi.task.get_status(task) == "success"
    result = xapi.xenapi.task.get_result(task)
    # the XML-RPC encoding of the value, as a client decodes it
    (value,), _ = xmlrpc.client.loads(
        f"<methodResponse><params><param>{result}</param></params></methodResponse>")
    assert value == xapi.xenapi.pool.get_all()


def test_unknown_paths_are_http_errors(sim):
    status, _, _ = _post(sim.url, "/no/such/path", b"x")
    assert status == 404


# -- HTTPS -----------------------------------------------------------------------------------
def test_https_with_the_generated_certificate():
    s = Simulator(tls=True).start()
    try:
        assert s.url.startswith("https://")
        ctx = ssl.create_default_context(cafile=s.ca_file)
        proxy = xmlrpc.client.ServerProxy(s.url, context=ctx)
        session = proxy.session.login_with_password("root", "password", "2.0", "t")["Value"]
        assert proxy.pool.get_all(session)["Status"] == "Success"
        with pytest.raises(ssl.SSLError):  # not trusted without the CA file
            xmlrpc.client.ServerProxy(
                s.url, context=ssl.create_default_context()).pool.get_all(session)
        sdk = XenAPI.Session(s.url, ignore_ssl=True)
        sdk.xenapi.login_with_password("root", "password", "2.0", "t")
        assert len(sdk.xenapi.host.get_all()) == 1
        sdk.xenapi.session.logout()
    finally:
        s.stop()


# -- threads ------------------------------------------------------------------------------------
def _wait_for_waiters(sim: Simulator, n: int) -> None:
    # event.from blocks on the store's condition variable: wait until the
    # server threads are really inside it (CPython's Condition._waiters).
    deadline = time.monotonic() + 10
    while len(sim.store.changed._waiters) < n:
        assert time.monotonic() < deadline, "event.from never blocked"
        time.sleep(0.01)


def test_long_event_from_does_not_block_other_callers(sim, xapi):
    blockers = 3
    proxies = [xmlrpc.client.ServerProxy(sim.url) for _ in range(blockers)]
    sessions = [p.session.login_with_password("root", "password", "2.0", "t")["Value"]
                for p in proxies]
    pool = xapi.xenapi.pool.get_all()[0]
    token = getattr(xapi.xenapi.event, "from")(["pool"], "", 0.0)["token"]
    returned: list[tuple[float, dict]] = []
    lock = threading.Lock()

    def block(proxy, session):
        env = getattr(proxy, "event.from")(session, ["pool"], token, 5.0)
        with lock:
            returned.append((time.monotonic(), env))

    threads = [threading.Thread(target=block, args=(p, s)) for p, s in zip(proxies, sessions,
                                                                           strict=True)]
    for t in threads:
        t.start()
    _wait_for_waiters(sim, blockers)
    # Other callers, on the same session as one blocker and on others, are served
    # while every event.from still waits.
    other = xmlrpc.client.ServerProxy(sim.url)
    for _ in range(20):
        assert other.pool.get_all(sessions[0])["Status"] == "Success"
        assert xapi.xenapi.host.get_all()
    done_others = time.monotonic()
    with lock:
        assert returned == [], "an event.from returned before the other calls finished"
    # A change wakes them all with the event (not only the 5 s timeout).
    xapi.xenapi.pool.set_name_description(pool, "wake up")
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    assert len(returned) == blockers
    for finished, env in returned:
        assert finished > done_others
        assert env["Status"] == "Success"
        events = env["Value"]["events"]
        assert [(e["class"], e["operation"], e["ref"]) for e in events] == [("pool", "mod", pool)]
