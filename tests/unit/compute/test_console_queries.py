"""The manager's RPC 1.5 queries (compute/consoles.py and the metrics poll)
with the fake driver and a real SQLite database: URL and token shape,
argument checks, wrong host, deleted and stopped instances, a driver that
cannot, and the periodic poll kept for the Prometheus collector."""

from __future__ import annotations

import urllib.parse
import uuid as uuidlib

import pytest

from compute_agent import exceptions
from compute_agent.compute.consoles import ConsoleQueries
from compute_agent.console.tokens import ConsoleTokens
from compute_agent.context import new_context
from compute_agent.driver.base import ComputeDriver
from tests.unit.test_manager import build, settle


def test_vnc_console_gives_a_one_time_url_for_the_proxy(manager, agent_db, override):
    override("novncproxy_base_url", "https://consoles.example.org/vnc_lite.html?autoconnect=1",
             group="console")
    uuid = build(manager)
    console = manager.get_vnc_console(new_context(), uuid)
    assert console["protocol"] == "vnc" and console["instance_uuid"] == uuid
    url = urllib.parse.urlsplit(console["url"])
    assert (url.scheme, url.netloc, url.path) == ("https", "consoles.example.org",
                                                  "/vnc_lite.html")
    query = dict(urllib.parse.parse_qsl(url.query))
    assert query["autoconnect"] == "1"
    assert query["path"] == f"websockify?token={console['token']}"
    claim = ConsoleTokens(agent_db).claim(console["token"])
    assert claim["instance_uuid"] == uuid and claim["host"] == "test-host"
    assert claim["console_location"].startswith("http://fake-dom0.invalid/console?uuid=")


def test_console_queries_check_the_instance(manager, agent_db):
    ctxt = new_context()
    with pytest.raises(exceptions.InstanceNotFound):
        manager.get_vnc_console(ctxt, str(uuidlib.uuid4()))
    with pytest.raises(exceptions.InvalidInput):
        manager.get_diagnostics(ctxt, "not-a-uuid")
    other = str(uuidlib.uuid4())
    agent_db.create_instance({"uuid": other, "name": "x", "host": "another-host"})
    with pytest.raises(exceptions.ComputeAgentError) as e:
        manager.get_console_output(ctxt, other)
    assert e.value.code == "INSTANCE_WRONG_HOST"

    uuid = build(manager)
    manager.stop_instance(ctxt, uuid)
    settle(manager)
    with pytest.raises(exceptions.ConsoleNotAvailable):
        manager.get_vnc_console(ctxt, uuid)
    with pytest.raises(exceptions.InstanceNotRunning):
        manager.get_diagnostics(ctxt, uuid)
    manager.terminate_instance(ctxt, uuid)
    settle(manager)
    with pytest.raises(exceptions.InstanceNotFound):
        manager.get_console_output(ctxt, uuid)


@pytest.mark.parametrize("bad", [0, -3, 10001, True, "5", 2.5])
def test_tail_length_is_checked(manager, bad):
    uuid = build(manager)
    with pytest.raises(exceptions.InvalidInput) as e:
        manager.get_console_output(new_context(), uuid, tail_length=bad)
    assert e.value.params[0] == "tail_length"


def test_console_output_tail(manager):
    uuid = build(manager)
    full = manager.get_console_output(new_context(), uuid)
    assert full["output"].endswith("vm login:\n") and not full["truncated"]
    last = manager.get_console_output(new_context(), uuid, tail_length=1)
    assert last == {"instance_uuid": uuid, "output": "vm login:\n",
                    "truncated": len(full["output"].splitlines()) > 1}


def test_a_driver_without_consoles_says_not_supported(agent_conf, agent_db):
    class Plain(ComputeDriver):
        pass

    agent_db.create_instance({"uuid": (uuid := str(uuidlib.uuid4())), "name": "p",
                              "host": "h", "vm_state": "active"})
    queries = ConsoleQueries(agent_conf, agent_db, Plain(), "h")
    for call in (queries.vnc_console, queries.console_output, queries.diagnostics):
        with pytest.raises(exceptions.ComputeAgentError) as e:
            call(uuid)
        assert e.value.code == "OPERATION_NOT_SUPPORTED"


def test_metrics_poll_keeps_the_latest_with_names(manager):
    uuid = build(manager, name="named-vm")
    assert manager.metrics.latest() is None
    manager.poll_metrics(new_context())
    latest = manager.metrics.latest()
    assert latest["host"] == "test-host" and latest["names"][uuid] == "named-vm"
    assert latest["sample"]["instances"][uuid]["cpu"]["count"] == 1
    diag = manager.get_diagnostics(new_context(), uuid)
    assert diag["name"] == "named-vm" and diag["host"] == "test-host"
