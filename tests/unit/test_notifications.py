"""Notifications through oslo.messaging's own test driver: event types,
priorities and the versioned payload."""

from __future__ import annotations

import oslo_messaging
import pytest
from oslo_messaging.notify import _impl_test

from compute_agent import notifications
from compute_agent.context import new_context
from compute_agent.rpc import transport as rpc_transport


@pytest.fixture
def notifier(agent_conf, override):
    override("driver", ["test"], group="oslo_messaging_notifications")
    override("transport_url", "fake:///")
    transport = oslo_messaging.get_notification_transport(agent_conf)
    _impl_test.reset()
    yield notifications.Notifier(transport, "host-1")
    _impl_test.reset()
    transport.cleanup()


def sent():
    return _impl_test.NOTIFICATIONS


def test_action_phases(notifier):
    ctxt = new_context()
    inst = {"uuid": "u-1", "vm_state": "active"}
    notifier.action(ctxt, "power_on", notifications.START, inst)
    notifier.action(ctxt, "power_on", notifications.ERROR, inst,
                    {"code": "VM_BAD_POWER_STATE", "params": ["a"], "message": "m"})
    (c1, msg1, prio1, _), (c2, msg2, prio2, _) = sent()
    assert (msg1["event_type"], prio1) == ("instance.power_on.start", "INFO")
    assert (msg2["event_type"], prio2) == ("instance.power_on.error", "ERROR")
    assert msg1["publisher_id"] == "compute-agent.host-1"
    assert c1["request_id"] == ctxt.request_id
    payload = msg2["payload"]
    assert payload["compute_agent_object.name"] == "InstanceActionPayload"
    assert payload["compute_agent_object.version"] == "1.0"
    assert payload["compute_agent_object.namespace"] == "compute_agent"
    assert payload["compute_agent_object.data"] == {
        "instance": inst, "action": "power_on", "phase": "error",
        "request_id": ctxt.request_id, "host": "host-1",
        "fault": {"code": "VM_BAD_POWER_STATE", "params": ["a"], "message": "m"}}


def test_power_state_update(notifier):
    notifier.power_state_update(new_context(), {"uuid": "u"}, 1, "active", "halted")
    (_, msg, prio, _), = sent()
    assert (msg["event_type"], prio) == ("instance.power_state.update", "INFO")
    data = msg["payload"]["compute_agent_object.data"]
    assert (data["old_power_state"], data["old_vm_state"], data["reason"]) == (1, "active",
                                                                               "halted")


def test_sending_keeps_the_threads_context(notifier):
    ctxt = new_context().for_instance("u-9")
    ctxt.update_store()
    notifier.action(ctxt, "reboot", notifications.START, None)
    from compute_agent.context import current

    assert current() is ctxt


def test_disabled_notifier_is_silent():
    quiet = notifications.Notifier(None, "h")
    quiet.action(new_context(), "reboot", notifications.END, None)
    assert not quiet.enabled


def test_register_opts_allows_overrides_before_any_transport(agent_conf):
    rpc_transport.register_opts(agent_conf)
    assert agent_conf.oslo_messaging_notifications.driver == []
