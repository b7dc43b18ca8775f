"""oslo.log set-up shared by the daemon, the demo and the client.

The default oslo.log formats already print ``[<global id> <request id> ...]``
and ``[instance: <uuid>]`` from the thread's request context; the agent binds
one to every request, every operation thread and every periodic run, so
every line that belongs to a request says which request and which instance.
"""

from __future__ import annotations

import logging
import re

from oslo_config import cfg
from oslo_log import log as oslo_logging

# Longest message a log line carries (the rest is cut, with a mark).
MAX_MESSAGE = 16 * 1024
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_NEWLINE = re.compile("\r\n|\r|\n")

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


class OneLineFilter(logging.Filter):
    """Every record is one line of bounded length: line breaks and other
    control characters in the message become visible escapes, so that no
    value a caller or dom0 sent can forge a log line or flood the log
    (tracebacks, formatted apart from the message, keep their lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = f"{record.msg!r} {record.args!r}"
        clean = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}",
                             _NEWLINE.sub(lambda m: "\\n", message))
        if len(clean) > MAX_MESSAGE:
            clean = clean[:MAX_MESSAGE] + f"... [{len(clean) - MAX_MESSAGE} more characters]"
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


class BadMessageFilter(logging.Filter):
    """oslo.messaging skips a message it cannot decode (not JSON, a wrong
    envelope) with a full traceback at ERROR. Nothing is wrong with the
    agent then, and anyone who can publish could fill the log with them:
    one WARNING line each, with the error's type and first line."""

    LOGGER = "oslo.messaging._drivers.impl_rabbit"
    REPLY_LOGGER = "oslo_messaging._drivers.amqpdriver"

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("The reply %(msg_id)s failed to send"):
            # The caller went away (its reply queue is gone): its business.
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        elif str(record.msg).startswith("Failed to process message") and record.exc_info:
            exc = record.exc_info[1]
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            record.msg = "Skipped an undecodable RPC message: %s: %s"
            record.args = (type(exc).__name__, first)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def install_filter(logger: logging.Logger | None = None) -> None:
    """Put OneLineFilter on every handler of ``logger`` (the root logger)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, OneLineFilter) for f in handler.filters):
            handler.addFilter(OneLineFilter())


def setup_logging(conf: cfg.ConfigOpts, product: str = "compute-agent") -> None:
    levels = oslo_logging.get_default_log_levels()
    names = {entry.split("=")[0] for entry in QUIET_LOGGERS}
    levels = [e for e in levels if e.split("=")[0] not in names] + QUIET_LOGGERS
    oslo_logging.set_defaults(default_log_levels=levels)
    oslo_logging.setup(conf, product)
    install_filter()
    for name in (BadMessageFilter.LOGGER, BadMessageFilter.REPLY_LOGGER):
        logger = logging.getLogger(name)
        if not any(isinstance(f, BadMessageFilter) for f in logger.filters):
            logger.addFilter(BadMessageFilter())
