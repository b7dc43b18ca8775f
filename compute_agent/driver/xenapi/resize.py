"""Resize on the same host, and its confirm and revert.

A resize keeps in dom0 everything a revert needs until it is confirmed:

- on the VM, in other_config, the flavor and power state it had
  (FLAVOR_KEY, POWER_KEY), written first;
- a clone of the root disk made (``Async.VDI.clone``) before anything
  changes, marked as the instance's ``resize-backup`` disk.

Then the VM is halted (clean, hard after the clean-shutdown timeout), given
the new vCPUs and memory, its root disk grown (``Async.VDI.resize``, which
xapi allows only on a disk no running VM holds) and started again if it ran.

A revert puts the backup in the root disk's place (its contents and size),
removes the grown disk, gives back the old vCPUs and memory and the old
power state. A confirm removes the backup. Both are idempotent and safe at
any point of an interrupted resize or revert: a clone the agent did not live
to mark is a root-marked disk no VBD holds, which both remove.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.base import Operation
from compute_agent.driver.xenapi import ownership
from compute_agent.driver.xenapi.session import SessionPool
from compute_agent.driver.xenapi.storage import GiB, Storage, vbd_record
from compute_agent.driver.xenapi.tasks import TaskRunner
from compute_agent.driver.xenapi.vm_ops import MiB, VMOps

LOG = logging.getLogger(__name__)

FLAVOR_KEY = "compute_agent_resize_flavor"
POWER_KEY = "compute_agent_resize_power"


class Resizes:
    def __init__(self, pool: SessionPool, runner: TaskRunner, vmops: VMOps, storage: Storage,
                 clean_shutdown_timeout: float, cleanup_timeout: float):
        self.pool = pool
        self.runner = runner
        self.vmops = vmops
        self.storage = storage
        self.clean_shutdown_timeout = clean_shutdown_timeout
        self.cleanup_timeout = cleanup_timeout

    def flavor_of(self, ref: str) -> dict[str, int]:
        """The flavor the VM has: vCPUs, memory, root disk size."""
        rec = self.pool.call("VM.get_record", ref)
        root = self.storage.root_vdi(ref)
        size = int(self.pool.call("VDI.get_virtual_size", root)) if root else 0
        return {"vcpus": int(rec["VCPUs_max"]),
                "memory_mb": int(rec["memory_static_max"]) // MiB,
                "root_gb": size // GiB}

    # -- resize ----------------------------------------------------------------------
    def resize(self, op: Operation, instance: dict[str, Any], flavor: dict[str, Any]) -> None:
        uuid = instance["uuid"]
        ref, rec = self.vmops.require(instance)
        root = self.storage.root_vdi(ref)
        new_size = int(flavor["root_gb"]) * GiB
        size = int(self.pool.call("VDI.get_virtual_size", root)) if root else 0
        if root is not None and new_size < size:
            # As xapi's VDI.resize would say, before anything changes.
            raise exceptions.HypervisorError(root, str(size), code="VDI_TOO_SMALL")
        self._drop_leftovers(op, uuid, root)
        self._set_vm_keys(ref, {FLAVOR_KEY: json.dumps(self.flavor_of(ref), sort_keys=True),
                                POWER_KEY: str(rec.get("power_state"))})
        try:
            if root is not None:
                backup = self.runner.run(op, "VDI.clone", root, {})
                # xapi copies the root's other_config into the clone; the
                # marks are written in full all the same, so the backup is
                # found whatever the SR's clone keeps.
                self.storage.mark_disk(backup, {
                    **ownership.marks(uuid, self.storage.agent_host),
                    ownership.DISK_KEY: ownership.RESIZE_BACKUP})
            self.vmops.halt(op, ref, rec, self.clean_shutdown_timeout)
            self.vmops.apply_flavor(ref, flavor)
            if root is not None and new_size > size:
                self.runner.run(op, "VDI.resize", root, str(new_size))
            if rec.get("power_state") == "Running":
                self.vmops.boot(op, ref)
        except BaseException:
            LOG.warning("Resize of %s failed; reverting it", uuid)
            try:
                with self.runner.cleanup(op, self.cleanup_timeout):
                    self.revert(op, instance)
            except Exception:
                LOG.exception("Revert after the failed resize of %s failed", uuid)
            raise

    # -- confirm / revert ------------------------------------------------------------
    def confirm(self, op: Operation, instance: dict[str, Any]) -> None:
        ref, _ = self.vmops.require(instance)
        self._drop_leftovers(op, instance["uuid"], self.storage.root_vdi(ref))
        self._set_vm_keys(ref, {FLAVOR_KEY: None, POWER_KEY: None})

    def revert(self, op: Operation, instance: dict[str, Any]) -> dict[str, Any]:
        uuid = instance["uuid"]
        ref, rec = self.vmops.require(instance)
        other = rec.get("other_config") or {}
        kept, power = other.get(FLAVOR_KEY), other.get(POWER_KEY)
        root = self.storage.root_vdi(ref)
        backups = self._marked(uuid, ownership.RESIZE_BACKUP)
        if kept is not None or backups:
            self.vmops.halt(op, ref, rec, self.clean_shutdown_timeout)
        if backups:
            backup = backups[0]
            if root != backup:
                vbd = self.storage.root_vbd(ref)
                if vbd is not None:
                    self.pool.call("VBD.destroy", vbd)
                self.pool.call("VBD.create", vbd_record(ref, backup, "0", True))
            self.storage.mark_disk(backup, {ownership.DISK_KEY: ownership.ROOT_DISK})
            root = backup
        # The grown disk (now held by no VBD), clones never marked, spares.
        self._drop_leftovers(op, uuid, root)
        if kept is not None:
            self.vmops.apply_flavor(ref, json.loads(kept))
            self._set_vm_keys(ref, {FLAVOR_KEY: None, POWER_KEY: None})
            if power == "Running":
                self.vmops.power_on(op, instance)
        return {"flavor": self.flavor_of(ref)}

    # -- helpers ---------------------------------------------------------------------
    def _marked(self, uuid: str, kind: str) -> list[str]:
        return [v for v in self.storage.marked_vdis(uuid) if self.storage.disk_kind(v) == kind]

    def _drop_leftovers(self, op: Operation, uuid: str, root: str | None) -> None:
        """Remove the instance's resize backups and every root-marked disk
        that is not the VM's root disk and that no VBD holds."""
        drop = [v for v in self._marked(uuid, ownership.RESIZE_BACKUP) if v != root]
        for vdi in self._marked(uuid, ownership.ROOT_DISK):
            if vdi != root and not self.pool.call("VDI.get_VBDs", vdi):
                drop.append(vdi)
        self.storage.destroy_vdis(op, drop)

    def _set_vm_keys(self, ref: str, values: dict[str, str | None]) -> None:
        for key, value in values.items():
            self.pool.call("VM.remove_from_other_config", ref, key)
            if value is not None:
                self.pool.call("VM.add_to_other_config", ref, key, value)
