"""oslo.log set-up shared by the daemon, the demo and the client.

The default oslo.log formats already print ``[<global id> <request id> ...]``
and ``[instance: <uuid>]`` from the thread's request context; the agent binds
one to every request, every operation thread and every periodic run, so
every line that belongs to a request says which request and which instance.
"""

from __future__ import annotations

from oslo_config import cfg
from oslo_log import log as oslo_logging

# Chatty libraries: their INFO lines (connections, heartbeats) drown the agent's.
QUIET_LOGGERS = [
    "amqp=WARN",
    "amqplib=WARN",
    "kombu=WARN",
    "oslo.messaging=WARN",
    "oslo_messaging=WARN",
    "sqlalchemy=WARN",
    "alembic=WARN",
    "urllib3=WARN",
    "stevedore=WARN",
    "oslo_service=WARN",
    "cotyledon=WARN",
    "futurist=WARN",
]


def register_options(conf: cfg.ConfigOpts) -> None:
    """Register oslo.log's options (before parsing the command line)."""
    try:
        oslo_logging.register_options(conf)
    except cfg.ArgsAlreadyParsedError:
        pass


def setup_logging(conf: cfg.ConfigOpts, product: str = "compute-agent") -> None:
    levels = oslo_logging.get_default_log_levels()
    names = {entry.split("=")[0] for entry in QUIET_LOGGERS}
    levels = [e for e in levels if e.split("=")[0] not in names] + QUIET_LOGGERS
    oslo_logging.set_defaults(default_log_levels=levels)
    oslo_logging.setup(conf, product)
