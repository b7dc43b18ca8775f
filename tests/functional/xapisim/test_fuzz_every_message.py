"""Every wire type into every parameter of every implemented message.

For each message the simulator serves (those that could end the test's
own session or restart xapi aside), each parameter in turn gets a value of
every XML-RPC wire type (string, untyped text, int, i8, int64 at and past
its range, double with inf and nan, boolean, dateTime, base64, array,
struct, nil, refs of the wrong class, a long string) and of every JSON
type, the other parameters holding plausible values (a real object of the
declared class, zero values). The bodies go through the same
``rpc_answer.answer`` the HTTP listeners use (in-process, so the sweep is
exhaustive within a small fixed budget); a deterministic sample of the
same calls goes over real HTTP as well.

Every answer must be a success or a declared XenAPI error with its
parameter count, never INTERNAL_ERROR (a Python exception reaching the
client), and the simulator must log no internal error."""

from __future__ import annotations

import base64
import html
import http.client
import json
import logging
import math
import time
import xmlrpc.client
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.functional.harness import ErrorLog
from xapisim import rpc_answer
from xapisim.errors import declared_param_counts
from xapisim.schema import Message, Type
from xapisim.server import Simulator

# Messages that would end the sweep's own session, restart xapi or the
# hosts, or wait on the clock: the rest of the suite covers them.
UNSAFE_PREFIXES = ("session.logout", "session.local_logout", "session.change_password",
                   "event.from", "event.next", "pool.join", "pool.eject", "host.shutdown",
                   "host.reboot", "host.restart_agent", "pool.designate_new_master",
                   "pool.emergency", "pool.recover_slaves")
# Every HTTP_EVERY-th call also goes over real HTTP.
HTTP_EVERY = 25


class Raw:
    """An XML-RPC value written as is (for <base64> without line breaks)."""

    def __init__(self, xml: str):
        self.xml = xml


def xml_value(v: Any) -> str:
    if isinstance(v, Raw):
        return v.xml
    if v is None:
        return "<value><nil/></value>"
    if isinstance(v, bool):
        return f"<value><boolean>{int(v)}</boolean></value>"
    if isinstance(v, int):
        return f"<value><int>{v}</int></value>"
    if isinstance(v, float):
        return f"<value><double>{v!r}</double></value>"
    if isinstance(v, str):
        return f"<value><string>{html.escape(v, quote=False)}</string></value>"
    if isinstance(v, xmlrpc.client.DateTime):
        return f"<value><dateTime.iso8601>{v.value}</dateTime.iso8601></value>"
    if isinstance(v, list):
        return "<value><array><data>" + "".join(xml_value(x) for x in v) + "</data></array></value>"
    if isinstance(v, dict):
        return "<value><struct>" + "".join(
            f"<member><name>{html.escape(k, quote=False)}</name>{xml_value(x)}</member>"
            for k, x in v.items()) + "</struct></value>"
    raise TypeError(v)


def xml_call(method: str, params: list[Any]) -> bytes:
    return (f"<?xml version='1.0'?><methodCall><methodName>{method}</methodName><params>"
            + "".join(f"<param>{xml_value(p)}</param>" for p in params)
            + "</params></methodCall>").encode()


def _json_ready(v: Any) -> Any:
    if isinstance(v, xmlrpc.client.DateTime):
        return v.value  # JSON-RPC carries datetimes as strings
    if isinstance(v, list):
        return [_json_ready(x) for x in v]
    if isinstance(v, dict):
        return {k: _json_ready(x) for k, x in v.items()}
    return v


def json_call(method: str, params: list[Any]) -> bytes:
    doc = {"jsonrpc": "2.0", "method": method, "params": _json_ready(params), "id": 1}
    return json.dumps(doc).encode()


def xml_values(wrong_ref: str) -> list[Any]:
    return [
        "fuzz", "", "OpaqueRef:NULL", wrong_ref, 7, -(2**31), "9223372036854775808",
        "9223372036854775807", "-9223372036854775808",
        "-1", Raw("<value><i8>-42</i8></value>"), Raw("<value>untyped text</value>"),
        1e308, math.inf, math.nan, True,
        xmlrpc.client.DateTime("20261130T00:00:00Z"),
        Raw("<value><base64>" + base64.b64encode(b"fuzz").decode() + "</base64></value>"),
        [], ["a", 1, [True]], {}, {"k": {"n": ["v", None]}}, None, "x" * 5000,
    ]


def json_values(wrong_ref: str) -> list[Any]:
    return [None, True, 0, -1, 2**70, 1.5e300, "fuzz", "", wrong_ref, [], [None, "a", 1],
            {}, {"k": {"n": [1.5]}}]


def plausible(t: Type, refs: dict[str, str], model) -> Any:
    """A value of declared type ``t`` that passes the type check."""
    kind = t.kind
    if kind == "ref":
        return refs.get(t.name, "OpaqueRef:NULL")
    if kind == "int":
        return "0"
    if kind == "float":
        return 0.0
    if kind == "bool":
        return False
    if kind == "datetime":
        return xmlrpc.client.DateTime("19700101T00:00:00Z")
    if kind == "enum":
        return (model.enums.get(t.name) or [""])[0]
    if kind == "set":
        return []
    if kind in ("map", "record"):
        return {}
    return ""


@pytest.fixture(scope="module")
def swept() -> Iterator[tuple[Simulator, str, ErrorLog]]:
    sim = Simulator(task_duration=0.0).start()
    errors = ErrorLog()
    logging.getLogger("xapisim").addHandler(errors)
    try:
        proxy = xmlrpc.client.ServerProxy(sim.url)
        session = proxy.session.login_with_password("root", "password", "2.0", "sweep")["Value"]
        # a running VM, so that its VBDs, VIFs and metrics exist to point at
        tpl = sorted(proxy.VM.get_all_records_where(
            session, 'field "is_a_template" = "true"')["Value"])[0]
        vm = proxy.VM.clone(session, tpl, "sweep")["Value"]
        proxy.VM.provision(session, vm)
        proxy.VM.start(session, vm, False, False)
        proxy("close")()
        yield sim, session, errors
    finally:
        logging.getLogger("xapisim").removeHandler(errors)
        sim.stop()


def targets(sim: Simulator) -> list[Message]:
    return [m for c in sim.model.classes.values() for m in c.messages.values()
            if m.needs_session and len(m.params) > 1
            and not m.wire_name.startswith(UNSAFE_PREFIXES)
            and sim.dispatcher.handler_for(m.wire_name) is not None]


def current_refs(sim: Simulator, session: str) -> dict[str, str]:
    """One live object of each class, read over HTTP (the sweep may have
    destroyed the last one seen)."""
    proxy = xmlrpc.client.ServerProxy(sim.url)
    refs = {}
    for cls in sim.model.classes:
        env = getattr(proxy, f"{cls}.get_all")(session)
        if env["Status"] == "Success" and env["Value"]:
            # not the control domain or a template first: a clone is safer
            refs[cls] = sorted(env["Value"])[-1]
    proxy("close")()
    return refs


def problem(desc: Any, model_errors: dict[str, list[str]]) -> str | None:
    if not (isinstance(desc, list) and desc and all(isinstance(d, str) for d in desc)):
        return f"malformed error {desc!r}"
    code, params = desc[0], desc[1:]
    if code == "INTERNAL_ERROR":
        return f"INTERNAL_ERROR {params}"
    counts = declared_param_counts(code, model_errors)
    if not counts:
        return f"undeclared {code}"
    if len(params) not in counts:
        return f"{code} with {len(params)} params {params}, declared {model_errors.get(code)}"
    return None


def xml_error(body: bytes) -> Any:
    (env,), _ = xmlrpc.client.loads(body)
    return None if env["Status"] == "Success" else env["ErrorDescription"]


def json_error(body: bytes) -> Any:
    doc = json.loads(body)
    err = doc.get("error")
    return None if err is None else [err["message"], *err["data"]]


def test_every_wire_type_into_every_parameter(swept):
    sim, session, errors = swept
    model = sim.model
    messages = targets(sim)
    assert len(messages) > 1000
    problems: list[str] = []
    codes: Counter[str] = Counter()
    calls = 0
    u = sim.addresses[0], sim.port
    http_conn = http.client.HTTPConnection(*u, timeout=30)
    start = time.monotonic()
    for n_msg, msg in enumerate(messages):
        if n_msg % 200 == 0:
            refs = current_refs(sim, session)
            wrong = refs.get("pool", "OpaqueRef:NULL")
        base = [plausible(p.type, refs, model) for p in msg.params[1:]]
        for i, p in enumerate(msg.params[1:]):
            for protocol, values, encode, read in (
                    (rpc_answer.XMLRPC, xml_values(wrong), xml_call, xml_error),
                    (rpc_answer.JSONRPC, json_values(wrong), json_call, json_error)):
                for v in values:
                    args = [session, *base[:i], v, *base[i + 1:]]
                    body = encode(msg.wire_name, args)
                    out = rpc_answer.answer(sim.dispatcher, sim.master_ref, body, protocol)
                    calls += 1
                    if calls % HTTP_EVERY == 0:
                        path = "/jsonrpc" if protocol == rpc_answer.JSONRPC else "/"
                        http_conn.request("POST", path, body)
                        resp = http_conn.getresponse()
                        assert resp.status == 200
                        out = resp.read()
                    desc = read(out)
                    if desc is None:
                        continue
                    codes[desc[0]] += 1
                    why = problem(desc, model.errors)
                    if why:
                        problems.append(f"{msg.wire_name}[{p.name}={v!r:.40}] ({protocol}): "
                                        f"{why}")
    http_conn.close()
    elapsed = time.monotonic() - start
    print(f"sweep: {calls} calls into {len(messages)} messages in {elapsed:.1f}s; "
          f"top errors {codes.most_common(6)}")
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:40])
    assert not errors.records, [r.getMessage() for r in errors.records][:5]
    assert calls > 60_000


@pytest.mark.parametrize("depth", [65, 2000, 100_000])
def test_deeply_nested_values_are_refused_not_crashed_on(swept, depth):
    """Nesting no XenAPI type has (arrays in arrays ...) is refused while
    decoding, over real HTTP, on both protocols."""
    sim, session, errors = swept
    conn = http.client.HTTPConnection(sim.addresses[0], sim.port, timeout=30)
    try:
        body = json_call("VM.get_record", [session, "x"])
        body = body.replace(b'"x"', b"[" * depth + b"]" * depth)
        conn.request("POST", "/jsonrpc", body)
        doc = json.loads(conn.getresponse().read())
        assert doc["error"]["message"] == "INTERNAL_ERROR"
        assert doc["error"]["data"][0].startswith("JSON-RPC request"), doc
        nested = "<value><array><data>" * depth + "</data></array></value>" * depth
        conn.request("POST", "/", xml_call("VM.get_record", [session, Raw(nested)]))
        assert xml_error(conn.getresponse().read())[0] == "XMLRPC_UNMARSHAL_FAILURE"
    finally:
        conn.close()
    assert not errors.records


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_json_numbers_json_does_not_have_are_refused(swept, token):
    sim, session, errors = swept
    conn = http.client.HTTPConnection(sim.addresses[0], sim.port, timeout=30)
    try:
        body = b'{"jsonrpc": "2.0", "method": "pool.get_all", "params": [], "id": ' + token + b"}"
        conn.request("POST", "/jsonrpc", body)
        raw = conn.getresponse().read()
    finally:
        conn.close()
    doc = json.loads(raw, parse_constant=lambda c: pytest.fail(f"{c} in the answer"))
    assert doc["error"]["data"] == ["JSON-RPC request is not valid JSON"]


def test_async_variants_end_their_tasks_with_declared_errors(swept):
    """Async.<message> for every target, a wrong-ish value in its first
    parameter: the call answers a task (or a declared error at once), and
    every task ends without INTERNAL_ERROR."""
    sim, session, errors = swept
    model = sim.model
    refs = current_refs(sim, session)
    tasks, problems = [], []
    for msg in targets(sim):
        base = [plausible(p.type, refs, model) for p in msg.params[1:]]
        body = xml_call(f"Async.{msg.wire_name}", [session, "OpaqueRef:NULL", *base[1:]])
        (env,), _ = xmlrpc.client.loads(
            rpc_answer.answer(sim.dispatcher, sim.master_ref, body, rpc_answer.XMLRPC))
        if env["Status"] == "Success":
            tasks.append((msg.wire_name, env["Value"]))
        elif why := problem(env["ErrorDescription"], model.errors):
            problems.append(f"Async.{msg.wire_name}: {why}")
    assert len(tasks) > 500
    proxy = xmlrpc.client.ServerProxy(sim.url)
    deadline = time.monotonic() + 60
    for name, task in tasks:
        while True:
            rec = proxy.task.get_record(session, task)["Value"]
            if rec["status"] not in ("pending", "cancelling") or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        if rec["status"] in ("pending", "cancelling"):
            problems.append(f"Async.{name}: task still {rec['status']}")
        elif rec["status"] == "failure" and (why := problem(rec["error_info"], model.errors)):
            problems.append(f"Async.{name}: {why}")
    proxy("close")()
    assert not problems, "\n".join(problems[:40])
    assert not errors.records, [r.getMessage() for r in errors.records][:5]
