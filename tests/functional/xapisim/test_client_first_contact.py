"""What a third-party XenAPI client meets first, over real HTTP with the
official SDK and a plain JSON-RPC client: system.listMethods, strict
``<base64>`` values, xapi's check that every parameter is UTF-8 text XML
can carry, and host plugins given arguments no process could receive."""

from __future__ import annotations

import base64
import http.client
import urllib.parse
import xmlrpc.client

import pytest
import XenAPI

from xapisim import plugins
from xapisim.server import Simulator

ROOT, PASSWORD = "root", "password"


def _methods_over_xmlrpc(sim: Simulator) -> list[str]:
    proxy = xmlrpc.client.ServerProxy(sim.url)
    try:
        env = proxy.system.listMethods()
    finally:
        proxy("close")()
    assert env["Status"] == "Success", env
    return env["Value"]


def test_list_methods_names_every_served_message_in_xapis_spelling(sim, jsonrpc):
    methods = _methods_over_xmlrpc(sim)
    assert len(methods) == len(set(methods)) > 1000
    # explicit messages, implicit getters/setters/constructors, the logins
    for name in ("session.login_with_password", "session.logout", "event.from",
                 "event.next", "VM.start", "VM.get_record", "VM.set_name_label",
                 "VM.add_to_other_config", "VM.get_all_records_where", "VBD.create",
                 "VM_guest_metrics.get_os_version", "task.cancel", "host.call_plugin"):
        assert name in methods, name
    # as xapi: each once under its synchronous name; clients form Async.*
    assert not [m for m in methods if m.startswith("Async.")]
    # what it lists is what answers (the SDK's own dispatch, by name)
    sdk = XenAPI.Session(sim.url)
    sdk.xenapi.login_with_password(ROOT, PASSWORD, "2.0", "listMethods")
    try:
        for name in ("VM.get_all", "host.get_all", "pool.get_all", "SR.get_all"):
            assert name in methods
            cls, _, msg = name.partition(".")
            assert isinstance(getattr(getattr(sdk.xenapi, cls), msg)(), list)
    finally:
        sdk.xenapi.session.logout()
    # JSON-RPC 2.0 and 1.0 answer the same list; no session, any params
    answer = jsonrpc.call("system.listMethods")
    assert answer["result"] == methods
    answer = jsonrpc.call("system.listMethods", "ignored", version="1.0")
    assert answer["result"] == methods and answer["error"] is None


def test_list_methods_leaves_out_what_is_not_implemented(sim):
    methods = set(_methods_over_xmlrpc(sim))
    declared = {m.wire_name for c in sim.model.classes.values() for m in c.messages.values()}
    missing = sorted(declared - methods)
    assert missing, "every declared message is served?"
    proxy = xmlrpc.client.ServerProxy(sim.url)
    session = proxy.session.login_with_password(ROOT, PASSWORD)["Value"]
    # a declared message it leaves out answers NOT_IMPLEMENTED, not a result
    name = missing[0]
    n = len(sim.model.message(name).params) - 1
    env = getattr(proxy, name)(session, *([""] * n))
    assert env["Status"] == "Failure"
    assert env["ErrorDescription"][0] in ("NOT_IMPLEMENTED", "FIELD_TYPE_ERROR")
    proxy("close")()


def test_list_methods_on_a_pool_member():
    s = Simulator(hosts=2).start()
    try:
        proxy = xmlrpc.client.ServerProxy(s.urls[1])
        env = proxy.system.listMethods()
        assert env["Status"] == "Success" and "VM.start" in env["Value"]
        proxy("close")()
    finally:
        s.stop()


# -- <base64> -------------------------------------------------------------------------
def _raw_call(sim: Simulator, method: str, params_xml: str) -> dict:
    body = (f"<?xml version='1.0'?><methodCall><methodName>{method}</methodName>"
            f"<params>{params_xml}</params></methodCall>").encode()
    u = urllib.parse.urlsplit(sim.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=15)
    try:
        conn.request("POST", "/", body, {"Content-Type": "text/xml"})
        (env,), _ = xmlrpc.client.loads(conn.getresponse().read())
        return env
    finally:
        conn.close()


def _param(value_xml: str) -> str:
    return f"<param><value>{value_xml}</value></param>"


def test_base64_values_are_decoded_strictly_as_utf8_text(sim, xapi):
    x = xapi.xenapi
    pool = x.pool.get_all()[0]
    session = xapi._session
    text = "pool é ✓"
    b64 = base64.b64encode(text.encode()).decode()
    env = _raw_call(sim, "pool.set_name_label",
                    _param(session) + _param(pool) + _param(f"<base64>{b64}</base64>"))
    assert env == {"Status": "Success", "Value": ""}
    assert x.pool.get_name_label(pool) == text
    # xapi's decoder is strict: line breaks, bad padding, foreign characters
    # make the call unparsable, before anything runs
    for bad in (b64[:4] + "\n" + b64[4:], b64 + "=", "=" + b64[1:], "@@@@", "YQ"):
        env = _raw_call(sim, "pool.set_name_label",
                        _param(session) + _param(pool) + _param(f"<base64>{bad}</base64>"))
        assert env["Status"] == "Failure"
        assert env["ErrorDescription"][0] == "XMLRPC_UNMARSHAL_FAILURE", (bad, env)
    assert x.pool.get_name_label(pool) == text
    # bytes that are not UTF-8, or text XML cannot carry: INVALID_VALUE
    for raw, shown in ((b"\xff\xfe", "B64("), (b"a\x00b", "B64(ab)")):
        env = _raw_call(sim, "pool.set_name_label", _param(session) + _param(pool)
                        + _param(f"<base64>{base64.b64encode(raw).decode()}</base64>"))
        assert env["Status"] == "Failure"
        code, field, value = env["ErrorDescription"]
        assert (code, field) == ("INVALID_VALUE", "Invalid UTF-8 string in parameter")
        assert value.startswith(shown)
    assert x.pool.get_name_label(pool) == text


def test_parameters_xml_cannot_carry_are_invalid_values(sim, jsonrpc, xapi):
    x = xapi.xenapi
    pool = x.pool.get_all()[0]
    session = xapi._session
    for bad in ("a\x00b", "bell\x07", "lone \ud800 surrogate", "\ufffe"):
        answer = jsonrpc.call("pool.set_name_label", session, pool, bad)
        err = answer["error"]
        assert err["message"] == "INVALID_VALUE", answer
        assert err["data"][0] == "Invalid UTF-8 string in parameter"
        assert err["data"][1].startswith("S(")
    # inside maps and sets too, and before the session is even looked at
    answer = jsonrpc.call("VM.get_all_records_where", "OpaqueRef:bogus\x00", "true")
    assert answer["error"]["message"] == "INVALID_VALUE"
    answer = jsonrpc.call("pool.set_other_config", session, pool, {"k\x01": "v"})
    assert answer["error"]["data"] == ["Invalid UTF-8 string in parameter", "{k\x01:S(v)}"]
    # tab, newline and carriage return are ordinary text
    assert "error" not in jsonrpc.call("pool.set_name_label", session, pool, "a\tb\nc\r")
    assert jsonrpc.call("pool.get_name_label", session, pool)["result"] == "a\tb\nc\r"


# -- host plugins -----------------------------------------------------------------------
def test_plugin_argument_past_the_kernels_limit_is_a_plugin_failure(sim, xapi):
    """No process can receive a 200 KiB argument (Linux's MAX_ARG_STRLEN is
    128 KiB): xapi's forkexecd child fails its exec and exits non-zero."""
    x = xapi.xenapi
    with pytest.raises(XenAPI.Failure) as e:
        x.host.call_plugin(sim.master_ref, "echo", "echo", {"big": "x" * 200_000})
    code, status, out, err = e.value.details
    assert (code, status, out) == ("XENAPI_PLUGIN_FAILURE", "non-zero exit", "")
    assert err == "cannot start plugin echo: Argument list too long"
    # the host and its plugins are fine afterwards
    assert x.host.call_plugin(sim.master_ref, "echo", "echo", {"a": "1"}) == '{"a": "1"}'


def test_plugin_argument_with_a_nul_byte(sim, xapi, jsonrpc):
    # over the API xapi's dispatcher refuses it before any plugin runs ...
    answer = jsonrpc.call("host.call_plugin", xapi._session, sim.master_ref, "echo", "echo",
                          {"a": "x\x00y"})
    assert answer["error"]["message"] == "INVALID_VALUE"
    # ... and the plugin runner, asked directly, reports a plugin that
    # cannot start, never a Python exception
    with pytest.raises(plugins.XenAPIError) as e:
        plugins.call(sim, sim.master_ref, xapi._session, "echo", "echo", {"a": "x\x00y"})
    assert e.value.description == ["XENAPI_PLUGIN_FAILURE", "non-zero exit", "",
                                   "cannot start plugin echo: an argument contains a NUL byte"]
