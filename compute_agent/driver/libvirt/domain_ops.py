"""The instance operations on libvirt domains.

Each public method is one ComputeDriver operation. Domains are persistent
(defined, then started) so that libvirt keeps them across an agent restart;
the domain's uuid is the instance's and its metadata names this agent's host
(see domain_xml). Every call that changes something is reported as a step
(steps.py). libvirt errors become structured ones (errors.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import libvirt

from compute_agent import exceptions
from compute_agent.driver import power_state
from compute_agent.driver.base import REBOOT_HARD, REBOOT_TYPES, InstanceInfo, Operation
from compute_agent.driver.libvirt import domain_xml
from compute_agent.driver.libvirt.connection import Connection
from compute_agent.driver.libvirt.errors import translate
from compute_agent.driver.libvirt.events import DomainEvents
from compute_agent.driver.libvirt.images import RootImages, wants_image
from compute_agent.driver.libvirt.steps import Steps
from compute_agent.driver.libvirt.storage import Pool, root_volume_name

LOG = logging.getLogger(__name__)

# libvirt's domain states -> the agent's power states. A domain being shut
# down still runs; a stopped one with a managed save image is suspended.
POWER_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: power_state.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: power_state.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: power_state.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: power_state.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: power_state.RUNNING,
    libvirt.VIR_DOMAIN_SHUTOFF: power_state.SHUTDOWN,
    libvirt.VIR_DOMAIN_CRASHED: power_state.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: power_state.SUSPENDED,
}

# Why a shut-off domain stopped, by libvirt's state reason: read with the
# state itself, so it is never behind the (asynchronous) STOPPED event.
SHUTOFF_REASONS = {
    libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN: "halted",
    libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED: "destroyed",
    libvirt.VIR_DOMAIN_SHUTOFF_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_SHUTOFF_SAVED: "suspended",
    libvirt.VIR_DOMAIN_SHUTOFF_FAILED: "crashed",
}

# Undefine the domain with whatever libvirt keeps beside it.
UNDEFINE_FLAGS = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                  | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                  | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)


def power_of(state: int, managed_save: bool) -> int:
    if state == libvirt.VIR_DOMAIN_SHUTOFF and managed_save:
        return power_state.SUSPENDED
    return POWER_STATES.get(state, power_state.NOSTATE)


class DomainOps:
    def __init__(self, conn: Connection, pool: Pool, events: DomainEvents, steps: Steps,
                 settings: domain_xml.DomainSettings, images: RootImages | None = None):
        self.conn = conn
        self.pool = pool
        self.images = images
        self.events = events
        self.steps = steps
        self.settings = settings
        self._cancels: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    # -- building -------------------------------------------------------------

    def spawn(self, op: Operation, instance: dict[str, Any]) -> InstanceInfo:
        uuid = instance["uuid"]
        root_gb = int((instance.get("flavor") or {}).get("root_gb", 1))
        meta = None
        if wants_image(instance.get("image")):
            if self.images is None:
                raise exceptions.OperationNotSupported("boot from an image", "libvirt")
            meta = self.images.meta(instance["image"])  # refused here: nothing made yet
        disk = domain_xml.Disk(self.pool.name, root_volume_name(uuid),
                               (meta.disk_format if meta else None) or self.pool.volume_format)
        spec = domain_xml.instance_spec(instance, self.settings, disk)
        created = False
        try:
            with self._libvirt(op, uuid) as conn:
                dom = self._own_domain(conn, uuid)
                if dom is None:
                    created = True
                    if meta is not None:
                        with self.steps.step(op, "import image into root volume"):
                            self.images.fill(conn, uuid, root_gb, meta)
                    else:
                        with self.steps.step(op, "create root volume"):
                            self.pool.ensure_root(conn, uuid, root_gb)
                    with self.steps.step(op, "define domain"):
                        dom = conn.defineXML(domain_xml.build(spec))
                if not dom.isActive():
                    with self.steps.step(op, "start domain"):
                        dom.create()
                return self.info_of(dom)
        except BaseException:
            if created:
                self._remove(op, uuid, quiet=True)
            raise

    # -- power ----------------------------------------------------------------------

    def power_on(self, op: Operation, instance: dict[str, Any]) -> None:
        uuid = instance["uuid"]
        with self._libvirt(op, uuid) as conn:
            dom = self._domain(conn, uuid)
            state = dom.state()[0]
            if state == libvirt.VIR_DOMAIN_PAUSED:
                with self.steps.step(op, "resume domain"):
                    dom.resume()
            elif not dom.isActive():
                with self.steps.step(op, "start domain"):
                    dom.create()  # restores a managed save image if there is one

    def power_off(self, op: Operation, instance: dict[str, Any], clean: bool,
                  timeout: float) -> None:
        uuid = instance["uuid"]
        with self._libvirt(op, uuid) as conn:
            dom = self._domain(conn, uuid)
            if not dom.isActive():
                return
            if clean and self._clean_shutdown(op, dom, uuid, timeout):
                return
            with self.steps.step(op, "destroy domain"):
                try:
                    dom.destroy()
                except libvirt.libvirtError as exc:
                    # It may have stopped meanwhile (the guest finished).
                    if dom.isActive():
                        raise exc from None

    def _clean_shutdown(self, op: Operation, dom: libvirt.virDomain, uuid: str,
                        timeout: float) -> bool:
        """Ask the guest to shut down and wait (on events) until it has
        stopped; False if it refuses or outlives ``timeout``."""
        try:
            with self.steps.step(op, "shut down domain"):
                dom.shutdown()
        except libvirt.libvirtError as exc:
            LOG.info("Guest %s refused a clean shutdown (%s); destroying", uuid,
                     exc.get_error_message())
            return False
        cancelled = self._cancel_flag(uuid)
        try:
            stopped = self.events.wait_for(
                uuid, lambda: cancelled.is_set() or not dom.isActive(), timeout)
        finally:
            self._drop_cancel_flag(uuid, cancelled)
        if cancelled.is_set():
            raise exceptions.OperationCancelled(op.name, uuid)
        if not stopped:
            LOG.info("Guest %s did not stop within %s s; destroying", uuid, timeout)
        return stopped

    def reboot(self, op: Operation, instance: dict[str, Any], reboot_type: str) -> None:
        if reboot_type not in REBOOT_TYPES:
            raise exceptions.InvalidInput("reboot_type", "must be SOFT or HARD")
        uuid = instance["uuid"]
        with self._libvirt(op, uuid) as conn:
            dom = self._domain(conn, uuid)
            if not dom.isActive():
                with self.steps.step(op, "start domain"):
                    dom.create()
                return
            if reboot_type != REBOOT_HARD:
                try:
                    with self.steps.step(op, "reboot domain"):
                        dom.reboot(0)
                    return
                except libvirt.libvirtError as exc:
                    LOG.info("Guest %s cannot reboot itself (%s); resetting", uuid,
                             exc.get_error_message())
            try:
                with self.steps.step(op, "reset domain"):
                    dom.reset(0)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                    raise
                # A hypervisor without reset: power cycle.
                with self.steps.step(op, "destroy and start domain"):
                    dom.destroy()
                    dom.create()

    def pause(self, op: Operation, instance: dict[str, Any]) -> None:
        self._simple(op, instance, "suspend", "pause domain")

    def unpause(self, op: Operation, instance: dict[str, Any]) -> None:
        self._simple(op, instance, "resume", "unpause domain")

    def suspend(self, op: Operation, instance: dict[str, Any]) -> None:
        """Managed save: libvirt saves the guest's memory beside the domain
        and stops it; the next start restores it."""
        uuid = instance["uuid"]
        with self._libvirt(op, uuid) as conn:
            dom = self._domain(conn, uuid)
            with self.steps.step(op, "managed save"):
                dom.managedSave(0)

    def resume(self, op: Operation, instance: dict[str, Any]) -> None:
        uuid = instance["uuid"]
        with self._libvirt(op, uuid) as conn:
            dom = self._domain(conn, uuid)
            if not dom.hasManagedSaveImage(0):
                raise exceptions.InstanceInvalidState(uuid, "power_state",
                                                      power_state.name(self.info_of(dom)
                                                                       .power_state),
                                                      "suspended")
            with self.steps.step(op, "restore managed save"):
                dom.create()

    def _simple(self, op: Operation, instance: dict[str, Any], method: str, what: str) -> None:
        uuid = instance["uuid"]
        with self._libvirt(op, uuid) as conn:
            dom = self._domain(conn, uuid)
            with self.steps.step(op, what):
                getattr(dom, method)()

    # -- removal ----------------------------------------------------------------------

    def destroy(self, op: Operation, instance: dict[str, Any]) -> None:
        self._remove(op, instance["uuid"], quiet=False)

    def _remove(self, op: Operation, uuid: str, quiet: bool) -> None:
        """Stop and undefine the domain and delete its volumes; a missing
        domain or volume is fine. ``quiet``: log errors instead of raising
        (cleaning up after a failed build keeps the build's error)."""
        try:
            with self._libvirt(op, uuid) as conn:
                dom = self._own_domain(conn, uuid)
                if dom is not None:
                    if dom.isActive():
                        with self.steps.step(op, "destroy domain"):
                            dom.destroy()
                    with self.steps.step(op, "undefine domain"):
                        try:
                            dom.undefineFlags(UNDEFINE_FLAGS)
                        except libvirt.libvirtError as exc:
                            if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT,
                                                            libvirt.VIR_ERR_INVALID_ARG):
                                raise
                            if dom.hasManagedSaveImage(0):
                                dom.managedSaveRemove(0)
                            dom.undefine()
                with self.steps.step(op, "delete volumes"):
                    self.pool.delete_instance_volumes(conn, uuid)
        except exceptions.ComputeAgentError as exc:
            if not quiet:
                raise
            LOG.warning("Could not clean up after the failed build of %s: %s", uuid,
                        exc.message)

    # -- queries -----------------------------------------------------------------------

    def get_info(self, instance: dict[str, Any]) -> InstanceInfo:
        uuid = instance["uuid"]
        with self._libvirt(None, uuid) as conn:
            return self.info_of(self._domain(conn, uuid))

    def info_of(self, dom: libvirt.virDomain) -> InstanceInfo:
        state, reason = dom.state()
        try:
            saved = bool(dom.hasManagedSaveImage(0))
        except libvirt.libvirtError:
            saved = False
        uuid = dom.UUIDString()
        stop = self.events.last_stop(uuid)
        shutdown_reason = stop.rsplit("-", 1)[-1] if stop else None
        if state == libvirt.VIR_DOMAIN_CRASHED:
            shutdown_reason = "crashed"
        elif state == libvirt.VIR_DOMAIN_SHUTOFF and reason in SHUTOFF_REASONS:
            shutdown_reason = SHUTOFF_REASONS[reason]
        return InstanceInfo(
            power_state=power_of(state, saved), vm_ref=uuid,
            shutdown_reason=shutdown_reason,
            extra={"domain": dom.name(), "libvirt_state": state, "reason": reason,
                   "managed_save": saved, "last_shutdown_time": stop})

    def owned_info(self, dom: libvirt.virDomain) -> InstanceInfo | None:
        """info_of for the agent's domains; None for others'."""
        if self._owner(dom) != self.settings.agent_host:
            return None
        return self.info_of(dom)

    def list_instance_uuids(self) -> list[str]:
        """Instances with a domain of this agent, or volumes left of one (a
        build killed before it defined the domain): volumes of an instance
        whose domain exists but is not this agent's are not counted."""
        with self._libvirt(None, None) as conn:
            domains = conn.listAllDomains(0)
            uuids = {dom.UUIDString() for dom in domains
                     if self._owner(dom) == self.settings.agent_host}
            others = {dom.UUIDString() for dom in domains} - uuids
            uuids.update(set(self.pool.instance_volumes(conn)) - others)
        return sorted(uuids)

    def cancel(self, uuid: str) -> bool:
        with self._lock:
            flag = self._cancels.get(uuid)
        if flag is None:
            return False
        flag.set()
        self.events.poke(uuid)
        return True

    # -- internals ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _libvirt(self, op: Operation | None, uuid: str | None) -> Iterator[libvirt.virConnect]:
        """The connection; libvirt errors raised inside become structured."""
        conn = self.conn.get()
        try:
            yield conn
        except libvirt.libvirtError as exc:
            self.conn.dropped(exc)
            raise translate(exc, uri=self.conn.uri, operation=op.name if op else "query",
                            instance_uuid=uuid) from None

    @staticmethod
    def _owner(dom: libvirt.virDomain) -> str | None:
        try:
            xml = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, domain_xml.METADATA_NS)
        except libvirt.libvirtError:
            return None
        return domain_xml.parse_metadata(xml).get("host")

    def _own_domain(self, conn: libvirt.virConnect, uuid: str) -> libvirt.virDomain | None:
        try:
            dom = conn.lookupByUUIDString(uuid)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise
        if self._owner(dom) != self.settings.agent_host:
            return None  # another agent's or nobody's: never touched
        return dom

    def _domain(self, conn: libvirt.virConnect, uuid: str) -> libvirt.virDomain:
        dom = self._own_domain(conn, uuid)
        if dom is None:
            raise exceptions.InstanceNotFound(uuid)
        return dom

    def _cancel_flag(self, uuid: str) -> threading.Event:
        flag = threading.Event()
        with self._lock:
            self._cancels[uuid] = flag
        return flag

    def _drop_cancel_flag(self, uuid: str, flag: threading.Event) -> None:
        with self._lock:
            if self._cancels.get(uuid) is flag:
                del self._cancels[uuid]
