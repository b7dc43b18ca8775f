"""Instance disks: which SR they go on, the root VDI and its VBD, and
removing an instance's VDIs without touching anyone else's."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.base import Operation
from compute_agent.driver.xenapi import ownership
from compute_agent.driver.xenapi.pool import PoolView
from compute_agent.driver.xenapi.session import SessionPool
from compute_agent.driver.xenapi.tasks import TaskRunner

LOG = logging.getLogger(__name__)

GiB = 1024**3
NULL_REF = "OpaqueRef:NULL"
ROOT_USERDEVICE = "0"
# other_config key of the VBDs of attached volumes (volumes.py sets it)
VOLUME_MARK = "compute-agent-volume-id"


@dataclass(frozen=True)
class SRFilter:
    """A parsed ``[xenserver] sr_matching_filter``."""

    kind: str  # "default-sr" or "other-config"
    key: str = ""
    value: str = ""

    def __str__(self) -> str:
        if self.kind == "default-sr":
            return "default-sr:true"
        return f"other-config:{self.key}={self.value}"


def parse_sr_filter(text: str) -> SRFilter:
    """``default-sr:true`` or ``other-config:KEY=VALUE``; ValueError else."""
    kind, sep, rest = (text or "").strip().partition(":")
    kind = kind.strip().lower()
    if not sep:
        raise ValueError(f"sr_matching_filter {text!r}: expected KIND:ARGUMENT")
    if kind == "default-sr":
        if rest.strip().lower() != "true":
            raise ValueError(f"sr_matching_filter {text!r}: only default-sr:true is meaningful")
        return SRFilter("default-sr")
    if kind == "other-config":
        key, eq, value = rest.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"sr_matching_filter {text!r}: expected other-config:KEY=VALUE")
        return SRFilter("other-config", key.strip(), value.strip())
    raise ValueError(
        f"sr_matching_filter {text!r}: unknown kind {kind!r} (default-sr or other-config)"
    )


def sr_matches(flt: SRFilter, record: dict[str, Any]) -> bool:
    """Whether an SR record matches an other-config filter."""
    return (record.get("other_config") or {}).get(flt.key) == flt.value


def root_vdi_record(instance: dict[str, Any], sr_ref: str, agent_host: str) -> dict[str, Any]:
    size = int(instance["flavor"]["root_gb"]) * GiB
    return {
        "name_label": f"{instance['name']} root",
        "name_description": f"root disk of instance {instance['uuid']}",
        "SR": sr_ref,
        "virtual_size": str(size),  # int64 travels as a string on XML-RPC
        "type": "user",
        "sharable": False,
        "read_only": False,
        "other_config": ownership.marks(
            instance["uuid"], agent_host, **{ownership.DISK_KEY: "root"}
        ),
        "xenstore_data": {},
        "sm_config": {},
        "tags": [],
    }


def vbd_record(vm_ref: str, vdi_ref: str, userdevice: str, bootable: bool) -> dict[str, Any]:
    return {
        "VM": vm_ref,
        "VDI": vdi_ref,
        "userdevice": userdevice,
        "bootable": bootable,
        "mode": "RW",
        "type": "Disk",
        "empty": False,
        "unpluggable": True,
        "other_config": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }


class Storage:
    def __init__(self, pool: SessionPool, runner: TaskRunner, sr_filter: SRFilter,
                 agent_host: str):
        self.pool = pool
        self.runner = runner
        self.sr_filter = sr_filter
        self.agent_host = agent_host
        # Set by the driver: the pool, to keep disks on an SR this host sees.
        self.pool_view: PoolView | None = None

    def find_sr(self) -> str:
        """The SR instance disks go on, per the configured filter. With
        ``default-sr``, the pool's default SR if this agent's host sees it
        (shared storage), else that host's own local SR."""
        if self.sr_filter.kind == "default-sr":
            view = self.pool_view
            pool_ref = view.pool_ref() if view is not None else \
                self.pool.call("pool.get_all")[0]
            sr = self.pool.call("pool.get_default_SR", pool_ref)
            if sr and sr != NULL_REF and (view is None
                                          or view.sr_visible_on(sr, view.host_ref())):
                return sr
            local = view.local_sr(view.host_ref()) if view is not None else None
            if local is not None:
                return local
        else:
            srs = self.pool.call("SR.get_all_records")
            for ref in sorted(srs):
                if sr_matches(self.sr_filter, srs[ref]):
                    return ref
        raise exceptions.HypervisorError(str(self.sr_filter), code="SR_NOT_FOUND")

    def create_root_disk(self, op: Operation, instance: dict[str, Any], vm_ref: str) -> str | None:
        """A blank root VDI of flavor root_gb on the filter's SR, attached
        as bootable userdevice 0. None when the flavor has no root disk."""
        root_gb = int(instance["flavor"].get("root_gb") or 0)
        if root_gb <= 0:
            LOG.info("Flavor of %s has no root disk; none created", instance["uuid"])
            return None
        sr = self.find_sr()
        vdi = self.runner.run(op, "VDI.create", root_vdi_record(instance, sr, self.agent_host))
        # If the VBD cannot be made, the VDI is still marked as the
        # instance's: the build's clean-up (marked_vdis) removes it.
        self.pool.call("VBD.create", vbd_record(vm_ref, vdi, ROOT_USERDEVICE, True))
        return vdi

    def vm_disks(self, vm_record: dict[str, Any], instance_uuid: str) -> list[str]:
        """The VDIs that die with the VM: those behind its disk VBDs that no
        other VM uses and that are not read-only or shared, plus its
        suspend image."""
        vdis: list[str] = []
        for vbd in vm_record.get("VBDs", []):
            try:
                rec = self.pool.call("VBD.get_record", vbd)
            except exceptions.HypervisorError as e:
                if e.code == "HANDLE_INVALID":
                    continue
                raise
            vdi = rec.get("VDI", NULL_REF)
            if rec.get("type") != "Disk" or not vdi or vdi == NULL_REF:
                continue
            if VOLUME_MARK in (rec.get("other_config") or {}):
                continue  # a volume: detached, never destroyed, with the VM
            try:
                vdi_rec = self.pool.call("VDI.get_record", vdi)
            except exceptions.HypervisorError as e:
                if e.code == "HANDLE_INVALID":
                    continue
                raise
            if vdi_rec.get("sharable") or vdi_rec.get("read_only"):
                continue
            if set(vdi_rec.get("VBDs", [])) - set(vm_record.get("VBDs", [])):
                continue  # attached to another VM as well: not ours to remove
            vdis.append(vdi)
        suspend = vm_record.get("suspend_VDI", NULL_REF)
        if suspend and suspend != NULL_REF:
            vdis.append(suspend)
        return vdis

    def root_vdi(self, vm_ref: str) -> str | None:
        """The VDI behind the VM's disk VBD at userdevice 0, or None."""
        vbd = self.root_vbd(vm_ref)
        return None if vbd is None else self.pool.call("VBD.get_VDI", vbd)

    def root_vbd(self, vm_ref: str) -> str | None:
        """The VM's disk VBD at userdevice 0 (with a VDI), or None."""
        for vbd in self.pool.call("VM.get_VBDs", vm_ref):
            rec = self.pool.call("VBD.get_record", vbd)
            if rec.get("userdevice") == ROOT_USERDEVICE and rec.get("type") == "Disk" and \
                    rec.get("VDI") not in (None, "", NULL_REF):
                return vbd
        return None

    def disk_kind(self, vdi: str) -> str | None:
        """Which disk of its instance the VDI is marked as (None: gone or unmarked)."""
        try:
            return ownership.disk_of({"other_config": self.pool.call(
                "VDI.get_other_config", vdi)})
        except exceptions.HypervisorError as e:
            if e.code == "HANDLE_INVALID":
                return None
            raise

    def mark_disk(self, vdi: str, values: dict[str, str | None]) -> None:
        """Set (a str) or remove (None) keys of a VDI's other_config."""
        for key, value in values.items():
            self.pool.call("VDI.remove_from_other_config", vdi, key)
            if value is not None:
                self.pool.call("VDI.add_to_other_config", vdi, key, value)

    def marked_vdis(self, instance_uuid: str) -> list[str]:
        """VDIs marked as this instance's (left behind by an interrupted
        build or a crashed agent)."""
        recs = self.pool.call("VDI.get_all_records")
        return sorted(
            ref for ref, rec in recs.items()
            if ownership.instance_of(rec) == instance_uuid
            and ownership.owned_by(rec, self.agent_host)
        )

    def destroy_vdis(self, op: Operation, vdis: list[str]) -> None:
        """Destroy VDIs; one already gone is fine."""
        for vdi in dict.fromkeys(vdis):
            try:
                self.runner.run(op, "VDI.destroy", vdi)
            except exceptions.HypervisorError as e:
                if e.code != "HANDLE_INVALID":
                    raise
