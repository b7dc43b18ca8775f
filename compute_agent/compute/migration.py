"""Live migration between agents, each recording its side.

Source agent (the one the request is sent to):

1. accept: the instance is active on this host, the destination is another
   agent; task_state ``migrating`` (runner.accept, as every request);
2. wait for one of ``[DEFAULT] max_concurrent_live_migrations`` slots;
3. write an instance_migrations row (``preparing``), ask the destination
   agent over RPC to prepare (``prepare_live_migration``: its host's
   migrate_receive token, the SR and network to map to), record where the
   VM goes (``migrating``; the token is never written down);
4. ``driver.live_migrate``: the dom0 task, tracked like every task;
5. ask the destination to adopt the VM (``adopt_instance``); only then the
   instance row moves to the destination host (vm_state active, no
   task_state) and the migration is ``completed``.

On a failure the facts of both sides decide (migration_rules.where): the
instance stays where it runs, with the refusal as its fault, and the
destination forgets its token (``abort_live_migration``). After a crash,
recovery calls :meth:`LiveMigrations.recover` for an instance left
``migrating``: it waits for the tracked task (recovery does that first) and
applies the same rules. A destination agent that was down when the VM
arrived adopts it when it starts (:meth:`LiveMigrations.adopt_strays`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from compute_agent import exceptions
from compute_agent import notifications as notif
from compute_agent.compute import migration_rules, recovery_rules, states
from compute_agent.compute.requests import REQUESTS, driver_view, timeout_of
from compute_agent.compute.runner import NotSupported, RequestRunner
from compute_agent.compute.validation import validate_uuid
from compute_agent.context import RequestContext, new_context
from compute_agent.db import instance_migrations as im
from compute_agent.driver import power_state
from compute_agent.driver import task_status as ts
from compute_agent.driver.base import ComputeDriver

LOG = logging.getLogger(__name__)

# Keys of the destination's answer that may be written down (not the token).
PLACEMENT_KEYS = ("pool_uuid", "host_ref", "host_uuid", "sr", "network", "agent_host")


@dataclass(frozen=True)
class Kind:
    """A live or a cold migration: the request it is, its migration row's
    kind, the task_state it holds, where it settles (vm_state, and the power
    state when the destination could not say) and the driver call."""

    request: str
    record: str
    task_state: str
    vm_state: str
    power: int
    rpc_method: str

    def move(self, driver: Any) -> Callable[..., str]:
        return driver.live_migrate if self.record == "live" else driver.cold_migrate

    @property
    def driver_name(self) -> str:
        return "live_migrate" if self.record == "live" else "cold_migrate"


LIVE = Kind("live_migrate", "live", states.MIGRATING, states.ACTIVE, power_state.RUNNING,
            "live_migrate_instance")
COLD = Kind("migrate", "cold", states.MIGRATING, states.STOPPED, power_state.SHUTDOWN,
            "migrate_instance")
# A cold migration whose destination then resizes the instance
# (compute/cross_resize.py): the same move, its own record kind.
RESIZE = Kind("migrate", "resize", states.MIGRATING, states.STOPPED, power_state.SHUTDOWN,
              "migrate_instance")
BY_RECORD = {k.record: k for k in (LIVE, COLD, RESIZE)}
# the instance action each kind records (requests.REQUESTS) -> the kind
BY_ACTION = {"live-migration": LIVE, "migrate": COLD}
# kept for callers that name the live request
REQUEST = LIVE.request


class MigrationRefused(exceptions.ComputeAgentError):
    """The destination cannot take the instance. params: uuid, destination, reason."""

    code = "MIGRATION_REFUSED"
    msg_fmt = "Instance {0} cannot migrate to {1}: {2}"


class LiveMigrations:
    """Both sides of live migration for one agent. ``peers()`` gives the
    RPC client (rpcapi.ComputeAPI) to talk to other agents."""

    def __init__(self, conf: Any, db: Any, driver: Any, notifier: notif.Notifier, host: str,
                 runner: RequestRunner, peers: Callable[[], Any]):
        self.conf = conf
        self.db = db
        self.driver = driver
        self.notifier = notifier
        self.host = host
        self.runner = runner
        self.peers = peers
        self.records = im.InstanceMigrations(db)
        self.limit = int(conf.max_concurrent_live_migrations)
        self._slots = threading.BoundedSemaphore(self.limit)
        # Called (ctxt, uuid, migration row) once a RESIZE move landed:
        # the destination is asked to apply the new flavor (cross_resize.py).
        self.after_resize_move: Callable[[RequestContext, str, dict[str, Any]], None] | None \
            = None
        self._count_lock = threading.Lock()
        self.running = 0
        self.queued = 0

    # -- source: the request ------------------------------------------------------------
    def accept(self, ctxt: RequestContext, instance_uuid: Any, dest_host: Any,
               kind: Kind = LIVE, flavor: dict[str, Any] | None = None,
               check: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        if not isinstance(dest_host, str) or not dest_host.strip():
            self.runner.invalid(ctxt, kind.request, "dest_host", "must be an agent host name")
        if dest_host == self.host:
            self.runner.invalid(ctxt, kind.request, "dest_host", "is the instance's own host")
        name = kind.driver_name
        if getattr(type(self.driver), name) is getattr(ComputeDriver, name):
            exc = NotSupported(kind.rpc_method, type(self.driver).__name__)
            self.runner.outcomes.refused(ctxt, None, kind.request, exc)
            raise exc
        return self.runner.accept(ctxt, instance_uuid, kind.request, None, check=check,
                                  run=lambda c, u, *_: self._run(c, u, dest_host, kind, flavor))

    def status(self) -> dict[str, int]:
        with self._count_lock:
            return {"max": self.limit, "running": self.running, "queued": self.queued}

    def _run(self, ctxt: RequestContext, uuid: str, dest_host: str, kind: Kind,
             flavor: dict[str, Any] | None = None) -> None:
        outcomes = self.runner.outcomes
        with self._count_lock:
            self.queued += 1
        self._slots.acquire()
        with self._count_lock:
            self.queued -= 1
            self.running += 1
        try:
            outcomes.event_start(ctxt, uuid, kind.request)
            try:
                self._migrate(ctxt, uuid, dest_host, kind, flavor)
            except BaseException as exc:
                self._after_failure(ctxt, uuid, dest_host, exc, kind)
        finally:
            with self._count_lock:
                self.running -= 1
            self._slots.release()

    def _migrate(self, ctxt: RequestContext, uuid: str, dest_host: str, kind: Kind,
                 flavor: dict[str, Any] | None = None) -> None:
        row = self.records.create(uuid, kind.record, self.host, dest_host, ctxt.request_id)
        peers = self.peers()
        timeout = float(self.conf.live_migration_peer_timeout)
        dest = peers.prepare_live_migration(dest_host, uuid, ctxt=ctxt, timeout=timeout)
        info: dict[str, Any] = {k: dest.get(k) for k in PLACEMENT_KEYS}
        if flavor is not None:
            # what the destination applies once the VM is there; written
            # before the move so that a recovery knows it too
            inst = self.db.get_instance(uuid, internal=True)
            info.update(flavor=flavor, old_flavor=inst.get("flavor"))
        self.records.update(row["id"], {"status": im.MIGRATING, "dest_info": info},
                            expected_status=im.PREPARING)
        inst = self.db.get_instance(uuid, internal=True)
        op = self.runner.operation(ctxt, uuid, kind.request)
        kind.move(self.driver)(op, driver_view(inst), dest)
        self._finish(ctxt, uuid, row["id"], dest_host, self._adopt(ctxt, uuid, dest_host), kind)

    def _adopt(self, ctxt: RequestContext, uuid: str, dest_host: str) -> dict[str, Any] | None:
        """The destination's adopt answer, or None when it cannot be asked."""
        try:
            return self.peers().adopt_instance(
                dest_host, uuid, ctxt=ctxt,
                timeout=float(self.conf.live_migration_peer_timeout))
        except exceptions.ComputeAgentError as exc:
            if exc.code in ("RPC_TIMEOUT", "MESSAGING_ERROR", "SERVICE_STOPPING"):
                LOG.warning("Destination %s could not adopt %s now (%s); its recovery will",
                            dest_host, uuid, exc.code)
                return None
            raise

    def _finish(self, ctxt: RequestContext, uuid: str, row_id: int, dest_host: str,
                adopted: dict[str, Any] | None, kind: Kind) -> None:
        """The VM is at the destination: the row moves there."""
        values: dict[str, Any] = {"host": dest_host, "vm_state": kind.vm_state, "progress": 100}
        if adopted:
            values.update(vm_ref=adopted.get("vm_ref"),
                          power_state=adopted.get("power_state", kind.power))
        else:
            values.update(vm_ref=None, power_state=kind.power)
        self.runner.outcomes.succeed(ctxt, uuid, kind.request, kind.task_state, values)
        self._close(row_id, im.COMPLETED)
        LOG.info("Instance %s now runs on %s", uuid, dest_host)
        if kind is RESIZE and self.after_resize_move is not None:
            self.after_resize_move(ctxt, uuid, self.records.get(row_id))

    def _close(self, row_id: int, status: str, error: list[Any] | None = None) -> None:
        try:
            self.records.update(row_id, {"status": status, "error": error},
                                expected_status=im.ACTIVE)
        except im.MigrationChanged:
            pass  # recovery closed it first

    def _after_failure(self, ctxt: RequestContext, uuid: str, dest_host: str,
                       exc: BaseException, kind: Kind) -> None:
        """The task failed, or prepare did: where is the VM?"""
        row = self.records.active_for(uuid)
        try:
            facts, answer = self._facts(ctxt, uuid, dest_host, asked=row is not None
                                        and row["status"] == im.MIGRATING)
        except exceptions.ComputeAgentError:
            facts, answer = None, None
        if row is not None and facts is not None and \
                migration_rules.where(facts) == migration_rules.MOVED:
            LOG.warning("Live migration of %s reported %s but the VM is at %s", uuid,
                        getattr(exc, "code", type(exc).__name__), dest_host)
            self._finish(ctxt, uuid, row["id"], dest_host, answer, kind)
            return
        self._abort_dest(ctxt, uuid, dest_host)
        if row is not None:
            if isinstance(exc, exceptions.ComputeAgentError):
                error = [exc.code, *exc.params]
            else:
                error = [type(exc).__name__, str(exc)]
            self._close(row["id"], im.FAILED, error)
        self.runner.outcomes.fail(ctxt, uuid, kind.request, exc,
                                  settle=self.runner.settler(kind.request))

    def _facts(self, ctxt: RequestContext, uuid: str, dest_host: str, asked: bool
               ) -> tuple[migration_rules.Facts, dict[str, Any] | None]:
        """Where the VM is, and the destination's adopt answer if it took it."""
        inst = self.db.get_instance(uuid, internal=True)
        try:
            info = self.driver.get_info(driver_view(inst))
            here = bool(info.extra.get("on_this_host", True))
        except exceptions.InstanceNotFound:
            here = False
        adopted: bool | None = False
        answer = None
        if not here and asked:
            try:
                answer = self._adopt(ctxt, uuid, dest_host)
                adopted = True if answer is not None else None
            except exceptions.ComputeAgentError:
                adopted = False
        return migration_rules.Facts(here=here, adopted=adopted), answer

    def _abort_dest(self, ctxt: RequestContext, uuid: str, dest_host: str) -> None:
        try:
            self.peers().abort_live_migration(dest_host, uuid, ctxt=ctxt)
        except Exception as exc:  # best effort: the token dies with its session anyway
            LOG.info("Could not tell %s to drop its migration token: %s", dest_host, exc)

    # -- destination: what the source asks ---------------------------------------------------
    def prepare(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        uuid = validate_uuid(instance_uuid)
        self.runner.refuse_if_stopping()
        inst = self.db.get_instance(uuid, internal=True)
        if inst["host"] == self.host:
            raise MigrationRefused(uuid, self.host, "it is on this host already")
        if inst["task_state"] != states.MIGRATING:
            raise MigrationRefused(uuid, self.host, f"it is not migrating ({inst['task_state']})")
        LOG.info("Preparing to receive instance %s from %s", uuid, inst["host"])
        return self.driver.prepare_live_migration(driver_view(inst))

    def adopt(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        uuid = validate_uuid(instance_uuid)
        inst = self.db.get_instance(uuid, internal=True)
        info = self.driver.adopt_instance(driver_view(inst))
        LOG.info("Adopted instance %s (VM %s)", uuid, info.vm_ref)
        return {"vm_ref": info.vm_ref, "power_state": info.power_state}

    def abort(self, ctxt: RequestContext, instance_uuid: Any) -> None:
        self.driver.abort_live_migration(validate_uuid(instance_uuid))

    # -- recovery -----------------------------------------------------------------------------
    def recover(self, ctxt: RequestContext, inst: dict[str, Any]) -> str | None:
        """Settle an instance an earlier run left ``migrating`` on this
        (source) host, its tracked tasks already waited for; returns the
        vm_state it ended in (None: it changed meanwhile, left alone)."""
        uuid = inst["uuid"]
        row = self.records.active_for(uuid)
        if row is not None and row["source_host"] != self.host:
            row = None
        request_id = row["request_id"] if row and row.get("request_id") else \
            self._unfinished_request(uuid)
        if request_id:
            ctxt = new_context(request_id=request_id, instance_uuid=uuid)
        kind = BY_RECORD.get(row["kind"]) if row else self._kind_of(uuid)
        kind = kind or LIVE
        if row is not None:
            dest_host = row["dest_host"]
            facts, answer = self._facts(ctxt, uuid, dest_host,
                                        asked=row["status"] == im.MIGRATING)
            outcome = migration_rules.where(facts)
            LOG.warning("Recovering the %s migration of %s to %s: %s", kind.record, uuid,
                        dest_host, outcome)
            if outcome == migration_rules.MOVED:
                self._finish(ctxt, uuid, row["id"], dest_host, answer, kind)
                return kind.vm_state
            self._abort_dest(ctxt, uuid, dest_host)
        # It stayed (or never got as far as asking anyone): settled where it
        # is, with why the migration did not happen.
        error = self._why(uuid, request_id, kind)
        if row is not None:
            self._close(row["id"], im.FAILED, [error.code, *error.params])
        self.runner.outcomes.fail(ctxt, uuid, kind.request, error,
                                  settle=self.runner.settler(kind.request))
        return self.db.get_instance(uuid)["vm_state"]

    def _unfinished_request(self, uuid: str) -> str | None:
        for action in reversed(self.db.list_actions(uuid)):
            if action.get("result") is None:
                return action["request_id"]
        return None

    def _kind_of(self, uuid: str) -> Kind | None:
        for action in reversed(self.db.list_actions(uuid)):
            if action.get("result") is None:
                return BY_ACTION.get(action["action"])
        return None

    def _why(self, uuid: str, request_id: str | None,
             kind: Kind) -> exceptions.ComputeAgentError:
        """From how the request's dom0 tasks ended (recovery's rule)."""
        outcomes = [ts.TaskState(r["status"], error=r.get("error") or None)
                    for r in self.db.list_tracked_tasks(status=None, instance_uuid=uuid)
                    if request_id is None or r.get("request_id") == request_id]
        return recovery_rules.cause(uuid, states.MIGRATING, kind.request, outcomes,
                                    timeout_of(self.conf, REQUESTS[kind.request].driver_op))

    def close_finished(self) -> None:
        """Migration rows whose instance already moved (the agent died
        between moving the row and closing the migration) are completed."""
        for row in self.records.list_active(self.host):
            try:
                inst = self.db.get_instance(row["instance_uuid"], internal=True)
            except exceptions.InstanceNotFound:
                self._close(row["id"], im.FAILED, ["INSTANCE_NOT_FOUND", row["instance_uuid"]])
                continue
            if inst["host"] == row["dest_host"] and inst["task_state"] is None:
                self._close(row["id"], im.COMPLETED)

    def adopt_strays(self, ctxt: RequestContext) -> list[str]:
        """Instances recorded on this host whose VM is not marked as this
        agent's (it arrived while this agent was down): adopt them."""
        try:
            owned = set(self.driver.list_instance_uuids())
        except exceptions.ComputeAgentError as exc:
            LOG.warning("Cannot look for instances to adopt: %s", exc.message)
            return []
        adopted = []
        for inst in self.db.list_instances(host=self.host, internal=True):
            if inst["uuid"] in owned or inst["task_state"] is not None or \
                    inst["vm_state"] in (states.DELETED, states.BUILDING, states.ERROR):
                continue
            try:
                info = self.driver.adopt_instance(driver_view(inst))
            except (exceptions.ComputeAgentError, NotImplementedError) as exc:
                LOG.info("Instance %s has no VM of this agent here (%s)", inst["uuid"],
                         getattr(exc, "code", type(exc).__name__))
                continue
            self.db.update_instance(inst["uuid"], {"vm_ref": info.vm_ref,
                                                   "power_state": info.power_state},
                                    expected_task_state=None)
            LOG.warning("Adopted instance %s, which arrived while this agent was down",
                        inst["uuid"])
            adopted.append(inst["uuid"])
        return adopted
