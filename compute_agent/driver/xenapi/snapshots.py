"""Snapshots of an instance's root disk, streamed out of dom0.

``VM.snapshot`` (an Async task, crash-consistent, the VM keeps running)
makes a snapshot VM; its root disk leaves dom0 through
``GET /export_raw_vdi`` as a VHD, under a task of the caller's
(transfer_tasks), chunk by chunk into ``upload``. The snapshot VM and its
disks are destroyed afterwards, whatever happened. A snapshot VM carries
its instance's marks (xapi copies other_config), so ``discard`` finds
those an interrupted run left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.base import Operation
from compute_agent.driver.xenapi import ownership
from compute_agent.driver.xenapi.http_transfer import get_stream
from compute_agent.driver.xenapi.session import SessionPool
from compute_agent.driver.xenapi.storage import ROOT_USERDEVICE
from compute_agent.driver.xenapi.tasks import TaskRunner
from compute_agent.driver.xenapi.transfer_tasks import run_transfer
from compute_agent.image.verify import read_ahead

LOG = logging.getLogger(__name__)

Upload = Callable[[Iterable[bytes]], None]


class Snapshots:
    def __init__(self, pool: SessionPool, runner: TaskRunner, agent_host: str,
                 chunk_size: int = 1024 * 1024, cleanup_timeout: float = 300.0):
        self.pool = pool
        self.runner = runner
        self.agent_host = agent_host
        self.chunk_size = chunk_size
        self.cleanup_timeout = cleanup_timeout

    def snapshot(self, op: Operation, vm: str, label: str, upload: Upload) -> None:
        snap = self.runner.run(op, "VM.snapshot", vm, label, [])
        try:
            vdi = self._root_vdi(snap)
            self._export(op, vdi, upload)
        finally:
            with self.runner.cleanup(op, self.cleanup_timeout):
                self._destroy_snapshot(op, snap)

    def _root_vdi(self, snap: str) -> str:
        for vbd in self.pool.call("VM.get_VBDs", snap):
            rec = self.pool.call("VBD.get_record", vbd)
            if rec.get("userdevice") == ROOT_USERDEVICE and rec.get("type") == "Disk":
                return rec["VDI"]
        raise exceptions.HypervisorError(snap, "no root disk", code="VM_HAS_NO_ROOT_DISK")

    def _export(self, op: Operation, vdi: str, upload: Upload) -> None:
        def work(task_ref: str) -> None:
            with self.pool.session() as sess:
                query = {"session_id": sess.handle(), "vdi": vdi, "format": "vhd",
                         "task_id": task_ref}
                upload(read_ahead(get_stream(sess.url, self.pool.settings.tls,
                                             "/export_raw_vdi", query,
                                             chunk_size=self.chunk_size)))

        run_transfer(self.runner, op, "Export snapshot", work)

    def _destroy_snapshot(self, op: Operation, snap: str) -> None:
        """The snapshot VM, its VBDs and the disks only it uses."""
        try:
            rec = self.pool.call("VM.get_record", snap)
        except exceptions.HypervisorError as e:
            if e.code == "HANDLE_INVALID":
                return
            raise
        vdis = []
        for vbd in rec.get("VBDs", []):
            try:
                vrec = self.pool.call("VBD.get_record", vbd)
            except exceptions.HypervisorError:
                continue
            if vrec.get("type") == "Disk" and vrec.get("VDI") not in (None, "OpaqueRef:NULL"):
                vdis.append(vrec["VDI"])
        self._ignore_gone(lambda: self.runner.run(op, "VM.destroy", snap))
        for vdi in vdis:
            self._ignore_gone(lambda v=vdi: self.runner.run(op, "VDI.destroy", v))

    @staticmethod
    def _ignore_gone(fn: Callable[[], Any]) -> None:
        try:
            fn()
        except exceptions.HypervisorError as e:
            if e.code != "HANDLE_INVALID":
                raise

    def discard(self, op: Operation, instance_uuid: str) -> int:
        """Destroy the snapshot VMs (and their disks) of the instance that
        an interrupted snapshot left; returns how many."""
        recs = self.pool.call("VM.get_all_records_where", 'field "is_a_snapshot" = "true"')
        found = [ref for ref, rec in sorted(recs.items())
                 if ownership.instance_of(rec) == instance_uuid
                 and ownership.owned_by(rec, self.agent_host)]
        for snap in found:
            self._destroy_snapshot(op, snap)
        return len(found)
