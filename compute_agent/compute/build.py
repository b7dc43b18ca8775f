"""Accepting and running a build: the one request that creates its instance.

A build differs from the other requests (runner.py) in three ways: it
validates a whole instance spec, not a uuid; a build of a known uuid is a
no-op that returns the instance (idempotent); and it waits for a build slot
(build_slots.py) before it reaches the hypervisor, so at most
``max_concurrent_builds`` run at once and the rest queue.
"""

from __future__ import annotations

import logging
from typing import Any

from compute_agent import exceptions
from compute_agent import notifications as notif
from compute_agent.compute import states
from compute_agent.compute.build_slots import BuildSlots
from compute_agent.compute.runner import RequestRunner
from compute_agent.compute.validation import validate_instance
from compute_agent.context import RequestContext
from compute_agent.db.types import utcnow
from compute_agent.driver import power_state

LOG = logging.getLogger(__name__)


class Builder:
    """Accepts and runs builds for one manager."""

    def __init__(self, runner: RequestRunner, slots: BuildSlots):
        self.runner = runner
        self.slots = slots

    def accept(self, ctxt: RequestContext, instance: Any) -> dict[str, Any]:
        """Accept a build. A known uuid is a no-op returning the instance."""
        r = self.runner
        r.refuse_if_stopping()
        try:
            spec = validate_instance(instance)
        except exceptions.InvalidInput as exc:
            r.outcomes.refused_build(ctxt, instance, exc, r.host, r.locks)
            raise
        uuid = spec["uuid"]
        try:
            r.refuse_if_no_hypervisor()
        except exceptions.HypervisorUnavailable as exc:
            r.outcomes.refused(ctxt, None, "build", exc)
            raise
        with r.locks.hold(uuid):
            try:
                existing = r.db.get_instance(uuid)
            except exceptions.InstanceNotFound:
                existing = None
            if existing is not None:
                LOG.info("Build of known instance %s ignored (vm_state %s)", uuid,
                         existing["vm_state"])
                return existing
            r.workers.claim(uuid)
            try:
                created = r.db.create_instance({
                    **spec,
                    "host": r.host,
                    "vm_state": states.BUILDING,
                    "task_state": states.SPAWNING,
                    "power_state": power_state.NOSTATE,
                    "progress": 0,
                })
            except exceptions.InstanceExists:
                # Another agent sharing the database created it first.
                r.workers.release(uuid)
                return r.db.get_instance(uuid)
            except BaseException:
                r.workers.release(uuid)
                raise
            r.outcomes.action_start(ctxt, uuid, "build")
            self.slots.queue(uuid)
        r.notifier.action(ctxt, "create", notif.START, created)
        r.workers.spawn(ctxt, uuid, "build", self._run, spec)
        return created

    def _run(self, ctxt: RequestContext, uuid: str, spec: dict[str, Any]) -> None:
        r = self.runner
        op = r.operation(ctxt, uuid, "spawn")
        r.outcomes.event_start(ctxt, uuid, "build")
        try:
            with self.slots.slot(uuid):
                LOG.debug("Driver spawn of %s (timeout %s s)", uuid, op.timeout)
                info = r.driver.spawn(op, spec)
        except BaseException as exc:
            r.outcomes.fail(ctxt, uuid, "build", exc, settle=lambda inst: (states.ERROR, None))
            return
        r.outcomes.succeed(ctxt, uuid, "build", states.SPAWNING, {
            "vm_state": states.ACTIVE,
            "power_state": info.power_state,
            "vm_ref": info.vm_ref,
            "progress": 100,
            "launched_at": utcnow(),
        })
