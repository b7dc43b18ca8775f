"""Rescue and unrescue: a second VM that boots from a rescue disk with the
instance's root disk attached as its second disk, while the instance's own
VM stays halted and untouched.

The rescue VM is named ``<instance name>-rescue`` and marked as the
instance's and this agent's (ownership.marks) and as a rescue
(ownership.RESCUE_KEY): the instance's own VM is never confused with it,
while recovery, orphan reaping and destroy find it. Its rescue disk is
marked as the instance's ``rescue`` disk, so that removing the rescue takes
exactly the disks it created and never the root disk it borrowed.

The rescue disk comes from ``rescue_image`` through the image path of a
build (image_disks.ImageDisks: Glance id or URL, checksum-verified, a
clone of the per-SR cache base when the cache is on, the same IMAGE_*
errors), at the image's own size. The image is looked up before the
instance's VM is touched, so a missing or unbootable image fails the
rescue with the VM as it was. A rescue without an image (null, or null
``id`` and ``url``) gets a blank disk of RESCUE_DISK_GB.
"""

from __future__ import annotations

import logging
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.base import InstanceInfo, Operation
from compute_agent.driver.xenapi import ownership
from compute_agent.driver.xenapi.network import Networking
from compute_agent.driver.xenapi.session import SessionPool
from compute_agent.driver.xenapi.storage import NULL_REF, GiB, Storage, vbd_record
from compute_agent.driver.xenapi.tasks import TaskRunner
from compute_agent.driver.xenapi.vm_ops import VMOps, instance_info, scratch_vm_record
from compute_agent.image.meta import ImageMeta
from compute_agent.image.service import wants_image

LOG = logging.getLogger(__name__)

RESCUE_DISK_GB = 1
ROOT_USERDEVICE, SECOND_USERDEVICE = "0", "1"


def rescue_name(instance: dict[str, Any]) -> str:
    return f"{instance['name']}-rescue"


class Rescues:
    def __init__(self, pool: SessionPool, runner: TaskRunner, vmops: VMOps, storage: Storage,
                 networking: Networking, agent_host: str, clean_shutdown_timeout: float,
                 cleanup_timeout: float):
        self.pool = pool
        self.runner = runner
        self.vmops = vmops
        self.storage = storage
        self.networking = networking
        self.agent_host = agent_host
        self.clean_shutdown_timeout = clean_shutdown_timeout
        self.cleanup_timeout = cleanup_timeout

    # -- finding ---------------------------------------------------------------------
    def find(self, uuid: str) -> list[tuple[str, dict[str, Any]]]:
        """(ref, record) of every rescue VM of the instance."""
        recs = self.pool.call("VM.get_all_records_where", 'field "is_control_domain" = "false"')
        return sorted((ref, rec) for ref, rec in recs.items()
                      if ownership.instance_of(rec) == uuid and ownership.is_rescue(rec))

    def info(self, instance: dict[str, Any], own: InstanceInfo) -> InstanceInfo:
        """A rescued instance's info: its rescue VM's power state (the VM of
        the instance, halted, keeps its ref)."""
        found = self.find(instance["uuid"])
        if not found:
            return own
        ref, rec = found[0]
        info = instance_info(ref, rec)
        return InstanceInfo(info.power_state, own.vm_ref, info.shutdown_reason,
                            {**info.extra, "rescue_vm": ref})

    # -- rescue ----------------------------------------------------------------------
    def rescue(self, op: Operation, instance: dict[str, Any],
               rescue_image: dict[str, Any] | None) -> None:
        uuid = instance["uuid"]
        ref, rec = self.vmops.require(instance)
        meta = self._image_meta(rescue_image)  # before the VM is touched
        self.remove(op, uuid)  # a rescue left from an earlier attempt
        was_running = rec.get("power_state") == "Running"
        self.vmops.halt(op, ref, rec, self.clean_shutdown_timeout)
        root = self.storage.root_vdi(ref)
        try:
            vm = self.pool.call("VM.create", self._vm_record(instance))
            disk = self._rescue_disk(op, instance, meta)
            self.pool.call("VBD.create", vbd_record(vm, disk, ROOT_USERDEVICE, True))
            if root is not None:
                self.pool.call("VBD.create", vbd_record(vm, root, SECOND_USERDEVICE, False))
            self.networking.create_vifs(vm, instance.get("networks"))
            self.vmops.boot(op, vm)
        except BaseException:
            LOG.warning("Rescue of %s failed; removing the rescue VM", uuid)
            try:
                with self.runner.cleanup(op, self.cleanup_timeout):
                    self.remove(op, uuid)
                    if was_running:
                        self.vmops.power_on(op, instance)
            except Exception:
                LOG.exception("Clean-up after the failed rescue of %s failed", uuid)
            raise

    def _vm_record(self, instance: dict[str, Any]) -> dict[str, Any]:
        record = scratch_vm_record({**instance, "name": rescue_name(instance)},
                                   self.agent_host)
        record["name_description"] = f"rescue VM of instance {instance['uuid']}"
        record["other_config"] = {**record["other_config"], ownership.RESCUE_KEY: "true"}
        return record

    def _image_meta(self, rescue_image: dict[str, Any] | None) -> ImageMeta | None:
        if not wants_image(rescue_image):
            return None
        if self.vmops.image_disks is None:
            raise exceptions.ImageUnavailable((rescue_image or {}).get("id") or "rescue_image",
                                              "no image service configured")
        return self.vmops.image_disks.meta(rescue_image or {})

    def _rescue_disk(self, op: Operation, instance: dict[str, Any],
                     meta: ImageMeta | None) -> str:
        """The rescue disk: the image's (marked as the instance's rescue
        disk from the moment it exists, so clean-up finds it), or blank."""
        if meta is None or self.vmops.image_disks is None:
            return self.runner.run(op, "VDI.create", self._disk_record(instance))
        disk = self.vmops.image_disks.disk_from_image(
            op, meta, instance["uuid"], ownership.RESCUE_DISK,
            f"{rescue_name(instance)} disk")
        LOG.info("Rescue disk of %s made from image %s", instance["uuid"], meta.image_id)
        return disk

    def _disk_record(self, instance: dict[str, Any]) -> dict[str, Any]:
        return {
            "name_label": f"{rescue_name(instance)} disk",
            "name_description": f"rescue disk of instance {instance['uuid']}",
            "SR": self.storage.find_sr(),
            "virtual_size": str(RESCUE_DISK_GB * GiB),
            "type": "user", "sharable": False, "read_only": False,
            "other_config": ownership.marks(instance["uuid"], self.agent_host, **{
                ownership.DISK_KEY: ownership.RESCUE_DISK}),
            "xenstore_data": {}, "sm_config": {}, "tags": [],
        }

    # -- unrescue --------------------------------------------------------------------
    def unrescue(self, op: Operation, instance: dict[str, Any], restore_power: bool) -> None:
        """Remove the rescue, start the instance's VM (with
        ``restore_power``: only if the instance was active before)."""
        self.remove(op, instance["uuid"])
        if not restore_power or instance.get("vm_state") == "active":
            self.vmops.power_on(op, instance)

    def remove(self, op: Operation, uuid: str) -> None:
        """Every rescue VM of the instance and the rescue disks (only those:
        the root disk it borrowed stays); idempotent."""
        disks: list[str] = []
        for ref, rec in self.find(uuid):
            if rec.get("power_state") != "Halted":
                try:
                    self.runner.run(op, "VM.hard_shutdown", ref)
                except exceptions.HypervisorError as e:
                    if e.code != "VM_BAD_POWER_STATE":
                        raise
            disks += self._rescue_disks(rec)
            self.vmops.destroy_vm_record(op, ref)
        disks += [v for v in self.storage.marked_vdis(uuid)
                  if self.storage.disk_kind(v) == ownership.RESCUE_DISK]
        self.storage.destroy_vdis(op, disks)

    def _rescue_disks(self, vm_record: dict[str, Any]) -> list[str]:
        disks = []
        for vbd in vm_record.get("VBDs", []):
            try:
                vdi = self.pool.call("VBD.get_VDI", vbd)
            except exceptions.HypervisorError as e:
                if e.code == "HANDLE_INVALID":
                    continue
                raise
            if vdi and vdi != NULL_REF and self.storage.disk_kind(vdi) == ownership.RESCUE_DISK:
                disks.append(vdi)
        return disks
