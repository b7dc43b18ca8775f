"""The manager's RPC 1.2 methods: pause/unpause, suspend/resume,
rescue/unrescue and resize with its confirm and revert. Each hands its
request to compute/lifecycle.py (or cross_resize.py, which also knows a
resize to another host). A mixin of ComputeManager (manager.py)."""

from __future__ import annotations

from typing import Any

from compute_agent.context import RequestContext


class LifecycleMethods:
    # Set up by ComputeManager.__init__.
    _lifecycle: Any
    _cross_resizes: Any

    def pause_instance(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        return self._lifecycle.pause(ctxt, instance_uuid)

    def unpause_instance(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        return self._lifecycle.unpause(ctxt, instance_uuid)

    def suspend_instance(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        return self._lifecycle.suspend(ctxt, instance_uuid)

    def resume_instance(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        return self._lifecycle.resume(ctxt, instance_uuid)

    def rescue_instance(self, ctxt: RequestContext, instance_uuid: Any,
                        rescue_image: Any = None) -> dict[str, Any]:
        return self._lifecycle.rescue(ctxt, instance_uuid, rescue_image)

    def unrescue_instance(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        return self._lifecycle.unrescue(ctxt, instance_uuid)

    def resize_instance(self, ctxt: RequestContext, instance_uuid: Any,
                        flavor: Any) -> dict[str, Any]:
        return self._lifecycle.resize(ctxt, instance_uuid, flavor)

    def confirm_resize(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        return self._cross_resizes.confirm(ctxt, instance_uuid)

    def revert_resize(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        """After a resize to this host, the instance also goes back to its
        original host (compute/cross_resize.py)."""
        return self._cross_resizes.revert(ctxt, instance_uuid)
