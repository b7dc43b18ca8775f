"""LibvirtDriver: the ComputeDriver for Xen (libxl) and KVM hosts through
libvirt.

Wires the parts from the ``[libvirt]`` options: detection of the hypervisor,
the connection (re-opened after a drop), the event loop and lifecycle events
(feeding the power-state listener), the storage pool, the domain operations
and the host figures. What libvirt cannot do on this connection answers
OPERATION_NOT_SUPPORTED [operation, 'libvirt'].
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import libvirt

from compute_agent import exceptions
from compute_agent.driver.base import ComputeDriver, InstanceInfo, Operation, TaskListener
from compute_agent.driver.libvirt import detection, host
from compute_agent.driver.libvirt.connection import Connection
from compute_agent.driver.libvirt.domain_ops import DomainOps
from compute_agent.driver.libvirt.domain_xml import DomainSettings, PVBoot
from compute_agent.driver.libvirt.errors import DRIVER_NAME, translate
from compute_agent.driver.libvirt.events import Bridge, DomainEvents, EventLoop
from compute_agent.driver.libvirt.images import RootImages
from compute_agent.driver.libvirt.steps import Steps
from compute_agent.driver.libvirt.storage import Pool
from compute_agent.driver.task_status import LOST, TaskState
from compute_agent.image.service import ImageService

LOG = logging.getLogger(__name__)

# The operations this driver implements (get_host_status lists them).
OPERATIONS = ("spawn", "power_on", "power_off", "reboot", "destroy", "pause", "unpause",
              "suspend", "resume")


class LibvirtDriver(ComputeDriver):
    def __init__(self, conf: Any = None, task_listener: TaskListener | None = None):
        super().__init__(task_listener)
        if conf is None:
            from compute_agent.conf import CONF as conf
        self.conf = conf
        self.host: str | None = None
        self.virt_type: str | None = None
        self.connection: Connection | None = None
        self.ops: DomainOps | None = None
        self.events: DomainEvents | None = None
        self._bridge: Bridge | None = None
        self._pool: Pool | None = None
        self._closed = threading.Event()

    # -- lifecycle ---------------------------------------------------------------

    def init_host(self, host: str) -> None:
        opts = self.conf.libvirt
        if self.connection is not None:
            # Initialised before (a manager re-initialising a driver it was
            # given): let go of the old connection and its events first.
            self._release()
            self._closed.clear()
        self.host = host
        self.virt_type = detection.resolve(opts.virt_type, opts.hypervisor_root)
        uri = detection.connection_uri(self.virt_type, opts.connection_uri)
        EventLoop.ensure_running()  # before the connection opens: it registers with it
        self._bridge = Bridge()
        self._pool = Pool(opts.storage_pool, opts.volume_format)
        self.connection = Connection(uri, float(opts.reconnect_interval),
                                     on_open=self._on_open, on_reconnect=self._on_reconnect,
                                     call_soon=self._bridge.call_soon)
        self.events = DomainEvents(self._bridge, self._read_info)
        self.events.listener = self._on_power_change
        try:
            conn = self.connection.get()
            hypervisor_host = conn.getHostname()
            self._pool.lookup(conn)  # fail now, clearly, if the pool is missing
        except libvirt.libvirtError as exc:
            self.cleanup_host()
            raise translate(exc, uri=uri, operation="init_host") from None
        except Exception:
            self.cleanup_host()
            raise
        settings = DomainSettings(
            virt_type=self.virt_type, xen_hvm=bool(opts.xen_hvm),
            pv_boot=PVBoot(bootloader=opts.xen_pv_bootloader, kernel=opts.xen_pv_kernel,
                           ramdisk=opts.xen_pv_ramdisk, cmdline=opts.xen_pv_cmdline),
            default_network=opts.default_network, bridge=opts.bridge, agent_host=host)
        self.ops = DomainOps(self.connection, self._pool, self.events,
                             Steps(self.task_listener, hypervisor_host), settings,
                             RootImages(ImageService.from_conf(self.conf), self._pool))
        LOG.info("libvirt driver connected to %s (%s, pool %s)", uri, self.virt_type,
                 self._pool.name)

    def cleanup_host(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._release()

    def _release(self) -> None:
        if self.events is not None:
            self.events.unregister()
        if self.connection is not None:
            self.connection.close()
        if self._bridge is not None:
            self._bridge.stop()

    def _on_open(self, conn: libvirt.virConnect) -> None:
        if self.events is not None:
            self.events.register(conn)

    def _on_reconnect(self, _uri: str) -> None:
        cb = self.reconnect_listener
        if cb is not None and not self._closed.is_set():
            try:
                cb()
            except Exception:
                LOG.exception("reconnect listener failed")

    def _read_info(self, dom: libvirt.virDomain) -> InstanceInfo | None:
        return self._ops().owned_info(dom)

    def _on_power_change(self, instance_uuid: str, info: InstanceInfo) -> None:
        cb = self.power_state_listener
        if cb is not None:
            cb(instance_uuid, info)

    def _ops(self) -> DomainOps:
        if self.ops is None:
            raise exceptions.HypervisorUnavailable(
                self.connection.uri if self.connection else "libvirt",
                "driver not initialised (init_host)")
        return self.ops

    # -- instance operations --------------------------------------------------------

    def spawn(self, op: Operation, instance: dict[str, Any]) -> InstanceInfo:
        return self._ops().spawn(op, instance)

    def power_on(self, op: Operation, instance: dict[str, Any]) -> None:
        self._ops().power_on(op, instance)

    def power_off(self, op: Operation, instance: dict[str, Any], clean: bool = True,
                  timeout: float = 60) -> None:
        self._ops().power_off(op, instance, clean, timeout)

    def reboot(self, op: Operation, instance: dict[str, Any], reboot_type: str) -> None:
        self._ops().reboot(op, instance, reboot_type)

    def destroy(self, op: Operation, instance: dict[str, Any]) -> None:
        self._ops().destroy(op, instance)

    def pause(self, op: Operation, instance: dict[str, Any]) -> None:
        """Freeze the guest's vCPUs in memory (virDomainSuspend)."""
        self._ops().pause(op, instance)

    def unpause(self, op: Operation, instance: dict[str, Any]) -> None:
        """Let a paused guest run again (virDomainResume)."""
        self._ops().unpause(op, instance)

    def suspend(self, op: Operation, instance: dict[str, Any]) -> None:
        """Save the guest's memory beside the domain and stop it (managed
        save); its power state becomes suspended."""
        self._ops().suspend(op, instance)

    def resume(self, op: Operation, instance: dict[str, Any]) -> None:
        """Restore a suspended (managed-saved) guest."""
        self._ops().resume(op, instance)

    # -- queries ----------------------------------------------------------------------

    def get_info(self, instance: dict[str, Any]) -> InstanceInfo:
        return self._ops().get_info(instance)

    def list_instance_uuids(self) -> list[str]:
        return self._ops().list_instance_uuids()

    def get_host_resources(self) -> dict[str, Any]:
        ops = self._ops()
        assert self._pool is not None and self.virt_type is not None
        with ops._libvirt(None, None) as conn:
            return host.resources(conn, self._pool, self.virt_type)

    def capabilities(self) -> dict[str, Any]:
        ops = self._ops()
        with ops._libvirt(None, None) as conn:
            modes = host.guest_modes(conn.getCapabilities())
            uri = conn.getURI()
        return {"driver": DRIVER_NAME, "operations": list(OPERATIONS),
                "virt_type": self.virt_type, "guest_modes": modes, "uri": uri,
                "power_events": True}

    def cancel(self, instance_uuid: str) -> bool:
        """Only a clean shutdown's wait can be cancelled: every other libvirt
        call returns when it is done."""
        return self._ops().cancel(instance_uuid)

    def reattach_task(self, op: Operation, task_ref: str, timeout: float) -> TaskState:
        """A step of an earlier run is a libvirt call that ended with that
        process: nothing to follow. Reported lost; recovery settles the
        instance from the domain's state."""
        self._ops()
        state = TaskState(LOST, error=["TASK_LOST", task_ref])
        if self.task_listener is not None:
            try:
                self.task_listener.task_finished(op, task_ref, "failure", None, state.error)
            except Exception:
                LOG.exception("task listener failed")
        return state
