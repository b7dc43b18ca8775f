"""Resize to another host: a cold migration, then the same-host resize at
the destination, with confirm and revert across hosts.

Source agent (``migrate_instance`` with a flavor): the flavor is checked as
a resize's (INVALID_INPUT, FLAVOR_UNCHANGED, RESIZE_DISK_TOO_SMALL), then a
cold migration of kind ``resize`` runs (migration.py): the new and the old
flavor are written in its migration row before the VM moves. Once the
instance's row moved to the destination (stopped), the source marks the
migration ``resize_asked`` and asks the destination agent to resize it
(``resize_instance``: the same-host resize, which keeps a marked clone of
the root disk and the old flavor on the VM until confirm) -> ``resized``.

Destination agent, which owns the instance from then on:

- ``confirm_resize``: the same-host confirm (the backup clone goes); the
  migration is marked ``confirmed``. The source has nothing left to clean:
  ``VM.migrate_send`` removed its VM and disks when the move succeeded.
- ``revert_resize``: the migration is marked ``reverting``; the same-host
  revert puts the root disk's backup back in place (its contents and size)
  and the old vCPUs and memory; then a cold migration takes the instance
  back to the source host.

Recovery (a sweep at every agent start, on both sides): a resize move that
landed but whose destination was never asked to resize is asked now; a
revert that restored the disk but never moved back moves back now. The
requests themselves settle as every request does (resize rolls back,
revert completes, the migration's own rules for the move).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from compute_agent import exceptions
from compute_agent.compute import states
from compute_agent.compute.lifecycle import Lifecycle, flavor_check
from compute_agent.compute.migration import COLD, RESIZE, LiveMigrations
from compute_agent.compute.requests import timeout_of
from compute_agent.compute.runner import RequestRunner
from compute_agent.compute.validation import validate_flavor, validate_uuid
from compute_agent.context import RequestContext, new_context
from compute_agent.db import instance_migrations as im

LOG = logging.getLogger(__name__)

ASKED, CONFIRMED, REVERTING = "resize_asked", "confirmed", "reverting"
SETTLE_POLL = 0.2  # seconds between looks at an instance recovery is settling


class CrossHostResizes:
    def __init__(self, runner: RequestRunner, migrations: LiveMigrations,
                 lifecycle: Lifecycle, peers: Callable[[], Any]):
        self.runner = runner
        self.migrations = migrations
        self.lifecycle = lifecycle
        self.peers = peers
        self.db = runner.db
        self.host = migrations.host
        self.records = migrations.records
        migrations.after_resize_move = self.ask_destination
        self._asking = threading.Lock()

    # -- source ------------------------------------------------------------------------
    def accept(self, ctxt: RequestContext, instance_uuid: Any, dest_host: Any,
               flavor: Any) -> dict[str, Any]:
        try:
            new = validate_flavor(flavor)
            uuid = validate_uuid(instance_uuid)
        except exceptions.InvalidInput as exc:
            self.runner.outcomes.refused(ctxt, None, RESIZE.request, exc)
            raise
        return self.migrations.accept(ctxt, uuid, dest_host, kind=RESIZE, flavor=new,
                                      check=flavor_check(uuid, new))

    def ask_destination(self, ctxt: RequestContext, uuid: str, row: dict[str, Any]) -> None:
        """The VM landed at the destination: it applies the new flavor."""
        with self._asking:  # recovery's settler and its sweep may both get here
            row = self.records.get(row["id"])
            info = row.get("dest_info") or {}
            if info.get(ASKED):
                return
            self._mark(row, ASKED)
        try:
            self.peers().resize_instance(row["dest_host"], uuid, info["flavor"], ctxt=ctxt,
                                         confirm=True)
            LOG.info("Asked %s to resize instance %s", row["dest_host"], uuid)
        except exceptions.ComputeAgentError as exc:
            # It stays stopped at the destination with its old flavor.
            LOG.warning("Destination %s did not take the resize of %s: %s",
                        row["dest_host"], uuid, exc.code)
            self.db.add_instance_fault(uuid, exc.code, exc.params, exc.message)

    # -- destination -------------------------------------------------------------------
    def landed_here(self, uuid: str) -> dict[str, Any] | None:
        """The instance's last migration, if it is a resize to this host
        that is neither confirmed nor being reverted."""
        rows = self.records.list_for(uuid)
        row = rows[-1] if rows else None
        if row is None or row["kind"] != RESIZE.record or row["dest_host"] != self.host \
                or row["status"] != im.COMPLETED:
            return None
        info = row.get("dest_info") or {}
        return None if info.get(CONFIRMED) or info.get(REVERTING) else row

    def confirm(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        accepted = self.lifecycle.confirm_resize(ctxt, instance_uuid)
        row = self.landed_here(accepted["uuid"])
        if row is not None:
            self._mark(row, CONFIRMED)
        return accepted

    def revert(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        uuid = validate_uuid(instance_uuid)
        row = self.landed_here(uuid)
        if row is None:
            return self.lifecycle.revert_resize(ctxt, uuid)

        def run(c: RequestContext, u: str, request: str, task_state: str, call: Any) -> None:
            self._mark(self.records.get(row["id"]), REVERTING)
            self.runner.run_request(c, u, request, task_state, call)
            self.move_back(c, u, row)

        return self.runner.accept(ctxt, uuid, "revert_resize",
                                  lambda op, inst: self.runner.driver.revert_resize(op, inst),
                                  run=run)

    def move_back(self, ctxt: RequestContext, uuid: str, row: dict[str, Any]) -> None:
        """The reverted instance goes back to the host it came from."""
        inst = self.db.get_instance(uuid, internal=True)
        if inst["host"] != self.host or inst["task_state"] is not None or \
                inst["vm_state"] != states.STOPPED:
            LOG.warning("Instance %s is %s/%s after its revert; it stays on %s", uuid,
                        inst["vm_state"], inst["task_state"], inst["host"])
            return
        try:
            self.migrations.accept(ctxt, uuid, row["source_host"], kind=COLD)
        except exceptions.ComputeAgentError as exc:
            LOG.warning("Could not move %s back to %s: %s", uuid, row["source_host"], exc.code)

    # -- recovery ----------------------------------------------------------------------
    def sweep(self, ctxt: RequestContext) -> list[str]:
        """Finish the steps between requests that a crash cut off."""
        done = []
        for row in self.records.list_of_kind(RESIZE.record, self.host):
            uuid = row["instance_uuid"]
            if self.records.list_for(uuid)[-1]["id"] != row["id"]:
                continue  # a later migration superseded it
            if uuid in self.runner.workers.busy():
                continue  # a request of this process is on it and takes the next step
            try:
                inst = self._settled(uuid)
            except exceptions.InstanceNotFound:
                continue
            if inst["task_state"] is not None or inst["vm_state"] != states.STOPPED:
                continue
            info = row.get("dest_info") or {}
            c = new_context(request_id=row.get("request_id") or None, instance_uuid=uuid)
            if row["source_host"] == self.host and not info.get(ASKED) and \
                    inst["host"] == row["dest_host"]:
                LOG.warning("Resize move of %s landed on %s unasked; asking it now", uuid,
                            row["dest_host"])
                self.ask_destination(c, uuid, row)
                done.append(uuid)
            elif row["dest_host"] == self.host and info.get(REVERTING) and \
                    inst["host"] == self.host:
                LOG.warning("Revert of %s did not move it back to %s; moving it now", uuid,
                            row["source_host"])
                self.move_back(c, uuid, row)
                done.append(uuid)
        return done

    def _settled(self, uuid: str) -> dict[str, Any]:
        """The instance, once recovery settled a revert a crash cut off
        (recovery settles instances while the sweeps run, side by side)."""
        deadline = time.monotonic() + timeout_of(self.runner.conf, "revert_resize")
        while True:
            inst = self.db.get_instance(uuid, internal=True)
            if inst["task_state"] != states.RESIZE_REVERTING or inst["host"] != self.host \
                    or time.monotonic() > deadline:
                return inst
            time.sleep(SETTLE_POLL)

    def _mark(self, row: dict[str, Any], key: str) -> None:
        info = dict(row.get("dest_info") or {})
        info[key] = True
        self.records.update(row["id"], {"dest_info": info})
