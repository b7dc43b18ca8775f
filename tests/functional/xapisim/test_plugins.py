"""host.call_plugin on xapisim through the official SDK: the shipped echo
plugin (dispatch, callback into xapi, Failure passed through), xapi's
errors for missing and broken plugins, the scratch dom0 root, async calls
and cancellation, pool members and failed hosts."""

from __future__ import annotations

import json
import pathlib
import textwrap
import time

import pytest
import XenAPI
from simvm import failure, wait_task

from xapisim.server import DEFAULT_PLUGINS_DIR, Simulator

BROKEN = {
    # exits non-zero after talking on both streams
    "exits": """
        import sys
        print("partial output")
        print("it went wrong", file=sys.stderr)
        sys.exit(3)
    """,
    "garbage": """
        print("this is not XML-RPC")
    """,
    "not_a_string": """
        import XenAPIPlugin
        XenAPIPlugin.dispatch({"f": lambda session, args: 42})
    """,
    "fault": """
        import xmlrpc.client
        print(xmlrpc.client.dumps(xmlrpc.client.Fault(7, "bad things"), methodresponse=True))
    """,
    "crashes": """
        import XenAPIPlugin
        def f(session, args):
            raise KeyError("missing")
        XenAPIPlugin.dispatch({"f": f})
    """,
    "sleeps": """
        import time, XenAPIPlugin
        def f(session, args):
            time.sleep(float(args["seconds"]))
            return "woke"
        XenAPIPlugin.dispatch({"f": f})
    """,
    "writes": """
        import os, XenAPIPlugin
        def f(session, args):
            root = os.environ["XAPISIM_DOM0_ROOT"]
            path = os.path.join(root, "var", "run", "marker")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as out:
                out.write(args["text"])
            return os.getcwd()
        XenAPIPlugin.dispatch({"f": f})
    """,
    "local": """
        import XenAPI, XenAPIPlugin
        def f(session, args):
            # a plugin may open its own local session, as on a real dom0
            other = XenAPI.xapi_local()
            other.login_with_password("root", "password")
            try:
                return other.xenapi.pool.get_name_label(other.xenapi.pool.get_all()[0])
            finally:
                other.xenapi.session.logout()
        XenAPIPlugin.dispatch({"f": f})
    """,
}


@pytest.fixture
def plugins_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    d = tmp_path / "plugins"
    d.mkdir()
    (d / "echo").write_text((DEFAULT_PLUGINS_DIR / "echo").read_text())
    for name, body in BROKEN.items():
        (d / name).write_text("#!/usr/bin/env python\n" + textwrap.dedent(body))
    (d / "subdir").mkdir()
    return d


@pytest.fixture
def psim(plugins_dir: pathlib.Path):
    sim = Simulator(hosts=2, task_duration=0.01, plugins_dir=str(plugins_dir)).start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def px(psim):
    session = XenAPI.Session(psim.url)
    session.xenapi.login_with_password("root", "password", "2.0", "plugin-tests")
    try:
        yield session.xenapi
    finally:
        try:
            session.xenapi.session.logout()
        except Exception:
            pass


def test_shipped_echo_plugin(sim, xapi):
    x = xapi.xenapi
    host = sim.master_ref
    assert json.loads(x.host.call_plugin(host, "echo", "echo", {"a": "1", "b": "two"})) == {
        "a": "1", "b": "two"}
    # the plugin reads the dom0 inventory and asks xapi, with the caller's session
    assert x.host.call_plugin(host, "echo", "host_uuid", {}) == x.host.get_uuid(host)
    assert failure(x.host.call_plugin, host, "echo", "fail",
                   {"code": "MY_PLUGIN_ERROR", "message": "no luck"}) == [
        "MY_PLUGIN_ERROR", "no luck"]
    assert failure(x.host.call_plugin, host, "echo", "nope", {}) == [
        "UNKNOWN_XENAPI_PLUGIN_FUNCTION", "nope"]


def test_missing_plugin(psim, px):
    host = psim.master_ref
    for name in ("absent", "subdir", "../plugins/echo", "/bin/true"):
        assert failure(px.host.call_plugin, host, name, "f", {}) == [
            "XENAPI_MISSING_PLUGIN", name]


def test_broken_plugins(psim, px):
    host = psim.master_ref
    status, out, err = failure(px.host.call_plugin, host, "exits", "f", {})[1:]
    assert (status, out.strip(), err.strip()) == ("non-zero exit", "partial output",
                                                  "it went wrong")
    error = failure(px.host.call_plugin, host, "garbage", "f", {})
    assert error[:2] == ["XENAPI_PLUGIN_FAILURE", "failed to parse plugin output"]
    assert error[2].strip() == "this is not XML-RPC" and len(error) == 4
    error = failure(px.host.call_plugin, host, "not_a_string", "f", {})
    assert error[:2] == ["XENAPI_PLUGIN_FAILURE", "failed to parse plugin output"]
    assert failure(px.host.call_plugin, host, "fault", "f", {}) == [
        "XENAPI_PLUGIN_FAILURE", "fault", "7", "bad things"]
    assert failure(px.host.call_plugin, host, "crashes", "f", {}) == [
        "XENAPI_PLUGIN_FAILURE", "f", "KeyError", "'missing'"]


def test_plugin_runs_in_the_hosts_scratch_dom0_root(psim, px):
    member = next(h for h in px.host.get_all() if h != psim.master_ref)
    for host in (psim.master_ref, member):
        text = f"hello from {host}"
        cwd = px.host.call_plugin(host, "writes", "f", {"text": text})
        root = psim.state_dir / "dom0root" / px.host.get_uuid(host)
        assert pathlib.Path(cwd) == root
        assert (root / "var" / "run" / "marker").read_text() == text
        inventory = (root / "etc" / "xensource-inventory").read_text()
        assert f"INSTALLATION_UUID='{px.host.get_uuid(host)}'" in inventory


def test_plugin_on_a_member_calls_back_through_the_coordinator(psim, px):
    member = next(h for h in px.host.get_all() if h != psim.master_ref)
    assert px.host.call_plugin(member, "echo", "host_uuid", {}) == px.host.get_uuid(member)
    assert px.host.call_plugin(member, "local", "f", {}) == psim.pool_name


def test_async_plugin_call_and_cancel(psim, px):
    host = psim.master_ref
    task = px.Async.host.call_plugin(host, "sleeps", "f", {"seconds": "0.1"})
    assert wait_task(px, task) == "success"
    assert px.task.get_result(task) == "<value>woke</value>"
    task = px.Async.host.call_plugin(host, "sleeps", "f", {"seconds": "30"})
    time.sleep(0.3)
    start = time.monotonic()
    px.task.cancel(task)
    assert wait_task(px, task) == "cancelled"
    assert time.monotonic() - start < 5
    assert px.task.get_error_info(task) == ["TASK_CANCELLED", task]


def test_plugin_on_a_failed_host(psim, px):
    member = next(h for h in px.host.get_all() if h != psim.master_ref)
    psim.failed_hosts.add(member)
    try:
        assert failure(px.host.call_plugin, member, "echo", "echo", {}) == [
            "HOST_OFFLINE", member]
    finally:
        psim.failed_hosts.discard(member)


def test_plugin_timeout_kills_it(psim, px, monkeypatch):
    from xapisim import plugins

    monkeypatch.setattr(plugins, "PLUGIN_TIMEOUT", 0.5)
    error = failure(px.host.call_plugin, psim.master_ref, "sleeps", "f", {"seconds": "30"})
    assert error[:2] == ["XENAPI_PLUGIN_FAILURE", "signal: SIGKILL"]
