"""The agent as an oslo.service service: RPC server, periodic jobs, shutdown.

``start`` builds everything (so nothing is shared across the fork of
oslo.service's threading launcher): database, driver, manager, RPC server on
topic ``[DEFAULT] compute_topic`` / server ``[DEFAULT] host``, and the
periodic jobs (heartbeat + host resources every ``report_interval``, power
state sync and the recovery backstop every ``sync_power_state_interval``,
the metrics poll every ``[metrics] rrd_interval``), and the Prometheus
endpoint on ``[metrics] listen`` when it is set.

``stop`` (SIGTERM) stops consuming RPC messages first, then lets running
operations finish and hands back builds that have not started, all within
``graceful_shutdown_timeout``; operations still running at the deadline keep
their dom0 tasks in tracked_tasks for the next start to resolve.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from oslo_service import opts as os_opts
from oslo_service import service as os_service

from compute_agent import context as ca_context
from compute_agent import exceptions, notifications
from compute_agent.db.api import Database
from compute_agent.exceptions import ComputeAgentError, HypervisorUnavailable
from compute_agent.manager import ComputeManager
from compute_agent.metrics import agent as agent_metrics
from compute_agent.metrics.exporter import Exporter
from compute_agent.metrics.rrd_collector import RrdCollector
from compute_agent.rpc import server as rpc_server
from compute_agent.rpc import transport as rpc_transport

LOG = logging.getLogger(__name__)

# Leave this much of graceful_shutdown_timeout for closing connections after
# the drain, so the launcher's hard deadline is never what ends the process.
SHUTDOWN_MARGIN_S = 3.0


class PeriodicJobs:
    """Runs jobs at fixed intervals on one thread (a green thread under
    eventlet). Each run gets its own admin context, so its log lines carry a
    request id. A failing job is logged and runs again next interval."""

    def __init__(self) -> None:
        self._jobs: list[tuple[str, float, Callable[[Any], Any]]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_run: dict[str, float] = {}

    def add(self, name: str, interval: float, fn: Callable[[Any], Any]) -> None:
        if interval and interval > 0:
            self._jobs.append((name, float(interval), fn))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="periodic-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        due = {name: time.monotonic() + interval for name, interval, _ in self._jobs}
        while not self._stop.is_set():
            now = time.monotonic()
            for name, interval, fn in self._jobs:
                if now >= due[name]:
                    self._run_one(name, fn)
                    due[name] = time.monotonic() + interval
            if not due:
                self._stop.wait()
                return
            self._stop.wait(max(0.0, min(due.values()) - time.monotonic()))

    def _run_one(self, name: str, fn: Callable[[Any], Any]) -> None:
        ctxt = ca_context.get_admin_context()
        ctxt.update_store()
        try:
            fn(ctxt)
            self.last_run[name] = time.monotonic()
        except HypervisorUnavailable as exc:
            # Expected while dom0 is down: one line, no traceback.
            LOG.warning("Periodic job %s skipped: %s", name, exc.message)
        except Exception:
            LOG.exception("Periodic job %s failed", name)
        finally:
            ca_context.clear_current()


class ComputeService(os_service.ServiceBase):
    """One compute agent. ``sd_notifier`` is a compute_agent.process.sdnotify.Notifier
    (a no-op one outside systemd)."""

    def __init__(self, conf: Any, sd_notifier: Any = None, executor: str | None = None,
                 driver: Any = None, rpc_transport_obj: Any = None):
        super().__init__()
        os_opts.register_service_opts(conf)  # graceful_shutdown_timeout, also without a launcher
        self.conf = conf
        self.sd = sd_notifier
        self.executor = executor
        self._driver = driver  # tests and the demo may hand in a driver object
        self._transport = rpc_transport_obj
        self.db: Database | None = None
        self.manager: ComputeManager | None = None
        self.rpc_server: Any = None
        self.periodic: PeriodicJobs | None = None
        self.exporter: Exporter | None = None
        self._watchdog: Any = None
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()

    # -- oslo.service API ---------------------------------------------------------

    def start(self) -> None:
        try:
            self._start()
        except Exception as exc:
            # The launcher prints this on stderr only; the log file (and the
            # journal) must say why the agent did not start too.
            LOG.critical("compute-agent cannot start: %s",
                         exc.message if isinstance(exc, ComputeAgentError)
                         else type(exc).__name__, exc_info=True)
            raise

    def _start(self) -> None:
        conf = self.conf
        self._stopped.clear()
        self.db = Database.from_conf(conf)
        self.db.check_migrated()
        transport = self._transport or rpc_transport.get_rpc_transport(conf)
        notifier = notifications.Notifier(
            rpc_transport.get_notification_transport(conf), conf.host)
        self.manager = ComputeManager(conf, self.db, driver=self._driver, notifier=notifier)
        self.manager.init_host()
        self.rpc_server = rpc_server.get_server(conf, transport, self.manager, self.executor)
        self.rpc_server.start()
        self.periodic = PeriodicJobs()
        self.periodic.add("report_host", conf.report_interval, self.manager.report_host)
        self.periodic.add("sync_power_states", conf.sync_power_state_interval,
                          self.manager.sync_power_states)
        self.periodic.add("recover", conf.sync_power_state_interval, self.manager.recover)
        if conf.image_cache.enabled:
            self.periodic.add("manage_image_cache", conf.image_cache.cleanup_interval,
                              self.manager.manage_image_cache)
        self.periodic.add("poll_metrics", conf.metrics.rrd_interval, self.manager.poll_metrics)
        self.periodic.start()
        self._start_exporter()
        LOG.info("compute-agent serving %s.%s (backend %s, driver %s)", conf.compute_topic,
                 conf.host, conf.concurrency_backend, type(self.manager.driver).__name__)
        if self.sd is not None:
            self.sd.ready(status=f"serving {conf.compute_topic}.{conf.host}")
            self._watchdog = self.sd.start_watchdog(healthy=self.healthy)

    def stop(self, graceful: bool = True) -> None:
        with self._stop_lock:
            if self._stopped.is_set() or self.manager is None:
                self._stopped.set()
                return
            if self.sd is not None:
                self.sd.stopping()
            LOG.info("Stopping: no new requests; draining running operations")
            if self.rpc_server is not None:
                self.rpc_server.stop()
            left = self.manager.shutdown(self._drain_budget())
            if left:
                LOG.warning("%d operations handed over to the next start: %s", len(left), left)
            if self.rpc_server is not None:
                self.rpc_server.wait()
            if self.periodic is not None:
                self.periodic.stop()
            if self.exporter is not None:
                self.exporter.stop()
                self.exporter = None
            if self.db is not None:
                self.db.dispose()
            if self._transport is None:
                rpc_transport.cleanup()
            if self._watchdog is not None:
                self._watchdog.stop()
            self.manager = None
            LOG.info("Stopped")
            self._stopped.set()

    def _start_exporter(self) -> None:
        """/metrics on [metrics] listen, if set; the agent serves without it
        when the address cannot be bound (logged)."""
        assert self.manager is not None and self.db is not None
        agent_metrics.watch_engine(self.db.engine)
        if not self.conf.metrics.listen:
            return
        manager = self.manager
        try:
            self.exporter = Exporter(self.conf.metrics.listen, [
                RrdCollector(manager.metrics.latest),
                agent_metrics.InFlightCollector(manager.operations_in_flight),
            ]).start()
        except (OSError, exceptions.ComputeAgentError) as exc:
            LOG.error("Cannot serve metrics on %s: %s", self.conf.metrics.listen, exc)
            self.exporter = None

    def wait(self) -> None:
        self._stopped.wait()

    def reset(self) -> None:
        # SIGHUP: oslo.config already re-read the mutable options; nothing here
        # caches them, so there is nothing heavy to redo.
        if self.sd is not None:
            self.sd.reloading()
            self.sd.ready()

    # -- helpers ------------------------------------------------------------------

    def healthy(self) -> bool:
        """For the systemd watchdog: the RPC server runs and the periodic
        report ran recently."""
        if self.manager is None or self.periodic is None or not self.periodic.alive:
            return False
        last = self.periodic.last_run.get("report_host")
        interval = self.conf.report_interval
        if last is None:
            return True  # first report not due yet
        return time.monotonic() - last < 3 * interval + 5

    def _drain_budget(self) -> float | None:
        timeout = self.conf.graceful_shutdown_timeout
        if not timeout:
            return None  # 0: wait for ever, as oslo.service means it
        return max(1.0, float(timeout) - min(SHUTDOWN_MARGIN_S, timeout * 0.2))
