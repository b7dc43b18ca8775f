"""XenAPIDriver: the ComputeDriver for dom0s spoken to over XenAPI.

Wires the pieces together from ``[xenserver]`` and ``[tasks]`` options: a
session pool, a task runner with its waiter, storage, networking, VM
operations and host figures. Every public method that starts dom0 tasks
runs under an operation scope whose deadline is the operation's timeout.
The families of methods added later are mixins beside it: driver_lifecycle
(RPC 1.2), driver_devices (1.4), driver_consoles (1.5), driver_migration (1.6).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.base import ComputeDriver, InstanceInfo, Operation, TaskListener
from compute_agent.driver.task_status import TaskState
from compute_agent.driver.xenapi.consoles import Consoles
from compute_agent.driver.xenapi.devices import InstanceDevices
from compute_agent.driver.xenapi.driver_consoles import ConsoleMethods
from compute_agent.driver.xenapi.driver_devices import DeviceMethods
from compute_agent.driver.xenapi.driver_lifecycle import LifecycleMethods
from compute_agent.driver.xenapi.driver_migration import MigrationMethods
from compute_agent.driver.xenapi.first_connect import FirstConnect
from compute_agent.driver.xenapi.host import HostInfo
from compute_agent.driver.xenapi.host_metrics import HostMetrics
from compute_agent.driver.xenapi.image_cache import ImageCache
from compute_agent.driver.xenapi.image_disks import ImageDisks
from compute_agent.driver.xenapi.image_dom0 import Dom0ImageImporter
from compute_agent.driver.xenapi.image_import import ImageImporter, Importer
from compute_agent.driver.xenapi.migration import LiveMigrations
from compute_agent.driver.xenapi.network import Networking
from compute_agent.driver.xenapi.pause_suspend import PauseSuspend
from compute_agent.driver.xenapi.polling import PollingWaiter
from compute_agent.driver.xenapi.pool import PoolView
from compute_agent.driver.xenapi.pool_membership import PoolMembership
from compute_agent.driver.xenapi.rescue import Rescues
from compute_agent.driver.xenapi.resize import Resizes
from compute_agent.driver.xenapi.session import ConnectionSettings, SessionPool
from compute_agent.driver.xenapi.snapshots import Snapshots, Upload
from compute_agent.driver.xenapi.storage import Storage, parse_sr_filter
from compute_agent.driver.xenapi.task_waiter import TaskWaiter
from compute_agent.driver.xenapi.tasks import TaskRunner
from compute_agent.driver.xenapi.transport import TLSSettings
from compute_agent.driver.xenapi.vm_ops import VMOps
from compute_agent.driver.xenapi.watcher import TaskWatcher
from compute_agent.image.service import ImageService
from compute_agent.metrics import agent as agent_metrics

LOG = logging.getLogger(__name__)

# Several sessions notice one xapi restart; one reconnect call covers them.
RECONNECT_SETTLE = 0.5

def settings_from_conf(conf: Any) -> ConnectionSettings:
    xs = conf.xenserver
    if not xs.connection_url:
        raise exceptions.InvalidInput(
            "xenserver.connection_url", "must be set when compute_driver is xenapi"
        )
    return ConnectionSettings(
        url=xs.connection_url,
        username=xs.connection_username,
        password=xs.connection_password or "",
        login_timeout=float(xs.login_timeout),
        tls=TLSSettings(ca_file=xs.ca_file or None, insecure=bool(xs.insecure)),
    )


class XenAPIDriver(LifecycleMethods, DeviceMethods, ConsoleMethods, MigrationMethods,
                   ComputeDriver):
    """The XenAPI driver, configured by the ``conf`` it is given (its
    ``[xenserver]`` and ``[tasks]`` groups); it never reads a global."""

    def __init__(self, conf: Any, task_listener: TaskListener | None = None):
        super().__init__(task_listener)
        self.conf = conf
        self.pool: SessionPool | None = None
        self.runner: TaskRunner | None = None
        self.vmops: VMOps | None = None
        self.pause_suspend: PauseSuspend | None = None
        self.rescues: Rescues | None = None
        self.resizes: Resizes | None = None
        self.host_info: HostInfo | None = None
        self.devices: InstanceDevices | None = None
        self.pool_view: PoolView | None = None
        self.migrations: LiveMigrations | None = None
        self.membership: PoolMembership | None = None
        self.host: str | None = None
        self.watcher: TaskWatcher | None = None
        self.image_cache: ImageCache | None = None
        self.snapshots: Snapshots | None = None
        self.consoles: Consoles | None = None
        self.metrics: HostMetrics | None = None
        self.reconnect_listener: Callable[[], None] | None = None
        self._closed = threading.Event()
        self._reconnect_lock = threading.Lock()
        self._reconnect_pending = False
        self._sr_filter: Any = None
        self._first_connect = FirstConnect(
            self._connect, lambda: self._on_reconnect("first connection"), self._closed)

    # -- lifecycle -------------------------------------------------------------
    def init_host(self, host: str) -> None:
        """Connect to dom0. An unreachable dom0 is not fatal: the driver
        keeps trying in the background with backoff (``available`` is
        False meanwhile, every dom0 method raises HypervisorUnavailable) and
        calls the reconnect listener once dom0 answers, so recovery runs
        then. Bad settings (the SR filter, no URL) and refused credentials
        stay fatal."""
        self.host = host
        xs = self.conf.xenserver
        try:
            self._sr_filter = parse_sr_filter(xs.sr_matching_filter)
        except ValueError as e:
            raise exceptions.InvalidInput("xenserver.sr_matching_filter", str(e)) from None
        settings_from_conf(self.conf)  # a missing URL is a configuration error: fail now
        try:
            self._connect()
        except exceptions.HypervisorUnavailable as exc:
            self._first_connect.start(exc)

    @property
    def available(self) -> bool:
        return self.vmops is not None and not self._closed.is_set()

    def _connect(self) -> None:
        """Log in, check dom0 answers, and build the parts on the session pool."""
        assert self.host is not None
        host = self.host
        xs, tasks = self.conf.xenserver, self.conf.tasks
        pool = SessionPool(settings_from_conf(self.conf), xs.connection_concurrent)
        pool.coordinator.hooks.append(self._on_reconnect)
        try:
            # Fail now, with a clear error, if dom0 cannot be reached.
            pool.call("pool.get_all")
        except Exception:
            pool.close()
            raise
        if self._closed.is_set():  # stopped while connecting
            pool.close()
            return
        self.pool = pool
        waiter = self._make_waiter(pool, host)
        self.runner = TaskRunner(pool, waiter, self.task_listener, float(tasks.default_timeout))
        storage = Storage(pool, self.runner, self._sr_filter, host)
        images = ImageService.from_conf(self.conf)
        importer: Importer = (
            Dom0ImageImporter(pool, self.runner, images)
            if xs.image_handler == "dom0" else ImageImporter(pool, self.runner, images))
        self.image_cache = (ImageCache(pool, self.runner, importer, host)
                            if self.conf.image_cache.enabled else None)
        networking = Networking(pool)
        vmops = VMOps(
            pool, self.runner, storage, networking, host,
            xs.vm_template or "",
            cleanup_timeout=float(tasks.destroy_timeout),
            soft_reboot_timeout=float(tasks.soft_reboot_timeout),
            image_disks=ImageDisks(self.pool, self.runner, storage, images, importer,
                                   self.image_cache, host),
        )
        self.devices = InstanceDevices.on(pool, self.runner, vmops, storage, networking, host,
                                          self.conf)
        self.pause_suspend = PauseSuspend(self.runner, vmops)
        clean, cleanup = float(tasks.clean_shutdown_timeout), float(tasks.destroy_timeout)
        self.rescues = Rescues(pool, self.runner, vmops, storage, networking, host,
                               clean, cleanup)
        self.resizes = Resizes(pool, self.runner, vmops, storage, clean, cleanup)
        self.host_info = HostInfo(pool, storage)
        # One agent per pool host: it keeps its VMs and disks to its own host.
        self.pool_view = PoolView(pool, self.host_info.host_ref)
        storage.pool_view = self.pool_view
        vmops.host_ref = self.host_info.host_ref
        if self.watcher is not None:
            vmops.vm_cache = self.watcher.vm_records
        self.migrations = LiveMigrations(pool, self.runner, vmops, storage, networking,
                                         self.pool_view, host)
        self.membership = PoolMembership(pool, self.host_info, self.pool_view,
                                         self._pool_changed)
        # A token outlives any migration that may still use it.
        self.migrations.token_lifetime = 2.0 * float(tasks.live_migration_timeout)
        self.snapshots = Snapshots(pool, self.runner, host,
                                   chunk_size=self.conf.glance.chunk_size_kb * 1024,
                                   cleanup_timeout=float(tasks.destroy_timeout))
        self._remove_half_imported_images()
        self.consoles = Consoles(pool, vmops)
        metrics_conf = getattr(self.conf, "metrics", None)
        self.metrics = HostMetrics(
            pool, self.host_info, vmops, host,
            int(getattr(metrics_conf, "rrd_interval", 60)),
            str(getattr(metrics_conf, "rrd_format", "xml")))
        self.vmops = vmops  # last: once vmops is set, the driver is available
        LOG.info("XenAPI driver connected to %s (task tracking: %s)",
                 pool.coordinator.url, tasks.watcher_mode)

    def _make_waiter(self, pool: SessionPool, host: str) -> TaskWaiter:
        xs, tasks = self.conf.xenserver, self.conf.tasks
        if tasks.watcher_mode == "polling":
            # For a dom0 whose event.from misbehaves: one read per task per
            # poll_interval, and no power events (the periodic sync remains).
            return PollingWaiter(pool, max_interval=float(tasks.poll_interval))
        self.watcher = TaskWatcher(
            pool,
            agent_host=host,
            poll_timeout=float(xs.event_poll_timeout),
            on_power_change=self._on_power_change,
            on_reconnect=self._on_reconnect,
        ).start()
        if not self.watcher.wait_synced(float(xs.login_timeout)):
            LOG.warning("Task event stream not in step yet; waiters read tasks directly")
        return self.watcher

    # -- events for the manager -------------------------------------------------
    def _on_power_change(self, instance_uuid: str, info: InstanceInfo) -> None:
        cb = self.power_state_listener
        if cb is not None:
            cb(instance_uuid, info)

    def set_reconnect_listener(self, cb: Callable[[], None] | None) -> None:
        """``cb()`` is called (in a driver thread) after the session or the
        event stream had to log in again, reconnect or re-sync, or the pool
        coordinator changed: what was known about dom0 may be stale."""
        self.reconnect_listener = cb

    def _on_reconnect(self, why: str) -> None:
        agent_metrics.count_event_stream_reconnect()
        with self._reconnect_lock:
            if self._reconnect_pending or self._closed.is_set():
                return
            self._reconnect_pending = True
        LOG.info("dom0 connection re-established (%s)", why)
        threading.Thread(target=self._fire_reconnect, name="xenapi-reconnect",
                         daemon=True).start()

    def _fire_reconnect(self) -> None:
        time.sleep(RECONNECT_SETTLE)
        with self._reconnect_lock:
            self._reconnect_pending = False
        cb = self.reconnect_listener
        if cb is None or self._closed.is_set():
            return
        try:
            cb()
        except Exception:
            LOG.exception("reconnect listener failed")

    def cleanup_host(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            if self.metrics is not None:
                self.metrics.close()
            if self.runner is not None:
                self.runner.close()
        finally:
            if self.pool is not None:
                self.pool.close()

    def _ops(self) -> tuple[TaskRunner, VMOps]:
        if self.runner is None or self.vmops is None:
            # Until the first connection: why the last try failed.
            last = self._first_connect.last_error
            raise exceptions.HypervisorUnavailable(
                *(last.params if last is not None else
                  [self.conf.xenserver.connection_url or "", "not connected (yet)"]))
        return self.runner, self.vmops

    def _timeout(self, op: Operation) -> float:
        # The manager gives every operation its timeout from [tasks]; a
        # caller that does not (tests, tools) gets [tasks] default_timeout.
        return float(op.timeout if op.timeout is not None else self.conf.tasks.default_timeout)

    # -- instance operations -------------------------------------------------------
    def spawn(self, op: Operation, instance: dict[str, Any]) -> InstanceInfo:
        runner, vmops = self._ops()
        with runner.operation(op, self._timeout(op)):
            return vmops.spawn(op, instance)

    def power_on(self, op: Operation, instance: dict[str, Any]) -> None:
        runner, vmops = self._ops()
        with runner.operation(op, self._timeout(op)):
            vmops.power_on(op, instance)

    def power_off(self, op: Operation, instance: dict[str, Any], clean: bool = True,
                  timeout: float = 60) -> None:
        runner, vmops = self._ops()
        with runner.operation(op, self._timeout(op)):
            vmops.power_off(op, instance, clean, timeout)

    def reboot(self, op: Operation, instance: dict[str, Any], reboot_type: str) -> None:
        runner, vmops = self._ops()
        with runner.operation(op, self._timeout(op)):
            vmops.reboot(op, instance, reboot_type)

    def destroy(self, op: Operation, instance: dict[str, Any]) -> None:
        runner, vmops = self._ops()
        with runner.operation(op, self._timeout(op)):
            # A rescue VM first: it holds the root disk the VM's destroy removes.
            self._part(self.rescues).remove(op, instance["uuid"])
            vmops.destroy(op, instance)

    def _part(self, part: Any) -> Any:
        self._ops()
        return part

    def snapshot(self, op: Operation, instance: dict[str, Any], upload: Upload) -> None:
        runner, vmops = self._ops()
        assert self.snapshots is not None
        with runner.operation(op, self._timeout(op)):
            vm, _ = vmops.require(instance)
            self.snapshots.snapshot(op, vm, f"{instance['name']} snapshot", upload)

    def discard_snapshots(self, op: Operation, instance: dict[str, Any]) -> int:
        runner, _ = self._ops()
        assert self.snapshots is not None
        with runner.operation(op, self._timeout(op)):
            return self.snapshots.discard(op, instance["uuid"])

    def manage_image_cache(self, max_unused_age: float) -> int:
        self._ops()
        if self.image_cache is None:
            return 0
        op = Operation("image-cache", "image_cache_cleanup", "image-cache-cleanup")
        return len(self.image_cache.cleanup(op, max_unused_age))

    def _remove_half_imported_images(self) -> None:
        """A base VDI still 'importing' at start-up was cut off by a crash:
        no build of this process can be using it."""
        if self.image_cache is None:
            return
        op = Operation("image-cache", "image_cache_recover", "image-cache-recover")
        try:
            self.image_cache.remove_half_imported(op)
        except exceptions.ComputeAgentError as e:
            LOG.warning("Could not check the image cache for half-imported VDIs: %s", e)

    # -- queries ---------------------------------------------------------------------
    def get_info(self, instance: dict[str, Any]) -> InstanceInfo:
        info = self._ops()[1].get_info(instance)
        if instance.get("vm_state") == "rescued":
            return self._part(self.rescues).info(instance, info)
        return info

    def list_instance_uuids(self) -> list[str]:
        vmops = self._ops()[1]
        cached = self.watcher.vm_records() if self.watcher is not None else None
        return sorted(vmops.infos_of(cached)) if cached is not None else \
            vmops.list_instance_uuids()

    def list_instance_infos(self) -> dict[str, InstanceInfo]:
        # The event stream keeps every VM record: no call to dom0 at all
        # while it is in step, one otherwise.
        vmops = self._ops()[1]
        cached = self.watcher.vm_records() if self.watcher is not None else None
        return vmops.infos_of(cached) if cached is not None else vmops.list_instance_infos()

    def get_host_resources(self) -> dict[str, Any]:
        self._ops()
        assert self.host_info is not None and self.metrics is not None
        resources = self.host_info.resources()
        resources["cpu_utilisation"] = self.metrics.host_cpu_utilisation()
        return resources

    # -- cancellation and recovery ---------------------------------------------------
    def cancel(self, instance_uuid: str) -> bool:
        return self._ops()[0].cancel(instance_uuid)

    def reattach_task(self, op: Operation, task_ref: str, timeout: float) -> TaskState:
        """Follow a task an earlier run of the agent started (recovery); see
        TaskRunner.reattach."""
        return self._ops()[0].reattach(op, task_ref, timeout)

    def _pool_changed(self) -> None:
        """The host joined or left a pool: the event stream starts over at
        the coordinator, and the agent's recovery looks again."""
        if self.watcher is not None:
            self.watcher.restart()
        self._on_reconnect("pool membership changed")

