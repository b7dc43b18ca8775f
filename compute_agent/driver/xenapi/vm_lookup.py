"""Finding an instance's VM in dom0: by the ref last seen, then by name,
then among every VM's marks (the event stream's records when it is in
step, so a VM that is not there costs no scan of dom0). VMOps (vm_ops.py)
inherits it and provides the attributes declared here."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.xenapi import ownership
from compute_agent.driver.xenapi.session import SessionPool


class VMLookup:
    # Set up by VMOps.__init__ (and vm_cache by the driver).
    pool: SessionPool
    agent_host: str
    vm_cache: Callable[[], dict[str, dict[str, Any]] | None] | None
    _refs: dict[str, str]
    _lock: threading.Lock

    def lookup(self, instance: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """(ref, record) of the instance's VM, or None."""
        uuid = instance["uuid"]
        with self._lock:
            ref = self._refs.get(uuid)
        if ref is not None:
            rec = self._record(ref)
            if rec is not None and ownership.instance_of(rec) == uuid:
                return ref, rec
        found = self._search(uuid, instance.get("name"))
        with self._lock:
            if found is None:
                self._refs.pop(uuid, None)
            else:
                self._refs[uuid] = found[0]
        return found

    def _record(self, ref: str) -> dict[str, Any] | None:
        try:
            return self.pool.call("VM.get_record", ref)
        except exceptions.HypervisorError as e:
            if e.code == "HANDLE_INVALID":
                return None
            raise

    def _search(self, uuid: str, name: str | None) -> tuple[str, dict[str, Any]] | None:
        # By name first (one small answer), then every VM: the name may have
        # changed or been reused.
        if name:
            label = name.replace("\\", "\\\\").replace('"', '\\"')
            recs = self.pool.call("VM.get_all_records_where", f'field "name_label" = "{label}"')
            for ref, rec in sorted(recs.items()):
                if self._is_instance_vm(rec, uuid):
                    return ref, rec
        # Templates included: a clone interrupted before it was made an
        # ordinary VM is still the instance's.
        cached = self.vm_cache() if self.vm_cache is not None else None
        if cached is None:
            recs = self.pool.call("VM.get_all_records_where",
                                  'field "is_control_domain" = "false"')
        else:
            recs = {ref: rec for ref, rec in cached.items() if not rec.get("is_control_domain")}
        for ref, rec in sorted(recs.items()):
            if self._is_instance_vm(rec, uuid):
                if cached is None:
                    return ref, rec
                fresh = self._record(ref)  # the stream's copy may be a moment old
                if fresh is not None and self._is_instance_vm(fresh, uuid):
                    return ref, fresh
        return None

    @staticmethod
    def _is_instance_vm(rec: dict[str, Any], uuid: str) -> bool:
        return (ownership.instance_of(rec) == uuid and not rec.get("is_a_snapshot")
                and not ownership.is_rescue(rec))

    def require(self, instance: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        found = self.lookup(instance)
        if found is None:
            raise exceptions.InstanceNotFound(instance["uuid"])
        return found

    def list_instance_uuids(self) -> list[str]:
        recs = self.pool.call(
            "VM.get_all_records_where",
            'field "is_a_template" = "false" and field "is_control_domain" = "false"',
        )
        uuids = {
            ownership.instance_of(rec)
            for rec in recs.values()
            if ownership.owned_by(rec, self.agent_host) and not rec.get("is_a_snapshot")
        }
        return sorted(u for u in uuids if u)
