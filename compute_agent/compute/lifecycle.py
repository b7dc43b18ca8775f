"""The requests of RPC 1.2 (issue 8) that change a running instance's life
without creating or removing it: pause / unpause, suspend / resume, rescue /
unrescue, and a resize on the same host with its confirm and revert.

Each is a row of the request table (requests.py) run by the generic runner
(runner.py); what is particular to one is here: its own arguments, checked
before it is accepted, and the driver call it makes. The states:

  pause          active             -> pausing            -> paused
  unpause        paused             -> unpausing          -> active
  suspend        active             -> suspending         -> suspended
  resume         suspended          -> resuming           -> active
  rescue         active|stopped|error -> rescuing         -> rescued
  unrescue       rescued            -> unrescuing         -> active
  resize         active|stopped     -> resize_migrating   -> resized (new flavor)
  confirm_resize resized            -> resize_confirming  -> active|stopped
  revert_resize  resized            -> resize_reverting   -> active|stopped (old flavor)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from compute_agent import exceptions
from compute_agent.compute.runner import RequestRunner
from compute_agent.compute.validation import (
    validate_flavor,
    validate_rescue_image,
    validate_uuid,
)
from compute_agent.context import RequestContext


def flavor_check(uuid: str, new: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """A resize's checks of the new flavor against the instance's (also a
    resize to another host's, compute/cross_resize.py)."""

    def check(inst: dict[str, Any]) -> None:
        old = inst.get("flavor") or {}
        if {k: old.get(k) for k in new} == new:
            raise exceptions.FlavorUnchanged(uuid)
        if new["root_gb"] < int(old.get("root_gb") or 0):
            raise exceptions.ResizeDiskTooSmall(uuid, old.get("root_gb"), new["root_gb"])

    return check


class Lifecycle:
    """Accepts the requests above for one manager."""

    def __init__(self, runner: RequestRunner):
        self.runner = runner

    @property
    def driver(self) -> Any:
        return self.runner.driver

    def _simple(self, ctxt: RequestContext, instance_uuid: Any, request: str) -> dict[str, Any]:
        call = getattr(self.driver, request)
        return self.runner.accept(ctxt, instance_uuid, request,
                                  lambda op, inst: call(op, inst))

    def pause(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        return self._simple(ctxt, instance_uuid, "pause")

    def unpause(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        return self._simple(ctxt, instance_uuid, "unpause")

    def suspend(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        return self._simple(ctxt, instance_uuid, "suspend")

    def resume(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        return self._simple(ctxt, instance_uuid, "resume")

    def rescue(self, ctxt: RequestContext, instance_uuid: Any,
               rescue_image: Any = None) -> dict[str, Any]:
        try:
            image = validate_rescue_image(rescue_image)
        except exceptions.InvalidInput as exc:
            self.runner.outcomes.refused(ctxt, None, "rescue", exc)
            raise
        return self.runner.accept(ctxt, instance_uuid, "rescue",
                                  lambda op, inst: self.driver.rescue(op, inst, image))

    def unrescue(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        return self.runner.accept(ctxt, instance_uuid, "unrescue",
                                  lambda op, inst: self.driver.unrescue(op, inst))

    def resize(self, ctxt: RequestContext, instance_uuid: Any, flavor: Any) -> dict[str, Any]:
        """Refused before anything changes: a bad flavor (INVALID_INPUT), the
        flavor the instance has (FLAVOR_UNCHANGED), a smaller root disk
        (RESIZE_DISK_TOO_SMALL). The flavor checks are made again under the
        instance's lock when the request is accepted."""
        r = self.runner
        try:
            new = validate_flavor(flavor)
            uuid = validate_uuid(instance_uuid)
        except exceptions.InvalidInput as exc:
            r.outcomes.refused(ctxt, None, "resize", exc)
            raise

        check = flavor_check(uuid, new)

        def call(op: Any, inst: dict[str, Any]) -> dict[str, Any]:
            self.driver.resize(op, inst, new)
            return {"flavor": new}

        return r.accept(ctxt, uuid, "resize", call, check=check)

    def confirm_resize(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        return self.runner.accept(ctxt, instance_uuid, "confirm_resize",
                                  lambda op, inst: self.driver.confirm_resize(op, inst))

    def revert_resize(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        return self.runner.accept(ctxt, instance_uuid, "revert_resize",
                                  lambda op, inst: self.driver.revert_resize(op, inst))
