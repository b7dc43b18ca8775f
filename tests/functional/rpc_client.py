"""The client side of RPC for the functional tests, over the real broker.

- :class:`Rpc`: ComputeAPI over RabbitMQ on an exchange and topics of its
  own, optionally listening to the agents' notifications; on close it
  deletes the queues and the exchange it made the broker keep.
- :class:`Notifications`: what the agents notified, and waiting for one.
- :func:`client_conf`: the options a ComputeAPI client needs.

It builds on harness.py (the broker's URL, the bounds); harness.py, the
processes, needs none of it.
"""

from __future__ import annotations

import contextlib
import threading
import uuid as uuidlib
from collections.abc import Callable

import oslo_messaging
import pytest
from oslo_config import cfg

from compute_agent.conf import default as default_opts
from compute_agent.rpc import transport as rpc_transport
from compute_agent.rpc.rpcapi import ComputeAPI
from tests.functional.harness import RABBIT, SETTLE_S


class Notifications:
    """Notifications the agents sent, as (event_type, payload data)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict]] = []
        self.cond = threading.Condition()

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        with self.cond:
            self.seen.append((event_type, payload.get("compute_agent_object.data", payload)))
            self.cond.notify_all()

    error = info

    def of(self, event_type: str, uuid: str) -> list[dict]:
        """The notifications ``event_type`` about instance ``uuid`` so far."""
        with self.cond:
            return [d for e, d in self.seen
                    if e == event_type and (d.get("instance") or {}).get("uuid") == uuid]

    def wait_for(self, event_type: str, match: Callable[[dict], bool] | str,
                 timeout: float = SETTLE_S) -> dict:
        """The first ``event_type`` notification ``match`` accepts (a
        predicate on its data, or an instance uuid); fail at the deadline."""
        def accept(d: dict) -> bool:
            if callable(match):
                return match(d)
            return (d.get("instance") or {}).get("uuid") == match

        def found() -> dict | None:
            return next((d for e, d in self.seen if e == event_type and accept(d)), None)

        with self.cond:
            if not self.cond.wait_for(lambda: found() is not None, timeout):
                pytest.fail(f"no {event_type} notification within {timeout} s; saw "
                            f"{[e for e, _ in self.seen][-20:]}")
            return found()  # type: ignore[return-value]


def client_conf(exchange: str, topic: str, url: str = RABBIT) -> cfg.ConfigOpts:
    """The options a ComputeAPI client needs, on ``exchange`` and ``topic``."""
    conf = cfg.ConfigOpts()
    default_opts.register_opts(conf)
    rpc_transport.register_opts(conf)
    conf([], project="compute-agent-test", default_config_files=[])
    conf.set_override("transport_url", url)
    conf.set_override("control_exchange", exchange)
    conf.set_override("compute_topic", topic)
    return conf


class Rpc:
    """ComputeAPI on an exchange and topic named ``<prefix>_<tag>``,
    ``<prefix>_compute_<tag>`` (and ``<prefix>_notify_<tag>`` for the
    notifications); the broker objects they imply are deleted on close().
    Append each agent's host to ``hosts`` so its queue is deleted too."""

    def __init__(self, prefix: str, tag: str | None = None, with_notifications: bool = False,
                 timeout: int = 15, url: str = RABBIT):
        tag = tag or uuidlib.uuid4().hex[:10]
        self.url = url
        self.exchange = f"{prefix}_{tag}"
        self.topic = f"{prefix}_compute_{tag}"
        self.notify_topic = f"{prefix}_notify_{tag}" if with_notifications else None
        self.hosts: list[str] = []
        self.conf = client_conf(self.exchange, self.topic, url)
        self.transport = oslo_messaging.get_rpc_transport(
            self.conf, allowed_remote_exmods=["compute_agent.rpc.errors"])
        self.api = ComputeAPI(self.conf, rpc_transport=self.transport, timeout=timeout)
        self.notes = Notifications()
        self._listener = None
        if self.notify_topic:
            self._listener = oslo_messaging.get_notification_listener(
                oslo_messaging.get_notification_transport(self.conf),
                [oslo_messaging.Target(topic=self.notify_topic)], [self.notes])
            self._listener.start()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener.wait()
        self.transport.cleanup()
        self._delete_broker_objects()

    def _delete_broker_objects(self) -> None:
        """The RPC and notification queues are durable: without this every
        run would leave them (and the exchange) in the broker."""
        import kombu

        queues = [self.topic] + [f"{self.topic}.{h}" for h in self.hosts]
        if self.notify_topic:
            queues += [f"{self.notify_topic}.{p}" for p in ("info", "error", "warn", "debug",
                                                            "critical", "audit", "sample")]
        # kombu names the transport amqp://, oslo.messaging rabbit://.
        url = "amqp://" + self.url.split("://", 1)[1]
        try:
            with kombu.Connection(url, connect_timeout=5) as conn:
                channel = conn.channel()
                for name in queues:
                    with contextlib.suppress(Exception):
                        channel.queue_delete(name)
                with contextlib.suppress(Exception):
                    channel.exchange_delete(self.exchange)
        except Exception:  # housekeeping only: never fail a test over it
            pass
