"""The manager's RPC 1.4 methods: volumes and ports (compute/attachments.py)
and the guest agent's commands (compute/guest_requests.py). A mixin of
ComputeManager (manager.py)."""

from __future__ import annotations

from typing import Any

from compute_agent.context import RequestContext


class DeviceMethods:
    # Set up by ComputeManager.__init__.
    _attachments: Any
    _guest: Any

    def attach_volume(self, ctxt: RequestContext, instance_uuid: Any, volume_id: Any,
                      connection_info: Any, device: Any = None) -> dict[str, Any]:
        return self._attachments.attach_volume(ctxt, instance_uuid, volume_id,
                                               connection_info, device)

    def detach_volume(self, ctxt: RequestContext, instance_uuid: Any,
                      volume_id: Any) -> dict[str, Any]:
        return self._attachments.detach_volume(ctxt, instance_uuid, volume_id)

    def attach_interface(self, ctxt: RequestContext, instance_uuid: Any,
                         port: Any) -> dict[str, Any]:
        return self._attachments.attach_interface(ctxt, instance_uuid, port)

    def detach_interface(self, ctxt: RequestContext, instance_uuid: Any,
                         port_id: Any) -> dict[str, Any]:
        return self._attachments.detach_interface(ctxt, instance_uuid, port_id)

    def set_admin_password(self, ctxt: RequestContext, instance_uuid: Any,
                           password: Any) -> dict[str, Any]:
        return self._guest.set_admin_password(ctxt, instance_uuid, password)

    def inject_file(self, ctxt: RequestContext, instance_uuid: Any, path: Any,
                    contents: Any) -> dict[str, Any]:
        return self._guest.inject_file(ctxt, instance_uuid, path, contents)

    def reset_network(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        return self._guest.reset_network(ctxt, instance_uuid)
