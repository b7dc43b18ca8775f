"""VM lifecycle: build, power, reboot, destroy and what state a VM is in.

Long steps run as Async tasks through the TaskRunner; quick reads and small
edits are plain calls on a pooled session.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from compute_agent import exceptions
from compute_agent.driver import power_state
from compute_agent.driver.base import REBOOT_HARD, REBOOT_TYPES, InstanceInfo, Operation
from compute_agent.driver.xenapi import ownership
from compute_agent.driver.xenapi.image_disks import ImageDisks
from compute_agent.driver.xenapi.network import Networking
from compute_agent.driver.xenapi.session import SessionPool
from compute_agent.driver.xenapi.storage import Storage
from compute_agent.driver.xenapi.tasks import TaskRunner
from compute_agent.driver.xenapi.vifs import is_port
from compute_agent.driver.xenapi.vm_lookup import VMLookup
from compute_agent.driver.xenapi.vm_record import NULL_REF, MiB, scratch_vm_record
from compute_agent.image.service import wants_image

__all__ = ["MiB", "NULL_REF", "VMOps", "instance_info", "scratch_vm_record"]

LOG = logging.getLogger(__name__)

XAPI_POWER_STATES = {
    "Halted": power_state.SHUTDOWN,
    "Running": power_state.RUNNING,
    "Paused": power_state.PAUSED,
    "Suspended": power_state.SUSPENDED,
}
# last_shutdown_reason values that mean the guest died rather than stopped.
CRASH_REASONS = frozenset({"crashed", "crash"})
# How long a soft reboot may take before it is done the hard way.


def shutdown_reason(record: dict[str, Any]) -> str | None:
    return (record.get("other_config") or {}).get("last_shutdown_reason") or None


def map_power_state(record: dict[str, Any]) -> int:
    """Our power state for a VM record; a halted VM whose last shutdown was
    a crash is CRASHED."""
    state = XAPI_POWER_STATES.get(str(record.get("power_state")), power_state.NOSTATE)
    if state == power_state.SHUTDOWN and shutdown_reason(record) in CRASH_REASONS:
        return power_state.CRASHED
    return state


def instance_info(vm_ref: str, record: dict[str, Any]) -> InstanceInfo:
    return InstanceInfo(
        power_state=map_power_state(record),
        vm_ref=vm_ref,
        shutdown_reason=shutdown_reason(record),
        extra={
            "name_label": record.get("name_label"),
            "xapi_power_state": record.get("power_state"),
            "uuid": record.get("uuid"),
            # A guest rebooting on its own stays Running with the same reason:
            # only these tell one reboot from the next.
            "last_shutdown_time": (record.get("other_config") or {}).get("last_shutdown_time"),
            # str: XML-RPC sends int64 as strings, JSON-RPC as numbers.
            "domid": str(record.get("domid")),
        },
    )


class VMOps(VMLookup):
    def __init__(
        self,
        pool: SessionPool,
        runner: TaskRunner,
        storage: Storage,
        networking: Networking,
        agent_host: str,
        template: str = "",
        cleanup_timeout: float = 300.0,
        soft_reboot_timeout: float = 60.0,
        image_disks: ImageDisks | None = None,
    ):
        self.pool = pool
        self.runner = runner
        self.storage = storage
        self.networking = networking
        self.agent_host = agent_host
        self.template = template
        self.cleanup_timeout = cleanup_timeout
        # The dom0 host this agent manages (set by the driver): VMs start
        # there and have it as affinity, so that one agent per pool host
        # keeps to its own host.
        self.host_ref: Callable[[], str] | None = None
        # The event stream's VM records (ref -> record), or None while it is
        # not in step with dom0 (set by the driver): a search for a VM that
        # is not there then costs no call to dom0, whatever the number of VMs.
        self.vm_cache: Callable[[], dict[str, dict[str, Any]] | None] | None = None
        # How long a guest gets to reboot itself before a hard reboot.
        self.soft_reboot_timeout = soft_reboot_timeout
        # Set by the driver (devices.py): ports and volumes of a build,
        # attached to the halted VM before it starts; and what must leave a
        # VM before it is destroyed (volumes: their LUNs are not its disks).
        self.attach_at_build: Callable[[Operation, dict[str, Any], str], None] | None = None
        self.before_destroy: Callable[[Operation, str], Any] | None = None
        self.image_disks = image_disks
        # instance uuid -> VM ref; checked before use, rebuilt on a miss.
        self._refs: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- finding VMs: vm_lookup.py (VMLookup) ---------------------------------------
    def get_info(self, instance: dict[str, Any]) -> InstanceInfo:
        ref, rec = self.require(instance)
        info = instance_info(ref, rec)
        if self.host_ref is not None:
            # Where the VM is in the pool: running on (or, halted, affine
            # to) this agent's host, or elsewhere (a migration moved it).
            running = rec.get("power_state") in ("Running", "Paused")
            where = rec.get("resident_on") if running else rec.get("affinity")
            info.extra["on_this_host"] = where == self.host_ref() or (
                not running and where in (NULL_REF, None, ""))
        return info

    def list_instance_infos(self) -> dict[str, InstanceInfo]:
        """Every VM of this agent's instances, from one call to dom0 (the
        periodic jobs' and the host status's view at any scale)."""
        return self.infos_of(self.pool.call(
            "VM.get_all_records_where",
            'field "is_a_template" = "false" and field "is_control_domain" = "false"',
        ))

    def infos_of(self, recs: dict[str, dict[str, Any]]) -> dict[str, InstanceInfo]:
        """Instance uuid -> info of this agent's VMs among ``recs``."""
        out: dict[str, InstanceInfo] = {}
        for ref, rec in sorted(recs.items()):
            if rec.get("is_a_template") or rec.get("is_control_domain"):
                continue
            uuid = ownership.instance_of(rec)
            if uuid and ownership.owned_by(rec, self.agent_host) and not rec.get("is_a_snapshot"):
                out.setdefault(uuid, instance_info(ref, rec))
        with self._lock:
            self._refs.update({u: i.vm_ref for u, i in out.items() if i.vm_ref})
        return out

    # -- build -------------------------------------------------------------------
    def spawn(self, op: Operation, instance: dict[str, Any]) -> InstanceInfo:
        found = self.lookup(instance)
        if found is not None:
            # A retried build: finish the VM that exists instead of a second.
            ref, rec = found
            LOG.info("VM for %s exists already; reusing it", instance["uuid"])
            if rec.get("power_state") != "Running":
                self._start(op, ref, rec)
            return self.get_info(instance)
        created_vm: str | None = None
        try:
            created_vm = self._create_vm(op, instance)
            with self._lock:
                self._refs[instance["uuid"]] = created_vm
            self._ensure_root_disk(op, instance, created_vm)
            networks = instance.get("networks") or []
            plain = [n for n in networks if not is_port(n)]
            if plain or len(plain) == len(networks):
                self.networking.create_vifs(created_vm, plain)
            if self.host_ref is not None:
                self.pool.call("VM.set_affinity", created_vm, self.host_ref())
            if self.attach_at_build is not None:
                self.attach_at_build(op, instance, created_vm)
            self.boot(op, created_vm)
        except BaseException:
            LOG.warning("Build of %s failed; removing what was created", instance["uuid"])
            try:
                with self.runner.cleanup(op, self.cleanup_timeout):
                    self.destroy(op, instance, vm_hint=created_vm)
            except Exception:
                LOG.exception("Clean-up after the failed build of %s failed",
                              instance["uuid"])
            raise
        return self.get_info(instance)

    def _create_vm(self, op: Operation, instance: dict[str, Any]) -> str:
        if not self.template:
            return self.pool.call("VM.create", scratch_vm_record(instance, self.agent_host))
        template = self._find_template(self.template)
        vm = self.runner.run(op, "VM.clone", template, instance["name"])
        try:
            # Mark it first: from here on, a crash leaves a VM we can find.
            for key, value in ownership.marks(instance["uuid"], self.agent_host).items():
                self.pool.call("VM.remove_from_other_config", vm, key)
                self.pool.call("VM.add_to_other_config", vm, key, value)
            # As xe vm-install does: provision the clone (still a template:
            # its disks are made from the template's disk plan), then make it
            # an ordinary VM.
            self.runner.run(op, "VM.provision", vm)
            self.pool.call("VM.set_is_a_template", vm, False)
            self.apply_flavor(vm, instance["flavor"])
        except BaseException:
            with self.runner.cleanup(op, self.cleanup_timeout):
                self._destroy_vm_record(op, vm)
            raise
        return vm

    def _find_template(self, label: str) -> str:
        refs = self.pool.call("VM.get_by_name_label", label)
        for ref in sorted(refs):
            if self.pool.call("VM.get_is_a_template", ref):
                return ref
        raise exceptions.HypervisorError(label, code="VM_TEMPLATE_NOT_FOUND")

    def apply_flavor(self, vm: str, flavor: dict[str, Any]) -> None:
        """The flavor's memory (all four limits) and vCPUs, on a halted VM."""
        memory = str(int(flavor["memory_mb"]) * MiB)
        self.pool.call("VM.set_memory_limits", vm, memory, memory, memory, memory)
        vcpus = int(flavor["vcpus"])
        current_max = int(self.pool.call("VM.get_VCPUs_max", vm))
        # VCPUs_at_startup may never exceed VCPUs_max: order the two edits.
        if vcpus > current_max:
            self.pool.call("VM.set_VCPUs_max", vm, str(vcpus))
            self.pool.call("VM.set_VCPUs_at_startup", vm, str(vcpus))
        else:
            self.pool.call("VM.set_VCPUs_at_startup", vm, str(vcpus))
            self.pool.call("VM.set_VCPUs_max", vm, str(vcpus))

    def _ensure_root_disk(self, op: Operation, instance: dict[str, Any], vm: str) -> None:
        rec = self.pool.call("VM.get_record", vm)
        for vbd in rec.get("VBDs", []):
            vbd_rec = self.pool.call("VBD.get_record", vbd)
            if vbd_rec.get("userdevice") == "0" and vbd_rec.get("type") == "Disk":
                return  # the template provided one
        if self.image_disks is not None and wants_image(instance.get("image")):
            self.image_disks.create_root_disk(op, instance, vm)
        else:
            self.storage.create_root_disk(op, instance, vm)

    # -- power -----------------------------------------------------------------------
    def _start(self, op: Operation, ref: str, rec: dict[str, Any]) -> None:
        state = rec.get("power_state")
        if state == "Running":
            return
        if state == "Paused":
            self.runner.run(op, "VM.unpause", ref)
        elif state == "Suspended":
            self.runner.run(op, "VM.resume", ref, False, False)
        else:
            self.boot(op, ref)

    def boot(self, op: Operation, ref: str) -> None:
        """VM.start on this agent's host (VM.start_on), or where xapi
        chooses when the host is not known."""
        if self.host_ref is None:
            self.runner.run(op, "VM.start", ref, False, False)
        else:
            self.runner.run(op, "VM.start_on", ref, self.host_ref(), False, False)

    def power_on(self, op: Operation, instance: dict[str, Any]) -> None:
        ref, rec = self.require(instance)
        self._start(op, ref, rec)

    def power_off(self, op: Operation, instance: dict[str, Any], clean: bool = True,
                  timeout: float = 60) -> None:
        ref, rec = self.require(instance)
        self._stop(op, ref, rec, clean, timeout)

    def _stop(self, op: Operation, ref: str, rec: dict[str, Any], clean: bool,
              timeout: float) -> None:
        if rec.get("power_state") == "Halted":
            return
        if clean and rec.get("power_state") == "Running":
            try:
                self.runner.run(op, "VM.clean_shutdown", ref, timeout=timeout)
                return
            except (exceptions.HypervisorError, exceptions.OperationTimedOut) as e:
                LOG.info("Clean shutdown of %s did not work (%s); shutting down hard",
                         op.instance_uuid, e.code)
            if self._power_state(ref) == "Halted":
                return  # it got there after all
        self.runner.run(op, "VM.hard_shutdown", ref)

    def _power_state(self, ref: str) -> str | None:
        rec = self._record(ref)
        return rec.get("power_state") if rec else None

    def reboot(self, op: Operation, instance: dict[str, Any], reboot_type: str) -> None:
        if reboot_type not in REBOOT_TYPES:
            raise exceptions.InvalidInput("reboot_type", f"must be one of {REBOOT_TYPES}")
        ref, rec = self.require(instance)
        state = rec.get("power_state")
        if state in ("Halted", "Suspended"):
            if state == "Suspended":
                self.runner.run(op, "VM.hard_shutdown", ref)
            self.boot(op, ref)
            return
        if reboot_type != REBOOT_HARD and state == "Running":
            try:
                self.runner.run(op, "VM.clean_reboot", ref, timeout=self.soft_reboot_timeout)
                return
            except (exceptions.HypervisorError, exceptions.OperationTimedOut) as e:
                LOG.info("Soft reboot of %s did not work (%s); rebooting hard",
                         op.instance_uuid, e.code)
            if self._power_state(ref) == "Halted":
                self.boot(op, ref)
                return
        self.runner.run(op, "VM.hard_reboot", ref)

    # -- destroy -------------------------------------------------------------------
    def destroy(self, op: Operation, instance: dict[str, Any], vm_hint: str | None = None) -> None:
        """Hard shutdown if needed, then the VM's disks and the VM itself;
        also disks marked as the instance's that no VM holds. A VM that is
        already gone is success."""
        found: tuple[str, dict[str, Any]] | None = None
        if vm_hint is not None:
            rec = self._record(vm_hint)
            if rec is not None:
                found = (vm_hint, rec)
        if found is None:
            found = self.lookup(instance)
        vdis: list[str] = []
        if found is not None:
            ref, rec = found
            if rec.get("power_state") != "Halted":
                try:
                    self.runner.run(op, "VM.hard_shutdown", ref)
                except exceptions.HypervisorError as e:
                    # Raced with a guest halting on its own: fine.
                    if e.code != "VM_BAD_POWER_STATE":
                        raise
                rec = self._record(ref) or rec
            if self.before_destroy is not None:
                self.before_destroy(op, instance["uuid"])
            vdis = self.storage.vm_disks(rec, instance["uuid"])
            self._destroy_vm_record(op, ref, rec)
        with self._lock:
            self._refs.pop(instance["uuid"], None)
        vdis += self.storage.marked_vdis(instance["uuid"])
        self.storage.destroy_vdis(op, vdis)

    def halt(self, op: Operation, ref: str, rec: dict[str, Any], clean_timeout: float) -> None:
        """Halt the VM: a clean shutdown (hard after ``clean_timeout``) if it
        runs, a hard one if paused or suspended; a halted VM is left."""
        self._stop(op, ref, rec, True, clean_timeout)

    def destroy_vm_record(self, op: Operation, ref: str) -> None:
        self._destroy_vm_record(op, ref)

    def _destroy_vm_record(
        self, op: Operation, ref: str, rec: dict[str, Any] | None = None
    ) -> None:
        """VM.destroy, and its VBDs and VIFs if xapi left any (not its VDIs)."""
        rec = rec if rec is not None else (self._record(ref) or {})
        try:
            self.runner.run(op, "VM.destroy", ref)
        except exceptions.HypervisorError as e:
            if e.code != "HANDLE_INVALID":
                raise
        for cls, refs in (("VBD", rec.get("VBDs", [])), ("VIF", rec.get("VIFs", []))):
            for dev in refs:
                try:
                    self.pool.call(f"{cls}.destroy", dev)
                except exceptions.HypervisorError as e:
                    if e.code != "HANDLE_INVALID":
                        raise
