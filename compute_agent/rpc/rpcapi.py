"""ComputeAPI: the versioned client a scheduler (or the CLI) imports.

Versions:

* 1.0 — ping, build_instance, start_instance, stop_instance, reboot_instance,
  terminate_instance, get_instance, list_instances, get_host_status.
* 1.1 — cancel_operation.
* 1.2 — pause_instance, unpause_instance, suspend_instance, resume_instance,
  rescue_instance, unrescue_instance, resize_instance, confirm_resize,
  revert_resize, get_instance_actions; list_instances takes ``vm_state``,
  ``host``, ``limit`` and ``marker`` (without them it is a 1.0 call, and
  1.2 agents answer it with their first page of at most 100).
* 1.3 — snapshot_instance.
* 1.4 — attach_volume, detach_volume, attach_interface, detach_interface,
  set_admin_password, inject_file, reset_network (issue 10).
* 1.5 — get_vnc_console, get_console_output, get_diagnostics (issue 11).
* 1.6 — live_migrate_instance, migrate_instance (casts; migrate_instance's
  ``flavor`` resizes at the destination), and the calls agents make of each
  other during one: prepare_live_migration, adopt_instance,
  abort_live_migration (cast); set_host_enabled, set_host_maintenance,
  host_power_action, join_pool, leave_pool (calls).

``version_cap`` pins the highest version this client sends, so a scheduler
can be upgraded before its agents: a method that needs more than the cap
raises UNSUPPORTED_VERSION locally instead of confusing an old agent.

Every failure is raised as a :class:`compute_agent.exceptions.ComputeAgentError`
subclass with the agent's code and params (INSTANCE_NOT_FOUND [uuid],
INSTANCE_BUSY [uuid, task_state], ...), or RPC_TIMEOUT when no reply came.

The state-changing methods are casts (they return None at once) unless
``confirm=True``: then the request is sent as a call that returns as soon as
the agent has accepted it (the instance dict in its transitional state) and
raises the refusal otherwise. The work itself runs on in the agent either way.
"""

from __future__ import annotations

from typing import Any

import oslo_messaging
from oslo_config import cfg

from compute_agent import context as ca_context
from compute_agent import exceptions
from compute_agent.compute.validation import (
    validate_flavor,
    validate_instance,
    validate_rescue_image,
    validate_uuid,
)
from compute_agent.rpc import errors, transport
from compute_agent.rpc.rpcapi_devices import DeviceCalls
from compute_agent.rpc.serializer import JsonPayloadSerializer

Context = ca_context.RequestContext | None


class ComputeAPI(DeviceCalls):
    """Client side of the compute agent RPC API."""

    BASE_VERSION = transport.BASE_VERSION
    LATEST_VERSION = transport.RPC_API_VERSION

    def __init__(
        self,
        conf: cfg.ConfigOpts | None = None,
        rpc_transport: oslo_messaging.Transport | None = None,
        topic: str | None = None,
        version_cap: str | None = None,
        timeout: float | None = None,
    ):
        if conf is None:
            from compute_agent.conf import CONF

            conf = CONF
        self.conf = conf
        self.transport = rpc_transport or transport.get_rpc_transport(conf)
        self.topic = topic or conf.compute_topic
        self.version_cap = version_cap or self.LATEST_VERSION
        self.timeout = timeout
        self.client = oslo_messaging.get_rpc_client(
            self.transport,
            transport.client_target(conf, self.topic),
            version_cap=self.version_cap,
            serializer=JsonPayloadSerializer(),
            timeout=timeout,
        )

    # ------------------------------------------------------------------ 1.0 calls

    def ping(self, host: str, ctxt: Context = None, timeout: float | None = None) -> dict:
        """-> {host, version, backend, driver}"""
        return self._call(ctxt, host, "ping", timeout=timeout)

    def get_instance(self, host: str | None, instance_uuid: str, ctxt: Context = None) -> dict:
        """The instance dict. ``host=None`` lets any agent on the topic answer
        (they share the database)."""
        return self._call(ctxt, host, "get_instance", instance_uuid=instance_uuid)

    def list_instances(self, host: str, ctxt: Context = None, vm_state: str | None = None,
                       instances_host: str | None = None, limit: int | None = None,
                       marker: str | None = None) -> list[dict]:
        """Instances of ``host`` (or of ``instances_host``, read by ``host``
        from the shared database) that are not deleted, oldest first. 1.2:
        only those in ``vm_state``; one page of at most ``limit`` (default
        100, at most 1000) after the instance ``marker``."""
        kwargs = {k: v for k, v in (("vm_state", vm_state), ("host", instances_host),
                                    ("limit", limit), ("marker", marker)) if v is not None}
        version = "1.2" if kwargs else self.BASE_VERSION
        return self._call(ctxt, host, "list_instances", version=version, **kwargs)

    def get_host_status(self, host: str, ctxt: Context = None) -> dict:
        return self._call(ctxt, host, "get_host_status")

    # ------------------------------------------------------------------ 1.0 casts

    def build_instance(self, host: str, instance: dict, ctxt: Context = None,
                       confirm: bool = False, validate: bool = True) -> dict | None:
        """Build ``instance`` on ``host``. Checked here first (INVALID_INPUT
        [field, reason]) unless ``validate=False``; the agent checks again."""
        if validate:
            instance = validate_instance(instance)
        return self._cast(ctxt, host, "build_instance", confirm, instance=instance)

    def start_instance(self, host: str, instance_uuid: str, ctxt: Context = None,
                       confirm: bool = False) -> dict | None:
        return self._cast(ctxt, host, "start_instance", confirm, instance_uuid=instance_uuid)

    def stop_instance(self, host: str, instance_uuid: str, clean: bool = True,
                      ctxt: Context = None, confirm: bool = False) -> dict | None:
        return self._cast(ctxt, host, "stop_instance", confirm,
                          instance_uuid=instance_uuid, clean=clean)

    def reboot_instance(self, host: str, instance_uuid: str, reboot_type: str = "SOFT",
                        ctxt: Context = None, confirm: bool = False) -> dict | None:
        return self._cast(ctxt, host, "reboot_instance", confirm,
                          instance_uuid=instance_uuid, reboot_type=reboot_type)

    def terminate_instance(self, host: str, instance_uuid: str, ctxt: Context = None,
                           confirm: bool = False) -> dict | None:
        return self._cast(ctxt, host, "terminate_instance", confirm,
                          instance_uuid=instance_uuid)

    # ------------------------------------------------------------------ 1.1

    def cancel_operation(self, host: str, instance_uuid: str, ctxt: Context = None) -> dict:
        """-> {instance_uuid, task_state, cancelled}"""
        validate_uuid(instance_uuid)
        return self._call(ctxt, host, "cancel_operation", version="1.1",
                          instance_uuid=instance_uuid)

    # ------------------------------------------------------------------ 1.2

    def pause_instance(self, host: str, instance_uuid: str, ctxt: Context = None,
                       confirm: bool = False) -> dict | None:
        return self._cast(ctxt, host, "pause_instance", confirm, version="1.2",
                          instance_uuid=instance_uuid)

    def unpause_instance(self, host: str, instance_uuid: str, ctxt: Context = None,
                         confirm: bool = False) -> dict | None:
        return self._cast(ctxt, host, "unpause_instance", confirm, version="1.2",
                          instance_uuid=instance_uuid)

    def suspend_instance(self, host: str, instance_uuid: str, ctxt: Context = None,
                         confirm: bool = False) -> dict | None:
        return self._cast(ctxt, host, "suspend_instance", confirm, version="1.2",
                          instance_uuid=instance_uuid)

    def resume_instance(self, host: str, instance_uuid: str, ctxt: Context = None,
                        confirm: bool = False) -> dict | None:
        return self._cast(ctxt, host, "resume_instance", confirm, version="1.2",
                          instance_uuid=instance_uuid)

    def rescue_instance(self, host: str, instance_uuid: str,
                        rescue_image: dict | None = None, ctxt: Context = None,
                        confirm: bool = False) -> dict | None:
        """``rescue_image``: {id, url, disk_format}, the rescue disk's image
        (Glance id or URL, as a build's), or None (a blank rescue disk)."""
        return self._cast(ctxt, host, "rescue_instance", confirm, version="1.2",
                          instance_uuid=instance_uuid,
                          rescue_image=validate_rescue_image(rescue_image))

    def unrescue_instance(self, host: str, instance_uuid: str, ctxt: Context = None,
                          confirm: bool = False) -> dict | None:
        return self._cast(ctxt, host, "unrescue_instance", confirm, version="1.2",
                          instance_uuid=instance_uuid)

    def resize_instance(self, host: str, instance_uuid: str, flavor: dict,
                        ctxt: Context = None, confirm: bool = False) -> dict | None:
        """``flavor``: {vcpus, memory_mb, root_gb}, checked here first."""
        return self._cast(ctxt, host, "resize_instance", confirm, version="1.2",
                          instance_uuid=instance_uuid, flavor=validate_flavor(flavor))

    def confirm_resize(self, host: str, instance_uuid: str, ctxt: Context = None,
                       confirm: bool = False) -> dict | None:
        return self._cast(ctxt, host, "confirm_resize", confirm, version="1.2",
                          instance_uuid=instance_uuid)

    def revert_resize(self, host: str, instance_uuid: str, ctxt: Context = None,
                      confirm: bool = False) -> dict | None:
        return self._cast(ctxt, host, "revert_resize", confirm, version="1.2",
                          instance_uuid=instance_uuid)

    def get_instance_actions(self, host: str | None, instance_uuid: str,
                             ctxt: Context = None) -> list[dict]:
        """The instance's actions, oldest first, each with its events."""
        validate_uuid(instance_uuid)
        return self._call(ctxt, host, "get_instance_actions", version="1.2",
                          instance_uuid=instance_uuid)

    # ------------------------------------------------------------------ 1.3

    def snapshot_instance(self, host: str, instance_uuid: str, image: dict,
                          ctxt: Context = None) -> dict:
        """-> {image_id} at once: the new Glance image the snapshot of the
        instance's root disk streams into (task_state image_snapshot until
        it is done; a failure deletes the image and adds a fault)."""
        validate_uuid(instance_uuid)
        if not isinstance(image, dict) or not isinstance(image.get("name"), str):
            raise exceptions.InvalidInput("image", "must be an object with a name")
        return self._call(ctxt, host, "snapshot_instance", version="1.3",
                          instance_uuid=instance_uuid, image=image)

    # ------------------------------------------------------------------ 1.6 migration

    def live_migrate_instance(self, host: str, instance_uuid: str, dest_host: str,
                              ctxt: Context = None, confirm: bool = False) -> dict | None:
        """Move the running instance from ``host`` to the agent ``dest_host``,
        live (inside a pool or to another pool)."""
        validate_uuid(instance_uuid)
        return self._cast(ctxt, host, "live_migrate_instance", confirm, version="1.6",
                          instance_uuid=instance_uuid, dest_host=dest_host)

    def migrate_instance(self, host: str, instance_uuid: str, dest_host: str,
                         flavor: dict | None = None, ctxt: Context = None,
                         confirm: bool = False) -> dict | None:
        """Move the stopped instance (VM and disks) from ``host`` to the
        agent ``dest_host``; it stays stopped there. With a ``flavor``
        ({vcpus, memory_mb, root_gb}, checked here first) the destination
        then resizes it (``resized``; confirm or revert it there)."""
        validate_uuid(instance_uuid)
        if flavor is not None:
            flavor = validate_flavor(flavor)
        return self._cast(ctxt, host, "migrate_instance", confirm, version="1.6",
                          instance_uuid=instance_uuid, dest_host=dest_host, flavor=flavor)

    def prepare_live_migration(self, host: str, instance_uuid: str, ctxt: Context = None,
                               timeout: float | None = None) -> dict:
        """Agent to agent: ``host`` gets ready to receive the instance; the
        answer holds its migration token (a secret)."""
        return self._call(ctxt, host, "prepare_live_migration", version="1.6",
                          timeout=timeout, instance_uuid=instance_uuid)

    def adopt_instance(self, host: str, instance_uuid: str, ctxt: Context = None,
                       timeout: float | None = None) -> dict:
        """Agent to agent: ``host`` takes over the instance's VM, which runs
        there now. -> {vm_ref, power_state}"""
        return self._call(ctxt, host, "adopt_instance", version="1.6", timeout=timeout,
                          instance_uuid=instance_uuid)

    def abort_live_migration(self, host: str, instance_uuid: str,
                             ctxt: Context = None) -> None:
        """Agent to agent: ``host`` forgets a prepared migration."""
        self._cast(ctxt, host, "abort_live_migration", False, version="1.6",
                   instance_uuid=instance_uuid)

    def set_host_enabled(self, host: str, enabled: bool, ctxt: Context = None) -> dict:
        """-> {host, enabled}"""
        return self._call(ctxt, host, "set_host_enabled", version="1.6", enabled=enabled)

    def set_host_maintenance(self, host: str, enabled: bool,
                             dest_hosts: list[str] | None = None,
                             ctxt: Context = None) -> dict:
        """-> the maintenance status ({state, total, moved, failed, ...})"""
        return self._call(ctxt, host, "set_host_maintenance", version="1.6",
                          enabled=enabled, dest_hosts=dest_hosts)

    def host_power_action(self, host: str, action: str, ctxt: Context = None,
                          timeout: float | None = None) -> dict:
        """``action``: reboot | shutdown. -> {host, action}"""
        return self._call(ctxt, host, "host_power_action", version="1.6", timeout=timeout,
                          action=action)

    def join_pool(self, host: str, coordinator_address: str, username: str, password: str,
                  ctxt: Context = None, timeout: float | None = None) -> dict:
        """``host`` joins the pool whose coordinator is at ``coordinator_address``
        (``password`` is a secret). -> {host, pool}"""
        return self._call(ctxt, host, "join_pool", version="1.6", timeout=timeout,
                          coordinator_address=coordinator_address, username=username,
                          password=password)

    def leave_pool(self, host: str, ctxt: Context = None,
                   timeout: float | None = None) -> dict:
        """``host`` leaves its pool. -> {host, pool}"""
        return self._call(ctxt, host, "leave_pool", version="1.6", timeout=timeout)
    # ------------------------------------------------------------------ 1.5

    def get_vnc_console(self, host: str, instance_uuid: str, ctxt: Context = None) -> dict:
        """-> {instance_uuid, protocol: "vnc", url, token, expires_at}: a noVNC
        URL through compute-agent-novncproxy, usable once, until expires_at."""
        validate_uuid(instance_uuid)
        return self._call(ctxt, host, "get_vnc_console", version="1.5",
                          instance_uuid=instance_uuid)

    def get_console_output(self, host: str, instance_uuid: str, tail_length: int | None = None,
                           ctxt: Context = None) -> dict:
        """-> {instance_uuid, output, truncated}: the end of the guest's
        console log (the last ``tail_length`` lines when given)."""
        validate_uuid(instance_uuid)
        return self._call(ctxt, host, "get_console_output", version="1.5",
                          instance_uuid=instance_uuid, tail_length=tail_length)

    def get_diagnostics(self, host: str, instance_uuid: str, ctxt: Context = None) -> dict:
        """-> the instance's latest figures (docs/metrics.md has the shape)."""
        validate_uuid(instance_uuid)
        return self._call(ctxt, host, "get_diagnostics", version="1.5",
                          instance_uuid=instance_uuid)

    # ------------------------------------------------------------------ plumbing

    def can_send_version(self, version: str) -> bool:
        return self.client.can_send_version(version)

    def _prepare(self, host: str | None, version: str, timeout: float | None = None) -> Any:
        if not self.client.can_send_version(version):
            raise errors.UnsupportedVersion("?", version, self.version_cap)
        kwargs: dict[str, Any] = {"version": version}
        if host:
            kwargs["server"] = host
        if timeout is not None:
            kwargs["timeout"] = timeout
        return self.client.prepare(**kwargs)

    def _call(self, ctxt: Context, host: str | None, method: str,
              version: str = BASE_VERSION, timeout: float | None = None, **kwargs: Any) -> Any:
        ctxt = ctxt or ca_context.new_context()
        if not self.client.can_send_version(version):
            raise errors.UnsupportedVersion(method, version, self.version_cap)
        cctxt = self._prepare(host, version, timeout)
        try:
            return cctxt.call(ctxt, method, **kwargs)
        except Exception as exc:
            typed = errors.to_typed(exc, self._target(host), method,
                                    timeout or self.timeout or self._default_timeout())
            if typed is exc:
                raise
            raise typed from None

    def _cast(self, ctxt: Context, host: str, method: str, confirm: bool,
              version: str = BASE_VERSION, **kwargs: Any) -> dict | None:
        if confirm:
            return self._call(ctxt, host, method, version=version, **kwargs)
        ctxt = ctxt or ca_context.new_context()
        if not self.client.can_send_version(version):
            raise errors.UnsupportedVersion(method, version, self.version_cap)
        self._prepare(host, version).cast(ctxt, method, **kwargs)
        return None

    def _target(self, host: str | None) -> str:
        return f"{self.topic}.{host}" if host else self.topic

    def _default_timeout(self) -> float | None:
        try:
            return float(self.conf.rpc_response_timeout)
        except (cfg.NoSuchOptError, TypeError, ValueError):
            return None
