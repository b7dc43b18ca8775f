"""The periodic metrics poll: once per [metrics] rrd_interval the driver
reads the host's metrics (for XenAPI one /rrd_updates request for the
whole host), and the result is kept with the instances' names for the
Prometheus collector (compute_agent.metrics.rrd_collector). A driver
without metrics (OPERATION_NOT_SUPPORTED) makes the poll a no-op; a dom0
that cannot be reached leaves the previous sample until it ages out.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.base import ComputeDriver

LOG = logging.getLogger(__name__)


class MetricsPoll:
    def __init__(self, db: Any, driver: ComputeDriver, host: str, interval: float):
        self.db = db
        self.driver = driver
        self.host = host
        self.interval = interval
        self.supported = True
        self._lock = threading.Lock()
        self._latest: dict[str, Any] | None = None

    def poll(self) -> dict[str, Any] | None:
        if not self.supported:
            return None
        try:
            sample = self.driver.poll_metrics()
        except NotImplementedError:
            self.supported = False
            LOG.info("The %s driver has no metrics", type(self.driver).__name__)
            return None
        except exceptions.ComputeAgentError as exc:
            LOG.warning("Metrics poll failed: %s", exc.message)
            return None
        names = {i["uuid"]: i["name"] for i in self.db.list_instances(host=self.host)}
        latest = {"sample": sample, "names": names, "host": self.host}
        with self._lock:
            self._latest = latest
        return latest

    def latest(self) -> dict[str, Any] | None:
        """The last sample, unless it is older than three intervals (a
        scrape must not show stale figures as current)."""
        with self._lock:
            latest = self._latest
        if latest is None or time.time() - latest["sample"]["sampled_at"] > 3 * self.interval:
            return None
        return latest
