"""Versioned notifications for every instance action's start, end and error.

Sent with oslo.messaging's Notifier, so driver, topics and transport come from
``[oslo_messaging_notifications]`` (``driver = messagingv2`` and ``topics =
versioned_notifications`` to publish on RabbitMQ; the default driver sends
nothing).

event_type ``instance.<action>.<phase>`` with phase ``start`` / ``end``
(priority INFO) or ``error`` (priority ERROR); ``instance.power_state.update``
(INFO) when the hypervisor changes an instance's power state on its own. The payload is a
versioned object::

    {"compute_agent_object.name": "InstanceActionPayload",
     "compute_agent_object.namespace": "compute_agent",
     "compute_agent_object.version": "1.0",
     "compute_agent_object.data": {
         "instance": {<instance dict as get_instance returns it>},
         "action": "power_on", "phase": "start", "request_id": "req-...",
         "host": "<agent host>", "fault": null | {"code", "params", "message"}}}
"""

from __future__ import annotations

import logging
from typing import Any

import oslo_messaging
from oslo_context import context as oslo_context

from compute_agent.rpc.serializer import JsonPayloadSerializer

LOG = logging.getLogger(__name__)

NAMESPACE = "compute_agent"
ACTION_PAYLOAD = ("InstanceActionPayload", "1.0")
POWER_STATE_PAYLOAD = ("InstancePowerStatePayload", "1.0")

START = "start"
END = "end"
ERROR = "error"

# Request name -> notification action name.
ACTIONS = {
    "build": "create",
    "start": "power_on",
    "stop": "power_off",
    "reboot": "reboot",
    "terminate": "delete",
    "snapshot": "snapshot",
    "cancel": "cancel",
    "pause": "pause",
    "unpause": "unpause",
    "suspend": "suspend",
    "resume": "resume",
    "rescue": "rescue",
    "unrescue": "unrescue",
    "resize": "resize",
    "confirm_resize": "resize_confirm",
    "revert_resize": "resize_revert",
    "live_migrate": "live_migration",
    "migrate": "migration",
}


def versioned(name_version: tuple[str, str], data: dict[str, Any]) -> dict[str, Any]:
    name, version = name_version
    return {
        f"{NAMESPACE}_object.name": name,
        f"{NAMESPACE}_object.namespace": NAMESPACE,
        f"{NAMESPACE}_object.version": version,
        f"{NAMESPACE}_object.data": data,
    }


class Notifier:
    """Sends the agent's notifications; never raises (a lost notification
    must not fail the operation it reports)."""

    def __init__(self, transport: oslo_messaging.Transport | None, host: str):
        self.host = host
        self._notifier = None
        if transport is not None:
            self._notifier = oslo_messaging.Notifier(
                transport,
                publisher_id=f"compute-agent.{host}",
                serializer=JsonPayloadSerializer(),
            )

    @property
    def enabled(self) -> bool:
        return self._notifier is not None and self._notifier.is_enabled()

    def action(
        self,
        ctxt: Any,
        action: str,
        phase: str,
        instance: dict[str, Any] | None,
        fault: dict[str, Any] | None = None,
    ) -> None:
        """``action`` is the notification action (e.g. 'power_on'), ``phase``
        one of START, END, ERROR."""
        data = {
            "instance": instance,
            "action": action,
            "phase": phase,
            "request_id": getattr(ctxt, "request_id", None),
            "host": self.host,
            "fault": fault,
        }
        event_type = f"instance.{action}.{phase}"
        self._send(ctxt, "error" if phase == ERROR else "info", event_type,
                   versioned(ACTION_PAYLOAD, data))

    def power_state_update(
        self,
        ctxt: Any,
        instance: dict[str, Any],
        old_power_state: int | None,
        old_vm_state: str | None,
        reason: str | None,
    ) -> None:
        """``instance.power_state.update``: the hypervisor changed the
        instance's power state without the agent asking (event-driven sync)."""
        data = {
            "instance": instance,
            "old_power_state": old_power_state,
            "old_vm_state": old_vm_state,
            "reason": reason,
            "host": self.host,
        }
        self._send(ctxt, "info", "instance.power_state.update",
                   versioned(POWER_STATE_PAYLOAD, data))

    def _send(self, ctxt: Any, priority: str, event_type: str, payload: dict[str, Any]) -> None:
        if self._notifier is None:
            return
        # oslo.messaging builds a redacted copy of the context, which rebinds
        # the thread's current context; keep ours for the log lines that follow.
        bound = oslo_context.get_current()
        try:
            getattr(self._notifier, priority)(ctxt or {}, event_type, payload)
        except Exception:
            LOG.exception("Could not send notification %s", event_type)
        finally:
            if bound is not None:
                bound.update_store()
            else:
                oslo_context._request_store.context = None
