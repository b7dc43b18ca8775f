"""The /metrics HTTP endpoint on [metrics] listen (prometheus_client's
server, in a thread of its own), and the registration of the scrape-time
collectors for one agent process."""

from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.registry import Collector

from compute_agent import exceptions
from compute_agent.metrics.agent import REGISTRY

LOG = logging.getLogger(__name__)


def parse_listen(listen: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (address, port); INVALID_INPUT otherwise."""
    host, sep, port = listen.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise exceptions.InvalidInput("metrics.listen", "must be host:port, e.g. 127.0.0.1:9180")
    return host, int(port)


class Exporter:
    def __init__(self, listen: str, collectors: list[Collector]):
        self.address = parse_listen(listen)
        self.collectors = collectors
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> Exporter:
        for c in self.collectors:
            REGISTRY.register(c)
        host, port = self.address
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=REGISTRY)
        except BaseException:
            self.stop()
            raise
        LOG.info("Prometheus metrics at http://%s:%d/metrics", host, port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for c in self.collectors:
            try:
                REGISTRY.unregister(c)
            except KeyError:
                pass
