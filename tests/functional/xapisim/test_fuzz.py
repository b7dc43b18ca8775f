"""Bad input over real HTTP, driven by hypothesis: malformed XML, values of
the wrong types for real methods, unknown classes and methods, random JSON,
huge and truncated bodies. Every answer must be a proper XenAPI envelope
(a declared error code with its parameter count) or an HTTP error; the
simulator must log no internal error, keep no hung thread, and still answer
a normal call promptly afterwards."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
import xmlrpc.client
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.functional.harness import ErrorLog
from xapisim import schema
from xapisim.errors import declared_param_counts
from xapisim.httpserver import MAX_RPC_BODY
from xapisim.server import Simulator

FUZZ = settings(max_examples=150, deadline=None, database=None, derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
MODEL = schema.load()
# Messages whose random-but-valid arguments could block or end the test's
# own session: the fuzz stays away from them.
UNSAFE_PREFIXES = ("session.", "event.", "pool.join", "pool.eject", "host.shutdown",
                   "host.reboot", "pool.designate_new_master", "pool.emergency")
METHODS = sorted(
    m.wire_name
    for c in MODEL.classes.values()
    for m in c.messages.values()
    if m.needs_session and len(m.params) > 1 and not m.wire_name.startswith(UNSAFE_PREFIXES)
)


@pytest.fixture(scope="module")
def fuzz() -> Iterator[tuple[Simulator, str, ErrorLog]]:
    s = Simulator(task_duration=0.0).start()
    errors = ErrorLog()
    logging.getLogger("xapisim").addHandler(errors)
    try:
        proxy = xmlrpc.client.ServerProxy(s.url)
        session = proxy.session.login_with_password("root", "password", "2.0", "fuzz")["Value"]
        proxy("close")()
        global _BASELINE
        _BASELINE = _settled_thread_count(threading.active_count())
        yield s, session, errors
    finally:
        logging.getLogger("xapisim").removeHandler(errors)
        s.stop()


_BASELINE = 0


def _settled_thread_count(target: int) -> int:
    """The thread count once connection threads have wound down to
    ``target`` (bounded wait)."""
    deadline = time.monotonic() + 15
    count = threading.active_count()
    while count > target and time.monotonic() < deadline:
        time.sleep(0.05)
        count = threading.active_count()
    return count


def post(sim: Simulator, path: str, body: bytes, ctype: str = "text/xml") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(sim.addresses[0], sim.port, timeout=15)
    try:
        conn.request("POST", path, body, {"Content-Type": ctype})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def check_description(desc: object) -> None:
    assert isinstance(desc, list) and desc and all(isinstance(p, str) for p in desc), desc
    code, params = desc[0], desc[1:]
    counts = declared_param_counts(code, MODEL.errors)
    assert counts, f"undeclared error {desc}"
    assert len(params) in counts, f"{code} params {params} vs {MODEL.errors.get(code)}"
    if code == "INTERNAL_ERROR":
        # the only deliberate INTERNAL_ERRORs are for unparsable JSON-RPC;
        # anything else is a simulator exception turned into an answer
        assert params[0].startswith("JSON-RPC"), f"simulator crashed: {desc}"


def check_xml_answer(status: int, body: bytes) -> None:
    if status != 200:
        assert 400 <= status < 600, status
        return
    (env,), method = xmlrpc.client.loads(body)  # a methodResponse, never a fault
    assert method is None
    if env["Status"] == "Success":
        assert set(env) == {"Status", "Value"}
    else:
        assert env["Status"] == "Failure" and set(env) == {"Status", "ErrorDescription"}, env
        check_description(env["ErrorDescription"])


def check_json_answer(status: int, body: bytes) -> None:
    if status != 200:
        assert 400 <= status < 600, status
        return
    doc = json.loads(body)
    assert isinstance(doc, dict) and "id" in doc, doc
    if doc.get("jsonrpc") == "2.0":
        if "error" in doc:
            err = doc["error"]
            assert set(doc) == {"jsonrpc", "error", "id"}
            assert isinstance(err["code"], int) and err["code"] != 0
            check_description([err["message"], *err["data"]])
        else:
            assert set(doc) == {"jsonrpc", "result", "id"}
    else:
        assert set(doc) == {"result", "error", "id"}, doc
        if doc["error"] is not None:
            assert doc["result"] is None
            check_description(doc["error"])


# -- strategies ---------------------------------------------------------------------------
_INT32 = st.integers(-(2**31), 2**31 - 1)
# mostly text XML can carry, sometimes control characters it cannot
_CLEAN = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)
_TEXT = st.one_of(_CLEAN, _CLEAN, _CLEAN, st.text(max_size=10))
xml_scalars = st.one_of(
    _INT32, st.booleans(), st.floats(allow_nan=True, allow_infinity=True), _TEXT,
    st.integers(-(2**70), 2**70).map(str), st.none(),
    st.builds(xmlrpc.client.DateTime, st.sampled_from(
        ["20260101T00:00:00Z", "19700101T00:00:00", "garbage", ""])),
    st.binary(max_size=20).map(xmlrpc.client.Binary),
    st.sampled_from(["OpaqueRef:NULL", "OpaqueRef:00000000-0000-0000-0000-000000000000",
                     "true", "-1", "1e400", "Running", ""]),
)
xml_values = st.recursive(
    xml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(),
              st.text(max_size=30)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)
method_names = st.one_of(
    st.sampled_from(METHODS),
    st.sampled_from(METHODS).map(lambda m: "Async." + m),
    st.text(max_size=30),
    st.from_regex(r"[A-Za-z_]{1,12}\.[a-z_]{1,16}", fullmatch=True),
)


# -- XML-RPC ------------------------------------------------------------------------------
@FUZZ
@given(body=st.binary(max_size=300))
def test_random_bytes_as_xmlrpc(fuzz, body):
    sim, _, _ = fuzz
    check_xml_answer(*post(sim, "/", body))


@FUZZ
@given(method=st.sampled_from(METHODS), cut=st.integers(0, 10_000), junk=st.binary(max_size=8))
def test_mangled_xmlrpc(fuzz, method, cut, junk):
    sim, session, _ = fuzz
    good = xmlrpc.client.dumps((session, "OpaqueRef:NULL"), method).encode()
    cut %= len(good)
    check_xml_answer(*post(sim, "/RPC2", good[:cut] + junk + good[cut + len(junk):]))


@FUZZ
@given(method=method_names, params=st.lists(xml_values, max_size=5), real_session=st.booleans())
def test_wrong_values_for_real_and_unknown_methods(fuzz, method, params, real_session):
    sim, session, _ = fuzz
    if real_session:
        params = [session, *params]
    try:
        body = xmlrpc.client.dumps(tuple(params), method, allow_none=True).encode()
    except (OverflowError, TypeError, ValueError):
        return  # not expressible in XML-RPC at all
    check_xml_answer(*post(sim, "/", body))


@FUZZ
@given(data=st.data(), method=st.sampled_from(METHODS))
def test_random_values_of_the_right_count_for_real_methods(fuzz, data, method):
    """Past the count check: the values meet the type checks and handlers."""
    sim, session, _ = fuzz
    count = len(MODEL.message(method).params) - 1
    params = data.draw(st.lists(xml_values, min_size=count, max_size=count))
    try:
        body = xmlrpc.client.dumps((session, *params), method, allow_none=True).encode()
    except (OverflowError, TypeError, ValueError):
        return
    check_xml_answer(*post(sim, "/", body))


# -- JSON-RPC -----------------------------------------------------------------------------
@FUZZ
@given(doc=json_values)
def test_random_json(fuzz, doc):
    sim, _, _ = fuzz
    check_json_answer(*post(sim, "/jsonrpc", json.dumps(doc).encode(), "application/json"))


@FUZZ
@given(method=method_names, params=st.lists(json_values, max_size=5),
       version=st.sampled_from(["2.0", "1.0", None, "3"]), rid=json_values,
       real_session=st.booleans())
def test_random_jsonrpc_calls(fuzz, method, params, version, rid, real_session):
    sim, session, _ = fuzz
    doc = {"method": method, "params": [session, *params] if real_session else params,
           "id": rid}
    if version is not None:
        doc["jsonrpc"] = version
    check_json_answer(*post(sim, "/jsonrpc", json.dumps(doc).encode(), "application/json"))


@FUZZ
@given(data=st.data(), method=st.sampled_from(METHODS), version=st.sampled_from(["2.0", "1.0"]))
def test_random_json_values_of_the_right_count_for_real_methods(fuzz, data, method, version):
    sim, session, _ = fuzz
    count = len(MODEL.message(method).params) - 1
    params = data.draw(st.lists(json_values, min_size=count, max_size=count))
    doc = {"method": method, "params": [session, *params], "id": 1}
    if version == "2.0":
        doc["jsonrpc"] = "2.0"
    check_json_answer(*post(sim, "/jsonrpc", json.dumps(doc).encode(), "application/json"))


@FUZZ
@given(body=st.binary(max_size=200))
def test_random_bytes_as_jsonrpc(fuzz, body):
    sim, _, _ = fuzz
    check_json_answer(*post(sim, "/jsonrpc", body, "application/json"))


# -- sizes and truncation -------------------------------------------------------------------
def _raw_request(sim: Simulator, path: str, length: int, sent: bytes) -> socket.socket:
    sock = socket.create_connection((sim.addresses[0], sim.port), timeout=15)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
                 f"Content-Length: {length}\r\n\r\n".encode() + sent)
    return sock


@pytest.mark.parametrize("path", ["/", "/RPC2", "/jsonrpc"])
def test_bodies_over_32_mib_are_refused_with_413(fuzz, path):
    sim, _, _ = fuzz
    sock = _raw_request(sim, path, MAX_RPC_BODY + 1, b"<" * 65536)
    try:
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        assert resp.status == 413
    finally:
        sock.close()


def test_a_body_of_exactly_32_mib_is_read(fuzz):
    sim, session, _ = fuzz
    head = xmlrpc.client.dumps((session, ""), "no_such.method").encode()
    pad = MAX_RPC_BODY - len(head)
    # whitespace between elements is legal XML-RPC: the call parses
    body = head.replace(b"<params>", b"<params>" + b" " * pad, 1)
    assert len(body) == MAX_RPC_BODY
    status, answer = post(sim, "/", body)
    assert status == 200
    (env,), _ = xmlrpc.client.loads(answer)
    assert env["ErrorDescription"] == ["MESSAGE_METHOD_UNKNOWN", "no_such.method"]


@pytest.mark.parametrize("path", ["/", "/jsonrpc"])
def test_truncated_body_then_half_close_gets_an_answer(fuzz, path):
    sim, session, _ = fuzz
    sent = xmlrpc.client.dumps((session,), "pool.get_all").encode()[:60]
    sock = _raw_request(sim, path, 1000, sent)
    try:
        sock.shutdown(socket.SHUT_WR)  # the upload stops short, then ends
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        body = resp.read()
        if path == "/":
            check_xml_answer(resp.status, body)
        else:
            check_json_answer(resp.status, body)
        assert resp.status != 200 or b"Failure" in body or b"error" in body
    finally:
        sock.close()


def test_truncated_body_then_close(fuzz):
    sim, session, _ = fuzz
    for _ in range(20):
        sock = _raw_request(sim, "/", 5000, b"<?xml version='1.0'?><methodCall>")
        sock.close()  # gone before the body and before the answer


# -- afterwards -----------------------------------------------------------------------------
def test_zz_still_healthy_after_the_fuzz(fuzz):
    """Runs last in this module: no internal error was logged, no thread
    is left behind, and a normal call is answered at once."""
    sim, session, errors = fuzz
    assert not errors.records, [r.getMessage() for r in errors.records][:5]
    # every fuzz connection is closed: its server thread must be gone too
    threads = _settled_thread_count(_BASELINE)
    assert threads <= _BASELINE, [t.name for t in threading.enumerate()]
    proxy = xmlrpc.client.ServerProxy(sim.url)
    start = time.monotonic()
    fresh = proxy.session.login_with_password("root", "password", "2.0", "after")["Value"]
    assert proxy.pool.get_all(fresh)["Status"] == "Success"
    assert proxy.pool.get_all(session)["Status"] == "Success"
    assert time.monotonic() - start < 5.0
    proxy("close")()
