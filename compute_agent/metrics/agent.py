"""The agent's own metrics, on a registry of the agent's (REGISTRY), with
the hooks the rest of the code calls:

- ``count_rpc(method, outcome)``       rpc/server.py, per request
- ``task_wait(operation, seconds)``    compute/task_listener.py, per dom0 task
- ``count_event_stream_reconnect()``   the XenAPI driver, per reconnect
- ``watch_engine(engine)``             counts DBAPI errors of a SQLAlchemy engine
- ``count_image_bytes(n, direction)``  image transfers (the images code calls
                                       it as bytes go by: download, upload)

Operations in flight are read at scrape time from the manager
(``InFlightCollector``), so no code path has to remember to decrement.
Metric names follow Prometheus conventions: a ``compute_agent_`` prefix,
units in the name, ``_total`` on counters.
"""

from __future__ import annotations

from collections import Counter as TallyCounter
from collections.abc import Callable, Iterator

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

RPC_REQUESTS = Counter(
    "compute_agent_rpc_requests_total",
    "RPC requests the agent answered, by method and outcome (success, error: a "
    "structured error, internal_error: an unexpected exception).",
    ["method", "outcome"], registry=REGISTRY)
TASK_WAIT = Histogram(
    "compute_agent_task_wait_seconds",
    "Seconds from starting a dom0 task to seeing it end, by the operation it served.",
    ["operation"], registry=REGISTRY,
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800))
EVENT_STREAM_RECONNECTS = Counter(
    "compute_agent_event_stream_reconnects_total",
    "Times the connection to dom0 (event stream or sessions) had to be re-established.",
    registry=REGISTRY)
DATABASE_ERRORS = Counter(
    "compute_agent_database_errors_total",
    "Errors the database driver raised, by exception class.",
    ["error"], registry=REGISTRY)
IMAGE_BYTES = Counter(
    "compute_agent_image_bytes_transferred_total",
    "Image bytes moved between image sources and dom0, by direction (download, upload).",
    ["direction"], registry=REGISTRY)


def count_rpc(method: str, outcome: str) -> None:
    RPC_REQUESTS.labels(method=method, outcome=outcome).inc()


def task_wait(operation: str, seconds: float) -> None:
    TASK_WAIT.labels(operation=operation or "unknown").observe(max(0.0, seconds))


def count_event_stream_reconnect() -> None:
    EVENT_STREAM_RECONNECTS.inc()


def count_image_bytes(n: int, direction: str = "download") -> None:
    """Hook for the image code: call with each chunk's size as it streams."""
    if n > 0:
        IMAGE_BYTES.labels(direction=direction).inc(n)


def _on_db_error(context: sa.engine.ExceptionContext) -> None:
    error = context.sqlalchemy_exception or context.original_exception
    DATABASE_ERRORS.labels(error=type(error).__name__).inc()


def watch_engine(engine: sa.engine.Engine) -> None:
    """Count the engine's DBAPI errors (every backend), once per engine."""
    if not sa.event.contains(engine, "handle_error", _on_db_error):
        sa.event.listen(engine, "handle_error", _on_db_error)


class InFlightCollector(Collector):
    """compute_agent_operations_in_flight{request}: read from ``names()``,
    which gives '<request>-<instance uuid>' per running operation."""

    def __init__(self, names: Callable[[], list[str]]):
        self.names = names

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "compute_agent_operations_in_flight",
            "Operations (requests on instances) running now, by request.", labels=["request"])
        tally = TallyCounter(name.rsplit("-", 5)[0] for name in self.names())
        for request, n in sorted(tally.items()):
            family.add_metric([request], n)
        yield family
