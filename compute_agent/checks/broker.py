"""Can the agent reach the message broker named by ``transport_url``?

For RabbitMQ this opens (and closes) a real AMQP connection with kombu, with
a short timeout and the TLS settings of ``[oslo_messaging_rabbit]``, to each
host of the URL. Other drivers are not probed.
"""

from __future__ import annotations

import ssl
from typing import Any

import kombu
import oslo_messaging
from oslo_config import cfg
from oslo_messaging import opts as messaging_opts

from compute_agent.checks import Result, failure, first_line, success, warning

NAME = "broker"
RABBIT_DRIVERS = ("rabbit", "kombu", "amqp")


def check(conf: cfg.ConfigOpts, timeout: float) -> Result:
    try:
        url = oslo_messaging.TransportURL.parse(conf)
    except oslo_messaging.InvalidTransportURL as exc:
        return failure(NAME, f"transport_url is invalid: {first_line(exc)}")
    driver = url.transport
    if driver == "fake":
        return warning(NAME, "transport_url is fake://: only clients inside the agent's own "
                             "process can reach it")
    if driver not in RABBIT_DRIVERS:
        return warning(NAME, f"transport driver {driver!r} is not checked")

    rabbit = _rabbit_group(conf)
    hosts = url.hosts or [oslo_messaging.TransportHost()]
    down: list[str] = []
    for host in hosts:
        shown = _shown(host)
        error = _connect(host, url.virtual_host, rabbit, timeout)
        if error:
            down.append(f"{shown}: {error}")
    names = ", ".join(_shown(h) for h in hosts)
    if not down:
        return success(NAME, f"connected to RabbitMQ at {names}")
    if len(down) == len(hosts):
        return failure(NAME, "cannot connect to RabbitMQ: " + "; ".join(down))
    return warning(NAME, f"{len(down)} of {len(hosts)} RabbitMQ hosts unreachable: "
                         + "; ".join(down))


def _rabbit_group(conf: cfg.ConfigOpts) -> Any:
    for group, opts in messaging_opts.list_opts():
        if group == "oslo_messaging_rabbit":
            conf.register_opts(opts, group=group)
    return conf.oslo_messaging_rabbit


def _shown(host: oslo_messaging.TransportHost) -> str:
    return f"{host.hostname or 'localhost'}:{host.port or 5672}"


def _ssl_params(rabbit: Any) -> Any:
    if not rabbit.ssl:
        return False
    params: dict[str, Any] = {}
    if rabbit.ssl_key_file:
        params["keyfile"] = rabbit.ssl_key_file
    if rabbit.ssl_cert_file:
        params["certfile"] = rabbit.ssl_cert_file
    if rabbit.ssl_ca_file:
        params["ca_certs"] = rabbit.ssl_ca_file
        params["cert_reqs"] = ssl.CERT_REQUIRED
    return params or True


def _connect(host: oslo_messaging.TransportHost, vhost: str | None, rabbit: Any,
             timeout: float) -> str | None:
    """None when an AMQP connection opened, else a one-line reason."""
    conn = kombu.Connection(
        hostname=host.hostname or "localhost",
        port=host.port or 5672,
        userid=host.username or "guest",
        password=host.password or "guest",
        virtual_host=vhost or "/",
        transport="pyamqp",
        ssl=_ssl_params(rabbit),
        connect_timeout=timeout,
        transport_options={"read_timeout": timeout, "write_timeout": timeout},
    )
    try:
        # One attempt, no back-off: a checker reports, the agent itself retries.
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0,
                               timeout=timeout, reraise_as_library_errors=False)
    except Exception as exc:  # kombu/amqp/socket/ssl errors: all mean "not usable"
        return _reason(exc, host.password)
    finally:
        conn.release()
    return None


def _reason(exc: BaseException, password: str | None) -> str:
    name = type(exc).__name__
    if name == "AccessRefused":
        text = "credentials refused"
    elif isinstance(exc, TimeoutError):
        text = "timed out"
    else:
        text = first_line(exc)
    if password:
        text = text.replace(password, "***")
    return text
