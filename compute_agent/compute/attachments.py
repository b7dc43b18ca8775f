"""Volumes and ports of instances: attach and detach (RPC 1.4), the rows
that record them, the ones a build brings, clean-up on delete, and
reconciliation after a restart.

Every attach writes its row (status ``attaching``) before dom0 is touched
and marks it ``attached`` once dom0 has the device; a detach marks it
``detaching`` first and deletes it when dom0 is clean. So a crash at any
point leaves a row that says what was under way, and ``reconcile`` (run
with recovery, on start and after a reconnect) makes the database and dom0
agree:

- ``attaching``: finished (``attached``) if dom0 has the device, plugged
  when the VM runs; otherwise undone in dom0 and the row removed, with a
  fault OPERATION_INTERRUPTED [uuid, attach_volume|attach_interface].
- ``detaching``: the detach is finished and the row removed.
- ``attached`` but gone from dom0: the row is removed (logged).
- in dom0 with no row (an interrupted build): recorded as ``attached``.
- rows of deleted instances: detached in dom0 and removed.

CHAP credentials and connection_info are never stored: a row keeps the
target's portal, IQN and LUN and the SR uuid.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from compute_agent import exceptions
from compute_agent.compute import states
from compute_agent.compute.instance_calls import InstanceCalls
from compute_agent.compute.requests import driver_view
from compute_agent.compute.runner import RequestRunner
from compute_agent.compute.validation_devices import (
    validate_connection_info,
    validate_device,
    validate_item_id,
    validate_port,
)
from compute_agent.context import RequestContext
from compute_agent.db.attachments import (
    ATTACHED,
    ATTACHING,
    DETACHING,
    AttachmentExists,
    AttachmentNotFound,
    AttachmentTable,
)
from compute_agent.driver.base import Operation

LOG = logging.getLogger(__name__)


def _target_fields(connection_info: Any) -> dict[str, Any]:
    """What a row keeps of connection_info: no credentials."""
    data = connection_info.get("data") if isinstance(connection_info, dict) else None
    data = data if isinstance(data, dict) else {}
    lun = data.get("target_lun")
    return {"target_portal": str(data.get("target_portal") or "")[:255] or None,
            "target_iqn": str(data.get("target_iqn") or "")[:255] or None,
            "target_lun": lun if isinstance(lun, int) and not isinstance(lun, bool) else None}


def chap_secrets(connection_info: Any) -> tuple[str, ...]:
    data = connection_info.get("data") if isinstance(connection_info, dict) else None
    if not isinstance(data, dict):
        return ()
    return tuple(str(data[k]) for k in ("auth_password", "auth_username")
                 if isinstance(data.get(k), str) and len(data[k]) >= 4)


class Attachments:
    """Volume and port requests for one manager."""

    def __init__(self, runner: RequestRunner, calls: InstanceCalls):
        self.r = runner
        self.calls = calls
        self.volumes = AttachmentTable(runner.db, "volume")
        self.ports = AttachmentTable(runner.db, "port")

    # -- volumes ---------------------------------------------------------------------------
    def attach_volume(self, ctxt: RequestContext, instance_uuid: Any, volume_id: Any,
                      connection_info: Any, device: Any = None) -> dict[str, Any]:
        volume_id = validate_item_id(volume_id, "volume_id", "volume_id")
        connection_info = validate_connection_info(connection_info)
        device = validate_device(device)
        secrets = chap_secrets(connection_info)
        with self.calls.run(ctxt, instance_uuid, "attach_volume", secrets) as (inst, op):
            uuid = inst["uuid"]
            elsewhere = self.volumes.find(volume_id)
            if elsewhere is not None:
                # one volume, one instance (no multi-attach)
                raise AttachmentExists("volume", volume_id, elsewhere["instance_uuid"])
            self.volumes.add({"instance_uuid": uuid, "volume_id": volume_id,
                              "host": self.r.host, "status": ATTACHING,
                              "request_id": ctxt.request_id, **_target_fields(connection_info)})
            try:
                got = self.r.driver.attach_volume(op, inst, volume_id, connection_info, device)
            except BaseException:
                self.volumes.delete(uuid, volume_id)
                raise
            return self.volumes.update(uuid, volume_id, {
                "status": ATTACHED, "device": got.get("device"), "sr_uuid": got.get("sr_uuid"),
                "vdi_uuid": got.get("vdi_uuid"), "vbd_uuid": got.get("vbd_uuid")})

    def detach_volume(self, ctxt: RequestContext, instance_uuid: Any,
                      volume_id: Any) -> dict[str, Any]:
        volume_id = validate_item_id(volume_id, "volume_id", "volume_id")
        with self.calls.run(ctxt, instance_uuid, "detach_volume") as (inst, op):
            uuid = inst["uuid"]
            row = self.volumes.find(volume_id, uuid)
            if row is None:
                raise AttachmentNotFound("volume", volume_id, uuid)
            self.volumes.update(uuid, volume_id, {"status": DETACHING})
            self.r.driver.detach_volume(op, inst, volume_id, _hint(row))
            self.volumes.delete(uuid, volume_id)
            return {"instance_uuid": uuid, "volume_id": volume_id, "detached": True}

    # -- ports -------------------------------------------------------------------------------
    def attach_interface(self, ctxt: RequestContext, instance_uuid: Any,
                         port: Any) -> dict[str, Any]:
        port = validate_port(port)
        port_id = port["id"]
        with self.calls.run(ctxt, instance_uuid, "attach_interface") as (inst, op):
            uuid = inst["uuid"]
            self.ports.add({"instance_uuid": uuid, "port_id": port_id, "host": self.r.host,
                            "status": ATTACHING, "request_id": ctxt.request_id,
                            "mac_address": str(port.get("mac_address") or "")[:17] or None,
                            "network": str(port.get("network") or "")[:255] or None})
            try:
                got = self.r.driver.attach_interface(op, inst, port)
            except BaseException:
                self.ports.delete(uuid, port_id)
                raise
            return self.ports.update(uuid, port_id, {
                "status": ATTACHED, "mac_address": got.get("mac_address"),
                "network": got.get("network"), "device": got.get("device"),
                "vif_uuid": got.get("vif_uuid")})

    def detach_interface(self, ctxt: RequestContext, instance_uuid: Any,
                         port_id: Any) -> dict[str, Any]:
        port_id = validate_item_id(port_id, "port_id", "port_id")
        with self.calls.run(ctxt, instance_uuid, "detach_interface") as (inst, op):
            uuid = inst["uuid"]
            if self.ports.find(port_id, uuid) is None:
                raise AttachmentNotFound("port", port_id, uuid)
            self.ports.update(uuid, port_id, {"status": DETACHING})
            self.r.driver.detach_interface(op, inst, port_id)
            self.ports.delete(uuid, port_id)
            return {"instance_uuid": uuid, "port_id": port_id, "detached": True}

    def list_attachments(self, instance_uuid: str) -> dict[str, list[dict[str, Any]]]:
        return {"volumes": self.volumes.list(instance_uuid),
                "ports": self.ports.list(instance_uuid)}

    # -- build and delete ------------------------------------------------------------------
    def record_build(self, uuid: str, spec: dict[str, Any], request_id: str) -> None:
        """After a build: rows for its volumes and ports, from what dom0 has."""
        try:
            self.reconcile_instance(uuid, request_id=request_id, building=True)
        except Exception:
            LOG.exception("Could not record the attachments of %s", uuid)

    def release_deleted(self, op: Operation, inst: dict[str, Any]) -> None:
        """After a delete: every volume released in dom0, every row gone."""
        for row in self.volumes.list(inst["uuid"]):
            try:
                self.r.driver.detach_volume(op, driver_view(inst), row["volume_id"],
                                            _hint(row))
            except NotImplementedError:
                pass  # a driver without volumes has nothing to release
            self.volumes.delete(inst["uuid"], row["volume_id"])
        for row in self.ports.list(inst["uuid"]):
            self.ports.delete(inst["uuid"], row["port_id"])

    # -- recovery ----------------------------------------------------------------------------
    def reconcile_after(self, run: Any, reason: str, busy: Callable[[], set[str]]) -> None:
        """In a thread of its own: wait for a recovery run to settle its
        instances, then reconcile."""
        def work() -> None:
            try:
                run.wait()
                changed = self.reconcile(busy())
                if changed:
                    LOG.info("Attachments reconciled (%s): %d rows changed", reason, changed)
            except Exception:
                LOG.exception("Reconciling attachments (%s) failed", reason)

        threading.Thread(target=work, name=f"reconcile-attachments-{reason}",
                         daemon=True).start()

    def reconcile(self, busy: set[str]) -> int:
        """Make rows and dom0 agree for every instance of this host that
        has rows or is not deleted (see the module docstring). Returns how
        many rows changed."""
        rows: dict[str, set[tuple[str, str, str]]] = {}
        for kind, table in (("volume", self.volumes), ("port", self.ports)):
            for r in table.list(host=self.r.host):
                rows.setdefault(r["instance_uuid"], set()).add(
                    (kind, r[table.key], r["status"]))
        uuids = set(rows) | {i["uuid"] for i in self.r.db.list_instances(host=self.r.host)}
        try:
            # One look at all of dom0 picks the instances worth a closer one.
            seen = self.r.driver.attachment_ids()
            uuids = {u for u in uuids if _disagree(rows.get(u, set()), seen.get(u, set()))}
        except NotImplementedError:
            pass
        changed = 0
        for uuid in sorted(uuids - busy):
            with self.r.locks.hold(uuid):
                if uuid in self.r.workers.busy():
                    continue
                try:
                    changed += self.reconcile_instance(uuid)
                except exceptions.HypervisorUnavailable:
                    raise
                except Exception:
                    LOG.exception("Could not reconcile the attachments of %s", uuid)
        return changed

    def reconcile_instance(self, uuid: str, request_id: str | None = None,
                           building: bool = False) -> int:
        """Reconcile one instance (``building``: its own build, which still
        holds task_state spawning, records what it attached)."""
        inst = self.r.db.get_instance(uuid, internal=True)
        op = Operation(uuid, "reconcile_attachments", request_id or "recovery",
                       timeout=float(self.r.conf.tasks.default_timeout))
        view = driver_view(inst)
        if inst["vm_state"] == states.DELETED and inst["task_state"] is None:
            before = len(self.volumes.list(uuid)) + len(self.ports.list(uuid))
            self.release_deleted(op, inst)
            return before
        if inst["task_state"] is not None and not building:
            return 0  # recovery settles the instance first; the next run does this
        try:
            dom0 = self.r.driver.list_attachments(view)
        except NotImplementedError:
            return 0
        changed = self._reconcile_kind(op, view, "volume", self.volumes, dom0["volumes"])
        return changed + self._reconcile_kind(op, view, "port", self.ports, dom0["ports"])

    def _reconcile_kind(self, op: Operation, inst: dict[str, Any], kind: str,
                        table: AttachmentTable, found: dict[str, dict[str, Any]]) -> int:
        uuid = inst["uuid"]
        running = inst.get("power_state") == 1
        changed = 0
        rows = {r[table.key]: r for r in table.list(uuid)}
        for item_id, row in rows.items():
            seen = found.get(item_id)
            complete = seen is not None and (seen.get("currently_attached") or not running)
            if row["status"] == ATTACHING and complete:
                table.update(uuid, item_id, _dom0_fields(kind, seen))
                LOG.warning("Recovered the attach of %s %s to %s: attached", kind, item_id, uuid)
            elif row["status"] in (ATTACHING, DETACHING):
                self._undo(op, inst, kind, item_id, row)
                table.delete(uuid, item_id)
                if row["status"] == ATTACHING:
                    err = exceptions.ComputeAgentError(
                        uuid, f"attach_{'volume' if kind == 'volume' else 'interface'}",
                        code="OPERATION_INTERRUPTED")
                    self.r.db.add_instance_fault(uuid, err.code, err.params, err.message)
                LOG.warning("Recovered the %s of %s %s on %s: undone", row["status"], kind,
                            item_id, uuid)
            elif seen is None:
                table.delete(uuid, item_id)
                LOG.warning("%s %s of %s is gone from dom0; row removed", kind, item_id, uuid)
            else:
                continue
            changed += 1
        for item_id, seen in found.items():
            if item_id not in rows:
                table.add({"instance_uuid": uuid, table.key: item_id, "host": self.r.host,
                           **_dom0_fields(kind, seen)})
                changed += 1
        return changed

    def _undo(self, op: Operation, inst: dict[str, Any], kind: str, item_id: str,
              row: dict[str, Any]) -> None:
        if kind == "volume":
            self.r.driver.detach_volume(op, inst, item_id, _hint(row))
        else:
            self.r.driver.detach_interface(op, inst, item_id)


def _disagree(rows: set[tuple[str, str, str]], seen: set[tuple[str, str]]) -> bool:
    """Whether an instance's rows and what dom0 shows may differ: a row in
    transition, or not the same (kind, id) pairs on both sides."""
    if any(status != ATTACHED for _, _, status in rows):
        return True
    return {(kind, item) for kind, item, _ in rows} != seen


def _dom0_fields(kind: str, seen: dict[str, Any]) -> dict[str, Any]:
    if kind == "volume":
        device = seen.get("device")
        name = f"xvd{chr(ord('a') + int(device))}" if str(device).isdigit() and \
            int(device) < 26 else device
        return {"status": ATTACHED, "device": name, "sr_uuid": seen.get("sr_uuid"),
                "vdi_uuid": seen.get("vdi_uuid"), "vbd_uuid": seen.get("vbd_uuid")}
    return {"status": ATTACHED, "device": seen.get("device"),
            "mac_address": seen.get("mac_address"), "vif_uuid": seen.get("vif_uuid")}


def _hint(row: dict[str, Any]) -> dict[str, Any]:
    """Where a volume's storage is, as a row knows it (the driver finds its
    SR from this even when the attach died before recording it)."""
    return {k: row.get(k) for k in ("sr_uuid", "target_portal", "target_iqn")}
