"""Host maintenance: take the host out of scheduling, empty it, power it.

- ``set_enabled(enabled)``: xapi's host.disable / host.enable on this
  agent's host, and the service's ``disabled`` flag (what a scheduler
  reads) set to match.
- ``set_maintenance(True, dest_hosts=None)``: disable the host, then live
  migrate every active instance off it (live_migrate_instance requests,
  bounded by ``[DEFAULT] max_concurrent_live_migrations`` like any other),
  each to the destination with the most free memory left: the agents
  named in ``dest_hosts``, or else the live, enabled agents whose host is
  in this host's pool (compute_nodes records each agent's pool). Progress
  and what could not move (with the fault) are in ``status()``, which
  get_host_status reports. ``set_maintenance(False)`` enables the host.
- ``power_action(action)``: reboot or shut down the host, which must be
  disabled and empty (xapi refuses otherwise: HOST_NOT_DISABLED,
  HOST_IN_USE); a tracked dom0 task (recovery re-attaches to it as to a
  task of no instance).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from compute_agent import exceptions
from compute_agent.compute import states
from compute_agent.compute.host_status import SERVICE_BINARY
from compute_agent.compute.migration import LiveMigrations
from compute_agent.compute.runner import NotSupported
from compute_agent.context import RequestContext, new_context
from compute_agent.driver.base import Operation

LOG = logging.getLogger(__name__)

POWER_ACTIONS = ("reboot", "shutdown")
# How often the evacuation looks at the instances it moves.
POLL_S = 0.2


class HostMaintenance:
    def __init__(self, conf: Any, db: Any, driver: Any, host: str,
                 migrations: LiveMigrations):
        self.conf = conf
        self.db = db
        self.driver = driver
        self.host = host
        self.migrations = migrations
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {"state": "off"}
        self._thread: threading.Thread | None = None

    # -- enabled -----------------------------------------------------------------------
    def set_enabled(self, ctxt: RequestContext, enabled: Any) -> dict[str, Any]:
        if not isinstance(enabled, bool):
            raise exceptions.InvalidInput("enabled", "must be a boolean")
        try:
            self.driver.set_host_enabled(enabled)
        except NotImplementedError:
            raise NotSupported("set_host_enabled", type(self.driver).__name__) from None
        self.db.set_service_disabled(self.host, SERVICE_BINARY, not enabled)
        LOG.info("Host %s %s", self.host, "enabled" if enabled else "disabled")
        return {"host": self.host, "enabled": enabled}

    # -- maintenance ---------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        with self._lock:
            return {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list)
                        else v) for k, v in self._state.items()}

    def set_maintenance(self, ctxt: RequestContext, enabled: Any,
                        dest_hosts: Any = None) -> dict[str, Any]:
        if not isinstance(enabled, bool):
            raise exceptions.InvalidInput("enabled", "must be a boolean")
        if dest_hosts is not None and (not isinstance(dest_hosts, list) or not all(
                isinstance(h, str) and h and h != self.host for h in dest_hosts)):
            raise exceptions.InvalidInput("dest_hosts", "must be a list of other agent hosts")
        if not enabled:
            with self._lock:
                if self._state.get("state") == "evacuating":
                    raise exceptions.InvalidInput("enabled", "the host is being evacuated")
            self.set_enabled(ctxt, True)
            with self._lock:
                self._state = {"state": "off"}
            return self.status()
        with self._lock:
            if self._state.get("state") == "evacuating":
                return self.status()
        self.set_enabled(ctxt, False)
        instances = [i for i in self.db.list_instances(host=self.host)
                     if i["vm_state"] == states.ACTIVE and i["task_state"] is None]
        with self._lock:
            self._state = {"state": "evacuating", "total": len(instances), "moved": [],
                           "failed": {}, "started_at": time.time()}
        self._thread = threading.Thread(target=self._evacuate, name="maintenance",
                                        args=(ctxt, instances, dest_hosts), daemon=True)
        self._thread.start()
        return self.status()

    def wait(self, timeout: float | None = None) -> bool:
        """For tests and the benchmark: until the evacuation thread ends."""
        t = self._thread
        if t is not None:
            t.join(timeout)
            return not t.is_alive()
        return True

    def _candidates(self, dest_hosts: list[str] | None) -> dict[str, int]:
        """Destination agent -> free memory (MB) as last reported."""
        alive = {s["host"] for s in self.db.list_services(self.conf.service_down_time)
                 if s["alive"] and not s["disabled"]}
        nodes = {n["host"]: n for n in self.db.list_compute_nodes()}
        if dest_hosts is not None:
            return {h: int((nodes.get(h) or {}).get("free_memory_mb") or 0) for h in dest_hosts}
        mine = (nodes.get(self.host) or {}).get("pool_uuid")
        return {h: int(n.get("free_memory_mb") or 0) for h, n in nodes.items()
                if h != self.host and h in alive and mine and n.get("pool_uuid") == mine}

    def _evacuate(self, ctxt: RequestContext, instances: list[dict[str, Any]],
                  dest_hosts: list[str] | None) -> None:
        free = self._candidates(dest_hosts)
        started: list[str] = []
        for inst in instances:
            uuid = inst["uuid"]
            if not free:
                self._failed(uuid, {"code": "NO_VALID_HOST", "params": [uuid],
                                    "message": "no other host in the pool takes instances"})
                continue
            dest = max(sorted(free), key=lambda h: free[h])
            free[dest] -= int((inst.get("flavor") or {}).get("memory_mb") or 0)
            try:
                self.migrations.accept(new_context(instance_uuid=uuid), uuid, dest)
                started.append(uuid)
            except exceptions.ComputeAgentError as exc:
                self._failed(uuid, exc.to_dict())
        pending = set(started)
        while pending:
            time.sleep(POLL_S)
            for uuid in sorted(pending):
                inst = self.db.get_instance(uuid)
                if inst["task_state"] is not None:
                    continue
                pending.discard(uuid)
                if inst["host"] != self.host:
                    with self._lock:
                        self._state["moved"].append(uuid)
                else:
                    self._failed(uuid, inst.get("fault") or {"code": "NOT_MOVED"})
        with self._lock:
            self._state["state"] = "maintenance"
            self._state["finished_at"] = time.time()
        LOG.info("Host %s in maintenance: %d moved, %d could not move", self.host,
                 len(self._state["moved"]), len(self._state["failed"]))

    def _failed(self, uuid: str, fault: dict[str, Any]) -> None:
        with self._lock:
            self._state["failed"][uuid] = fault

    # -- power -----------------------------------------------------------------------------
    def power_action(self, ctxt: RequestContext, action: Any) -> dict[str, Any]:
        if action not in POWER_ACTIONS:
            raise exceptions.InvalidInput("action", "must be reboot or shutdown")
        op = Operation(instance_uuid="", name=f"host_{action}", request_id=ctxt.request_id,
                       timeout=float(self.conf.tasks.power_timeout))
        try:
            self.driver.host_power_action(op, action)
        except NotImplementedError:
            raise NotSupported("host_power_action", type(self.driver).__name__) from None
        LOG.warning("Host %s: %s done", self.host, action)
        return {"host": self.host, "action": action}
