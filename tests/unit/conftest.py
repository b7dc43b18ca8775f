"""Fixtures for the agent-core unit tests: a real, migrated SQLite database
(copied from a template migrated once per session), the fake driver, and a
ComputeManager wired to both with a notifier that records what it sends."""

from __future__ import annotations

import shutil
import threading
import uuid as uuidlib
from typing import Any

import oslo_messaging
import pytest

from compute_agent import notifications
from compute_agent.conf import CONF
from compute_agent.db import migration
from compute_agent.db.api import Database
from compute_agent.driver.fake import FakeDriver
from compute_agent.manager import ComputeManager
from compute_agent.rpc import transport as rpc_transport
from compute_agent.rpc.rpcapi import ComputeAPI
from compute_agent.service import ComputeService

RPC_HOST = "rpc-host"


class RecordingNotifier(notifications.Notifier):
    """The real payload building, with sends recorded instead of published."""

    def __init__(self, host: str = "test-host"):
        super().__init__(None, host)
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    def _send(self, ctxt: Any, priority: str, event_type: str, payload: dict) -> None:
        self.sent.append((priority, event_type, payload))

    def event_types(self) -> list[str]:
        return [e for _, e, _ in self.sent]

    def data(self, event_type: str) -> dict[str, Any]:
        for _, e, payload in reversed(self.sent):
            if e == event_type:
                return payload["compute_agent_object.data"]
        raise AssertionError(f"no {event_type} in {self.event_types()}")


@pytest.fixture(scope="session")
def _agent_db_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("agent-db-template") / "template.sqlite"
    migration.upgrade(f"sqlite:///{path}")
    return str(path)


@pytest.fixture
def agent_db_url(_agent_db_template: str, tmp_path) -> str:
    path = tmp_path / "agent.sqlite"
    shutil.copy(_agent_db_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def agent_db(agent_db_url: str):
    db = Database(agent_db_url)
    yield db
    db.dispose()


@pytest.fixture
def agent_conf():
    """The global CONF, parsed with no files (defaults only)."""
    rpc_transport.register_opts(CONF)
    CONF([], project="compute-agent", default_config_files=[])
    yield CONF
    CONF.reset()


@pytest.fixture
def override(agent_conf):
    """``override(name, value, group=None)``: set an option for this test."""
    made: list[tuple[str, str | None]] = []

    def set_override(name: str, value: Any, group: str | None = None) -> None:
        made.append((name, group))
        agent_conf.set_override(name, value, group)

    yield set_override
    for name, group in made:
        agent_conf.clear_override(name, group)


@pytest.fixture
def fake_driver() -> FakeDriver:
    return FakeDriver()


@pytest.fixture
def notifier() -> RecordingNotifier:
    return RecordingNotifier()


@pytest.fixture
def manager(agent_conf, agent_db, fake_driver, notifier):
    mgr = ComputeManager(agent_conf, agent_db, driver=fake_driver, notifier=notifier,
                         host="test-host")
    mgr.init_host()
    yield mgr
    # Release anything a test left held, then wait for the threads.
    for gate in list(fake_driver._gates.values()):
        gate.release()
    mgr.wait_for_operations(timeout=10)


class NotificationEndpoint:
    def __init__(self):
        self.seen: list[tuple[str, str, dict]] = []
        self.cond = threading.Condition()

    def _record(self, priority, event_type, payload):
        with self.cond:
            self.seen.append((priority, event_type, payload))
            self.cond.notify_all()

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        self._record("INFO", event_type, payload)

    def error(self, ctxt, publisher_id, event_type, payload, metadata):
        self._record("ERROR", event_type, payload)

    def wait_for(self, event_type, timeout=10):
        with self.cond:
            return self.cond.wait_for(
                lambda: any(e == event_type for _, e, _ in self.seen), timeout)


@pytest.fixture
def rpc_env(agent_conf, override, agent_db_url):
    topic = f"compute-{uuidlib.uuid4().hex[:8]}"
    override("transport_url", "fake:///")
    override("host", RPC_HOST)
    override("compute_topic", topic)
    override("connection", agent_db_url, group="database")
    override("report_interval", 3600)
    override("driver", ["messagingv2"], group="oslo_messaging_notifications")
    override("topics", [f"notif-{topic}"], group="oslo_messaging_notifications")
    transport = rpc_transport.get_rpc_transport(agent_conf)
    listener_endpoint = NotificationEndpoint()
    listener = oslo_messaging.get_notification_listener(
        rpc_transport.get_notification_transport(agent_conf),
        [oslo_messaging.Target(topic=f"notif-{topic}")], [listener_endpoint])
    listener.start()
    driver = FakeDriver()
    svc = ComputeService(agent_conf, driver=driver, rpc_transport_obj=transport)
    svc.start()
    api = ComputeAPI(agent_conf, rpc_transport=transport, timeout=10)
    yield api, svc, driver, listener_endpoint
    svc.stop()
    listener.stop()
    listener.wait()
    rpc_transport.cleanup()
