"""The agent's RPC server: one endpoint object exposing the manager.

The endpoint is the only place RPC meets the manager: it binds the request
context (request id and instance uuid) to the thread for logging, and turns
every exception into the structured wire error of :mod:`rpc.errors`.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import oslo_messaging
from oslo_config import cfg

from compute_agent import context as ca_context
from compute_agent.metrics import agent as agent_metrics
from compute_agent.rpc import errors, transport
from compute_agent.rpc.serializer import JsonPayloadSerializer

LOG = logging.getLogger(__name__)


def _instance_uuid_of(kwargs: dict[str, Any]) -> str | None:
    if isinstance(kwargs.get("instance_uuid"), str):
        return kwargs["instance_uuid"]
    instance = kwargs.get("instance")
    if isinstance(instance, dict) and isinstance(instance.get("uuid"), str):
        return instance["uuid"]
    return None


def _expected(wire: errors.RemoteComputeError) -> oslo_messaging.ExpectedException:
    """ExpectedException records the exception being handled: raise the wire
    error and build it in the handler. oslo.messaging then sends the wire
    error to the caller without logging a traceback at ERROR level."""
    try:
        raise wire
    except errors.RemoteComputeError:
        return oslo_messaging.ExpectedException()


def _endpoint(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an endpoint method: context on the thread, structured errors."""
    signature = inspect.signature(method)

    @functools.wraps(method)
    def wrapper(self: ComputeEndpoint, ctxt: Any, **kwargs: Any) -> Any:
        if not isinstance(ctxt, ca_context.RequestContext):
            ctxt = ca_context.from_dict(ctxt.to_dict() if hasattr(ctxt, "to_dict") else {})
        ctxt = ctxt.for_instance(_instance_uuid_of(kwargs))
        ctxt.update_store()
        try:
            try:
                signature.bind(self, ctxt, **kwargs)
            except TypeError as exc:
                raise errors.exceptions.InvalidInput("arguments", str(exc)) from None
            result = method(self, ctxt, **kwargs)
        except Exception as exc:
            expected = isinstance(exc, errors.exceptions.ComputeAgentError)
            agent_metrics.count_rpc(method.__name__, "error" if expected else "internal_error")
            if not expected:
                LOG.exception("Unexpected error in %s", method.__name__)
            raise _expected(errors.to_remote(exc)) from None
        finally:
            ca_context.clear_current()
        agent_metrics.count_rpc(method.__name__, "success")
        return result

    return wrapper


class ComputeEndpoint:
    """RPC API version 1.6. See docs/rpc-api.md for every method."""

    target = oslo_messaging.Target(version=transport.RPC_API_VERSION)

    def __init__(self, manager: Any):
        self.manager = manager

    # -- 1.0 --------------------------------------------------------------------------
    @_endpoint
    def ping(self, ctxt: Any) -> dict[str, Any]:
        return self.manager.ping(ctxt)

    @_endpoint
    def build_instance(self, ctxt: Any, instance: Any) -> dict[str, Any]:
        return self.manager.build_instance(ctxt, instance)

    @_endpoint
    def start_instance(self, ctxt: Any, instance_uuid: Any) -> dict[str, Any]:
        return self.manager.start_instance(ctxt, instance_uuid)

    @_endpoint
    def stop_instance(self, ctxt: Any, instance_uuid: Any, clean: Any = True) -> dict[str, Any]:
        return self.manager.stop_instance(ctxt, instance_uuid, clean=clean)

    @_endpoint
    def reboot_instance(self, ctxt: Any, instance_uuid: Any,
                        reboot_type: Any = "SOFT") -> dict[str, Any]:
        return self.manager.reboot_instance(ctxt, instance_uuid, reboot_type=reboot_type)

    @_endpoint
    def terminate_instance(self, ctxt: Any, instance_uuid: Any) -> dict[str, Any]:
        return self.manager.terminate_instance(ctxt, instance_uuid)

    @_endpoint
    def get_instance(self, ctxt: Any, instance_uuid: Any) -> dict[str, Any]:
        return self.manager.get_instance(ctxt, instance_uuid)

    @_endpoint
    def list_instances(self, ctxt: Any, vm_state: Any = None, host: Any = None,
                       limit: Any = None, marker: Any = None) -> list[dict[str, Any]]:
        return self.manager.list_instances(ctxt, vm_state=vm_state, host=host, limit=limit,
                                           marker=marker)

    @_endpoint
    def get_host_status(self, ctxt: Any) -> dict[str, Any]:
        return self.manager.get_host_status(ctxt)

    # -- 1.1 --------------------------------------------------------------------------
    @_endpoint
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
    kwargs: dict[str, Any] = {}
    if executor and executor != "threading":
        kwargs["executor"] = executor
    return oslo_messaging.get_rpc_server(
        rpc_transport,
        transport.server_target(conf),
        [ComputeEndpoint(manager)],
        serializer=JsonPayloadSerializer(),
        access_policy=oslo_messaging.DefaultRPCAccessPolicy,
        **kwargs,
    )
