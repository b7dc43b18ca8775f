"""The agent's RPC server: one endpoint object exposing the manager.

The endpoint is the only place RPC meets the manager: it binds the request
context (request id, and the instance uuid once it is a canonical uuid) to
the thread for logging, bounds the size of the arguments, and turns every
exception into the structured wire error of :mod:`rpc.errors` (an
unexpected one as INTERNAL_ERROR [request id], its text only in the log).
Only the methods marked ``@endpoint`` can be called (rpc/dispatch.py).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import oslo_messaging
from oslo_config import cfg
from oslo_messaging.rpc import server as rpc_server_mod

from compute_agent import context as ca_context
from compute_agent.compute.validation import check_arguments_size, is_uuid
from compute_agent.metrics import agent as agent_metrics
from compute_agent.rpc import errors, transport
from compute_agent.rpc.dispatch import GuardedDispatcher, expected
from compute_agent.rpc.serializer import JsonPayloadSerializer

LOG = logging.getLogger(__name__)


def _instance_uuid_of(kwargs: dict[str, Any]) -> str | None:
    """The instance the call is about, for the log context: only a
    canonical uuid (anything else may forge or flood a log line)."""
    candidate = kwargs.get("instance_uuid")
    instance = kwargs.get("instance")
    if candidate is None and isinstance(instance, dict):
        candidate = instance.get("uuid")
    return candidate if is_uuid(candidate) else None


def endpoint(method: Callable[..., Any]) -> Callable[..., Any]:
    """Mark and wrap an endpoint method: dispatchable, context on the
    thread, bounded arguments, structured errors."""
    signature = inspect.signature(method)
    params = tuple(name for name in signature.parameters if name not in ("self", "ctxt"))

    @functools.wraps(method)
    def wrapper(self: ComputeEndpoint, ctxt: Any, **kwargs: Any) -> Any:
        if not isinstance(ctxt, ca_context.RequestContext):
            ctxt = ca_context.from_wire(ctxt.to_dict() if hasattr(ctxt, "to_dict") else ctxt)
        ctxt = ctxt.for_instance(_instance_uuid_of(kwargs))
        ctxt.update_store()
        try:
            # Names only: values may hold secrets and are checked later.
            LOG.debug("RPC %s(%s)", method.__name__, ", ".join(sorted(kwargs)))
            check_arguments_size(kwargs)
            try:
                signature.bind(self, ctxt, **kwargs)
            except TypeError:
                missing = [p for p in params if p not in kwargs
                           and signature.parameters[p].default is inspect.Parameter.empty]
                raise errors.exceptions.InvalidInput(
                    "arguments", f"{method.__name__} needs {', '.join(missing)}") from None
            result = method(self, ctxt, **kwargs)
        except Exception as exc:
            known = isinstance(exc, errors.exceptions.ComputeAgentError)
            agent_metrics.count_rpc(method.__name__, "error" if known else "internal_error")
            if not known:
                LOG.exception("Unexpected error in %s", method.__name__)
            raise expected(errors.to_remote(exc, ctxt.request_id)) from None
        finally:
            ca_context.clear_current()
        agent_metrics.count_rpc(method.__name__, "success")
        return result

    wrapper.rpc_params = params  # type: ignore[attr-defined]
    return wrapper


# The old private name, for endpoint modules written against it.
_endpoint = endpoint


class ComputeEndpoint:
    """RPC API version 1.6. See docs/rpc-api.md for every method."""

    target = oslo_messaging.Target(version=transport.RPC_API_VERSION)

    def __init__(self, manager: Any):
        self.manager = manager

    # -- 1.0 --------------------------------------------------------------------------
    @endpoint
    def ping(self, ctxt: Any) -> dict[str, Any]:
        return self.manager.ping(ctxt)

    @endpoint
    def build_instance(self, ctxt: Any, instance: Any) -> dict[str, Any]:
        return self.manager.build_instance(ctxt, instance)

    @endpoint
    def start_instance(self, ctxt: Any, instance_uuid: Any) -> dict[str, Any]:
        return self.manager.start_instance(ctxt, instance_uuid)

    @endpoint
    def stop_instance(self, ctxt: Any, instance_uuid: Any, clean: Any = True) -> dict[str, Any]:
        return self.manager.stop_instance(ctxt, instance_uuid, clean=clean)

    @endpoint
    def reboot_instance(self, ctxt: Any, instance_uuid: Any,
                        reboot_type: Any = "SOFT") -> dict[str, Any]:
        return self.manager.reboot_instance(ctxt, instance_uuid, reboot_type=reboot_type)

    @endpoint
    def terminate_instance(self, ctxt: Any, instance_uuid: Any) -> dict[str, Any]:
        return self.manager.terminate_instance(ctxt, instance_uuid)

    @endpoint
    def get_instance(self, ctxt: Any, instance_uuid: Any) -> dict[str, Any]:
        return self.manager.get_instance(ctxt, instance_uuid)

    @endpoint
    def list_instances(self, ctxt: Any, vm_state: Any = None, host: Any = None,
                       limit: Any = None, marker: Any = None) -> list[dict[str, Any]]:
        return self.manager.list_instances(ctxt, vm_state=vm_state, host=host, limit=limit,
                                           marker=marker)

    @endpoint
    def get_host_status(self, ctxt: Any) -> dict[str, Any]:
        return self.manager.get_host_status(ctxt)

    # -- 1.1 --------------------------------------------------------------------------
    @endpoint
    def cancel_operation(self, ctxt: Any, instance_uuid: Any) -> dict[str, Any]:
        return self.manager.cancel_operation(ctxt, instance_uuid)

    # -- 1.2: the rest of the lifecycle, what happened, paging ----------------------
    @_endpoint
    def pause_instance(self, ctxt: Any, instance_uuid: Any) -> dict[str, Any]:
        return self.manager.pause_instance(ctxt, instance_uuid)

    @_endpoint
    def unpause_instance(self, ctxt: Any, instance_uuid: Any) -> dict[str, Any]:
        return self.manager.unpause_instance(ctxt, instance_uuid)

    @_endpoint
    def suspend_instance(self, ctxt: Any, instance_uuid: Any) -> dict[str, Any]:
        return self.manager.suspend_instance(ctxt, instance_uuid)

    @_endpoint
    def resume_instance(self, ctxt: Any, instance_uuid: Any) -> dict[str, Any]:
        return self.manager.resume_instance(ctxt, instance_uuid)

    @_endpoint
    def rescue_instance(self, ctxt: Any, instance_uuid: Any,
                        rescue_image: Any = None) -> dict[str, Any]:
        return self.manager.rescue_instance(ctxt, instance_uuid, rescue_image=rescue_image)

    @_endpoint
    def unrescue_instance(self, ctxt: Any, instance_uuid: Any) -> dict[str, Any]:
        return self.manager.unrescue_instance(ctxt, instance_uuid)

    @_endpoint
    def resize_instance(self, ctxt: Any, instance_uuid: Any, flavor: Any) -> dict[str, Any]:
        return self.manager.resize_instance(ctxt, instance_uuid, flavor=flavor)

    @_endpoint
    def confirm_resize(self, ctxt: Any, instance_uuid: Any) -> dict[str, Any]:
        return self.manager.confirm_resize(ctxt, instance_uuid)

    @_endpoint
    def revert_resize(self, ctxt: Any, instance_uuid: Any) -> dict[str, Any]:
        return self.manager.revert_resize(ctxt, instance_uuid)

    @_endpoint
    def get_instance_actions(self, ctxt: Any, instance_uuid: Any) -> list[dict[str, Any]]:
        return self.manager.get_instance_actions(ctxt, instance_uuid)

    # -- 1.3 --------------------------------------------------------------------------
    @_endpoint
    def snapshot_instance(self, ctxt: Any, instance_uuid: Any, image: Any) -> dict[str, Any]:
        return self.manager.snapshot_instance(ctxt, instance_uuid, image)

    # -- 1.4: volumes, ports, the guest ----------------------------------------------------
    @_endpoint
    def attach_volume(self, ctxt: Any, instance_uuid: Any, volume_id: Any,
                      connection_info: Any, device: Any = None) -> dict[str, Any]:
        return self.manager.attach_volume(ctxt, instance_uuid, volume_id, connection_info,
                                          device)

    @_endpoint
    def detach_volume(self, ctxt: Any, instance_uuid: Any, volume_id: Any) -> dict[str, Any]:
        return self.manager.detach_volume(ctxt, instance_uuid, volume_id)

    @_endpoint
    def attach_interface(self, ctxt: Any, instance_uuid: Any, port: Any) -> dict[str, Any]:
        return self.manager.attach_interface(ctxt, instance_uuid, port)

    @_endpoint
    def detach_interface(self, ctxt: Any, instance_uuid: Any, port_id: Any) -> dict[str, Any]:
        return self.manager.detach_interface(ctxt, instance_uuid, port_id)

    @_endpoint
    def set_admin_password(self, ctxt: Any, instance_uuid: Any,
                           password: Any) -> dict[str, Any]:
        return self.manager.set_admin_password(ctxt, instance_uuid, password)

    @_endpoint
    def inject_file(self, ctxt: Any, instance_uuid: Any, path: Any,
                    contents: Any) -> dict[str, Any]:
        return self.manager.inject_file(ctxt, instance_uuid, path, contents)

    @_endpoint
    def reset_network(self, ctxt: Any, instance_uuid: Any) -> dict[str, Any]:
        return self.manager.reset_network(ctxt, instance_uuid)

    # -- 1.6 (issue 12): migration ------------------------------------------------------
    @_endpoint
    def live_migrate_instance(self, ctxt: Any, instance_uuid: Any,
                              dest_host: Any) -> dict[str, Any]:
        return self.manager.live_migrate_instance(ctxt, instance_uuid, dest_host)

    @_endpoint
    def migrate_instance(self, ctxt: Any, instance_uuid: Any, dest_host: Any,
                         flavor: Any = None) -> dict[str, Any]:
        return self.manager.migrate_instance(ctxt, instance_uuid, dest_host, flavor)

    @_endpoint
    def prepare_live_migration(self, ctxt: Any, instance_uuid: Any) -> dict[str, Any]:
        return self.manager.prepare_live_migration(ctxt, instance_uuid)

    @_endpoint
    def adopt_instance(self, ctxt: Any, instance_uuid: Any) -> dict[str, Any]:
        return self.manager.adopt_instance(ctxt, instance_uuid)

    @_endpoint
    def abort_live_migration(self, ctxt: Any, instance_uuid: Any) -> None:
        return self.manager.abort_live_migration(ctxt, instance_uuid)

    @_endpoint
    def set_host_enabled(self, ctxt: Any, enabled: Any) -> dict[str, Any]:
        return self.manager.set_host_enabled(ctxt, enabled)

    @_endpoint
    def set_host_maintenance(self, ctxt: Any, enabled: Any,
                             dest_hosts: Any = None) -> dict[str, Any]:
        return self.manager.set_host_maintenance(ctxt, enabled, dest_hosts)

    @_endpoint
    def host_power_action(self, ctxt: Any, action: Any) -> dict[str, Any]:
        return self.manager.host_power_action(ctxt, action)

    @_endpoint
    def join_pool(self, ctxt: Any, coordinator_address: Any, username: Any,
                  password: Any) -> dict[str, Any]:
        return self.manager.join_pool(ctxt, coordinator_address, username, password)

    @_endpoint
    def leave_pool(self, ctxt: Any) -> dict[str, Any]:
        return self.manager.leave_pool(ctxt)
    # -- 1.5 --------------------------------------------------------------------------
    @_endpoint
    def get_vnc_console(self, ctxt: Any, instance_uuid: Any) -> dict[str, Any]:
        return self.manager.get_vnc_console(ctxt, instance_uuid)

    @_endpoint
    def get_console_output(self, ctxt: Any, instance_uuid: Any,
                           tail_length: Any = None) -> dict[str, Any]:
        return self.manager.get_console_output(ctxt, instance_uuid, tail_length=tail_length)

    @_endpoint
    def get_diagnostics(self, ctxt: Any, instance_uuid: Any) -> dict[str, Any]:
        return self.manager.get_diagnostics(ctxt, instance_uuid)


def get_server(
    conf: cfg.ConfigOpts,
    rpc_transport: oslo_messaging.Transport,
    manager: Any,
    executor: str | None = None,
) -> oslo_messaging.RPCServer:
    """The RPC server on topic [DEFAULT] compute_topic, server [DEFAULT] host."""
    dispatcher = GuardedDispatcher([ComputeEndpoint(manager)], JsonPayloadSerializer())
    return rpc_server_mod.RPCServer(rpc_transport, transport.server_target(conf), dispatcher,
                                    executor if executor and executor != "threading"
                                    else None)
