"""ComputeAPI's RPC 1.4 client methods (volumes, ports, the guest agent):
calls, each checking its arguments against validation.BOUNDS before
anything is sent (validation_devices.py), as the agent checks them again.
ComputeAPI (rpcapi.py) inherits them and provides ``_call``."""

from __future__ import annotations

from typing import Any

from compute_agent import context as ca_context
from compute_agent.compute.validation import validate_uuid
from compute_agent.compute.validation_devices import (
    validate_connection_info,
    validate_contents,
    validate_device,
    validate_item_id,
    validate_password,
    validate_path,
    validate_port,
)

Context = ca_context.RequestContext | None


class DeviceCalls:
    def _call(self, ctxt: Context, host: str | None, method: str, version: str = "1.0",
              timeout: float | None = None, **kwargs: Any) -> Any:
        raise NotImplementedError  # ComputeAPI's

    def attach_volume(self, host: str, instance_uuid: str, volume_id: str,
                      connection_info: dict, device: str | None = None,
                      ctxt: Context = None, timeout: float | None = None) -> dict:
        """-> the attachment {instance_uuid, volume_id, status, device, sr_uuid,
        vdi_uuid, vbd_uuid, target_portal, target_iqn, target_lun, ...}"""
        validate_uuid(instance_uuid)
        validate_item_id(volume_id, "volume_id", "volume_id")
        validate_connection_info(connection_info)
        validate_device(device)
        return self._call(ctxt, host, "attach_volume", version="1.4", timeout=timeout,
                          instance_uuid=instance_uuid, volume_id=volume_id,
                          connection_info=connection_info, device=device)

    def detach_volume(self, host: str, instance_uuid: str, volume_id: str,
                      ctxt: Context = None, timeout: float | None = None) -> dict:
        validate_uuid(instance_uuid)
        validate_item_id(volume_id, "volume_id", "volume_id")
        return self._call(ctxt, host, "detach_volume", version="1.4", timeout=timeout,
                          instance_uuid=instance_uuid, volume_id=volume_id)

    def attach_interface(self, host: str, instance_uuid: str, port: dict,
                         ctxt: Context = None, timeout: float | None = None) -> dict:
        """``port``: {id, mac_address, network} -> the attachment."""
        validate_uuid(instance_uuid)
        validate_port(port)
        return self._call(ctxt, host, "attach_interface", version="1.4", timeout=timeout,
                          instance_uuid=instance_uuid, port=port)

    def detach_interface(self, host: str, instance_uuid: str, port_id: str,
                         ctxt: Context = None, timeout: float | None = None) -> dict:
        validate_uuid(instance_uuid)
        validate_item_id(port_id, "port_id", "port_id")
        return self._call(ctxt, host, "detach_interface", version="1.4", timeout=timeout,
                          instance_uuid=instance_uuid, port_id=port_id)

    def set_admin_password(self, host: str, instance_uuid: str, password: str,
                           ctxt: Context = None, timeout: float | None = None) -> dict:
        validate_uuid(instance_uuid)
        validate_password(password)
        return self._call(ctxt, host, "set_admin_password", version="1.4", timeout=timeout,
                          instance_uuid=instance_uuid, password=password)

    def inject_file(self, host: str, instance_uuid: str, path: str, contents: str,
                    ctxt: Context = None, timeout: float | None = None) -> dict:
        validate_uuid(instance_uuid)
        validate_path(path)
        validate_contents(contents)
        return self._call(ctxt, host, "inject_file", version="1.4", timeout=timeout,
                          instance_uuid=instance_uuid, path=path, contents=contents)

    def reset_network(self, host: str, instance_uuid: str, ctxt: Context = None,
                      timeout: float | None = None) -> dict:
        validate_uuid(instance_uuid)
        return self._call(ctxt, host, "reset_network", version="1.4", timeout=timeout,
                          instance_uuid=instance_uuid)
