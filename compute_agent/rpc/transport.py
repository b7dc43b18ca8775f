"""Transports and targets: one place that knows how the agent is addressed.

Every agent listens on exchange ``[DEFAULT] control_exchange`` (oslo.messaging's
option, default ``openstack``), topic ``[DEFAULT] compute_topic`` and server
``[DEFAULT] host``.
"""

from __future__ import annotations

import importlib
import threading

import oslo_messaging
import oslo_messaging.opts
from oslo_config import cfg

from compute_agent.rpc import errors

# Highest version the agent's endpoint implements (1.1 adds cancel_operation;
# 1.2 pause, suspend, rescue, resize, get_instance_actions, list paging;
# 1.3 snapshot_instance; 1.4 volumes, ports and the guest agent;
# 1.5 get_vnc_console, get_console_output and get_diagnostics;
# 1.6 migration, host maintenance and pools).
RPC_API_VERSION = "1.6"
# Version every client method of the original contract uses.
BASE_VERSION = "1.0"

_GLOBAL_ONLY_OPTS = (
    ("oslo_messaging._metrics.client", "oslo_messaging_metrics", "oslo_messaging_metrics"),
    ("oslo_messaging._tracing.client", "oslo_messaging_tracing", "oslo_messaging_tracing"),
    ("oslo_messaging.rpc.dispatcher", "_dispatcher_opts", None),
    ("oslo_messaging.rpc.client", "_client_opts", None),
)

_lock = threading.Lock()
_transports: dict[tuple[int, str | None], oslo_messaging.Transport] = {}
_notification_transports: dict[tuple[int, str | None], oslo_messaging.Transport] = {}


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register oslo.messaging's options (transport_url, control_exchange,
    rpc_response_timeout, [oslo_messaging_notifications], driver groups) on
    ``conf`` now rather than when the first transport is built, so they can
    be read or overridden before that."""
    for group, opts in oslo_messaging.opts.list_opts():
        conf.register_opts(opts, group=group)
    # oslo.messaging registers some groups on the global CONF only, yet reads
    # them from whatever ConfigOpts a client or server was given.
    for module, attr, group in _GLOBAL_ONLY_OPTS:
        try:
            opts = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            continue  # another oslo.messaging release: nothing to add
        conf.register_opts(opts, group=group)


# Seconds a reply waits for its caller's reply queue to exist before it is
# dropped ([oslo_messaging_rabbit] kombu_missing_consumer_retry_timeout,
# 60 s in oslo.messaging). A caller that is alive re-declares its reply
# queue within a second or two of a reconnect; one that is gone never
# will, and each reply to it held an executor thread for the whole
# timeout (80 such calls delayed a ping by 60 s).
REPLY_QUEUE_GRACE_S = 2


def set_agent_defaults(conf: cfg.ConfigOpts) -> None:
    """Register oslo.messaging's options and give the ones the agent tunes
    its defaults (a configuration file still overrides them)."""
    register_opts(conf)
    conf.set_default("kombu_missing_consumer_retry_timeout", REPLY_QUEUE_GRACE_S,
                     group="oslo_messaging_rabbit")


def get_rpc_transport(conf: cfg.ConfigOpts, url: str | None = None) -> oslo_messaging.Transport:
    """The RPC transport for ``url`` (default: [DEFAULT] transport_url), shared
    per config object and URL: a connection pool is expensive."""
    key = (id(conf), url)
    with _lock:
        transport = _transports.get(key)
        if transport is None:
            transport = oslo_messaging.get_rpc_transport(
                conf, url=url, allowed_remote_exmods=errors.ALLOWED_EXMODS
            )
            _transports[key] = transport
        return transport


def get_notification_transport(
    conf: cfg.ConfigOpts, url: str | None = None
) -> oslo_messaging.Transport:
    """Transport for notifications: [oslo_messaging_notifications]
    transport_url if set, else the RPC one."""
    key = (id(conf), url)
    with _lock:
        transport = _notification_transports.get(key)
        if transport is None:
            transport = oslo_messaging.get_notification_transport(conf, url=url)
            _notification_transports[key] = transport
        return transport


def cleanup() -> None:
    """Close every transport this module created (on shutdown, in tests)."""
    with _lock:
        items = list(_transports.values()) + list(_notification_transports.values())
        _transports.clear()
        _notification_transports.clear()
    for transport in items:
        transport.cleanup()


def server_target(conf: cfg.ConfigOpts) -> oslo_messaging.Target:
    return oslo_messaging.Target(
        topic=conf.compute_topic, server=conf.host, version=RPC_API_VERSION
    )


def client_target(conf: cfg.ConfigOpts, topic: str | None = None) -> oslo_messaging.Target:
    return oslo_messaging.Target(topic=topic or conf.compute_topic, version=BASE_VERSION)
