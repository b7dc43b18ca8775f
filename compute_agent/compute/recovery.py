"""Recovery: finish or undo what an earlier run of the agent left half done.

Runs when the agent starts (before it serves RPC) and again after the
driver reconnected to dom0. It works from two lists in the database:

1. Tracked tasks still ``pending`` for this agent host: each is re-attached
   through ``driver.reattach_task`` (which waits for it like for a task the
   agent started itself, up to what is left of its operation's timeout, then
   cancels it), or found ``lost`` if dom0 no longer has it.
2. Instances of this host with a task_state: once their tasks (if any) have
   ended, each is settled into a stable state from what the hypervisor shows
   (the rules are in recovery_rules.py, applying them in recovery_settle.py):
   *finished* when the VM shows the operation took effect, otherwise
   *rolled back* (a half-built VM is removed, a start or
   stop that did not happen leaves the state the VM is in) with a fault that
   says why: OPERATION_INTERRUPTED [uuid, task_state], OPERATION_CANCELLED,
   OPERATION_TIMED_OUT or the dom0 error that failed the task. A delete is
   always completed (destroy is idempotent and the user's intent is clear).

Then VMs in dom0 marked as this agent's whose instance is unknown or
deleted are reported (log + :attr:`RecoveryRun.orphans`) and, with
``[DEFAULT] reap_orphans``, destroyed.

Instances that an operation of this process owns (``busy()``) are never
touched, and the check is made under the manager's per-instance lock, so a
recovery after a reconnect cannot race a request that was just accepted.
The classification is quick and synchronous; waiting for tasks and the
dom0 work of settling run in one thread per instance, so the agent can serve
requests meanwhile (an instance being recovered keeps its task_state, so
requests for it are refused as busy until it is settled).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from compute_agent import exceptions
from compute_agent import notifications as notif
from compute_agent.compute.locks import InstanceLocks
from compute_agent.compute.recovery_rules import orphans
from compute_agent.compute.recovery_settle import UNAVAILABLE_RETRY_S, InstanceSettler
from compute_agent.compute.requests import timeout_of
from compute_agent.compute.task_reattach import TaskReattacher
from compute_agent.context import RequestContext, new_context
from compute_agent.driver import task_status as ts
from compute_agent.driver.base import ComputeDriver, Operation

LOG = logging.getLogger(__name__)

@dataclass
class RecoveryRun:
    """One run: what it took on. ``wait()`` joins its threads."""

    reason: str
    instances: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    reaped: list[str] = field(default_factory=list)
    settled: dict[str, str] = field(default_factory=dict)  # uuid -> vm_state it ended in
    threads: list[threading.Thread] = field(default_factory=list)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self.threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)


class Recovery:
    def __init__(
        self,
        conf: Any,
        db: Any,
        driver: ComputeDriver,
        notifier: notif.Notifier,
        host: str,
        locks: InstanceLocks | None = None,
        busy: Callable[[], set[str]] | None = None,
        discard_images: Callable[[str], int] | None = None,
    ):
        self.conf = conf
        self.db = db
        self.driver = driver
        self.notifier = notifier
        self.host = host
        self.locks = locks if locks is not None else InstanceLocks()
        self.busy = busy or set
        self._mine: set[str] = set()  # instances a recovery thread works on
        self._mine_lock = threading.Lock()
        self._stop = threading.Event()
        self._reattacher = TaskReattacher(conf, db, driver, self._stop)
        self.settler = InstanceSettler(conf, db, driver, notifier, self._stop, discard_images)
        self.last_run: RecoveryRun | None = None
        # task_state -> settle(ctxt, instance) for operations with rules of
        # their own (a live migration involves two agents); returns the
        # vm_state it settled in, or None to apply the plain rules.
        self.settlers: dict[str, Callable[[RequestContext, dict[str, Any]], str | None]] = {}
        # Run in the background at every recovery, after the instances.
        self.sweeps: list[Callable[[RequestContext], Any]] = []

    # -- entry points ---------------------------------------------------------------

    def start(self, ctxt: RequestContext | None = None, reason: str = "start") -> RecoveryRun:
        """Classify now, resolve in background threads; returns the run."""
        ctxt = ctxt or new_context()
        run = RecoveryRun(reason)
        tasks_by_instance: dict[str, list[dict[str, Any]]] = {}
        for task in self.db.list_tracked_tasks(agent_host=self.host, status=ts.PENDING):
            key = task.get("instance_uuid") or ""
            tasks_by_instance.setdefault(key, []).append(task)
        candidates = set(tasks_by_instance) - {""}
        for inst in self.db.list_instances(host=self.host, include_deleted=True):
            if inst["task_state"] is not None:
                candidates.add(inst["uuid"])
        for uuid in sorted(candidates):
            if not self._claim(uuid):
                continue
            tasks = tasks_by_instance.get(uuid, [])
            run.instances.append(uuid)
            run.tasks.extend(t["ref"] for t in tasks)
            self._thread(run, f"recover-{uuid}", self._recover_instance, ctxt, run, uuid, tasks)
        # Tasks of no instance (should not happen, but must not stay pending).
        for task in tasks_by_instance.get("", []):
            run.tasks.append(task["ref"])
            self._thread(run, f"recover-task-{task['ref']}", self._reattach_loose, ctxt, task)
        self._find_orphans(ctxt, run)
        for sweep in self.sweeps:
            self._thread(run, f"recover-sweep-{getattr(sweep, '__name__', 'sweep')}",
                         self._sweep, ctxt, sweep)
        LOG.info("Recovery (%s): %d instances, %d pending tasks, %d orphan VMs",
                 reason, len(run.instances), len(run.tasks), len(run.orphans))
        self.last_run = run
        return run

    def stop(self) -> None:
        """Stop retrying; threads waiting on dom0 tasks end with them (their
        rows stay pending for the next start)."""
        self._stop.set()

    # -- claiming ---------------------------------------------------------------------

    def _claim(self, uuid: str) -> bool:
        with self.locks.hold(uuid), self._mine_lock:
            if uuid in self._mine or uuid in self.busy():
                return False
            self._mine.add(uuid)
            return True

    def _release(self, uuid: str) -> None:
        with self._mine_lock:
            self._mine.discard(uuid)

    def _thread(self, run: RecoveryRun, name: str, target: Callable[..., None],
                *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        run.threads.append(t)
        t.start()

    # -- one instance -----------------------------------------------------------------

    def _recover_instance(self, ctxt: RequestContext, run: RecoveryRun, uuid: str,
                          tasks: list[dict[str, Any]]) -> None:
        ctxt.for_instance(uuid).update_store()  # its log lines name the instance
        try:
            outcomes: dict[str, ts.TaskState] = {}
            for task in tasks:
                st = self._reattach(task)
                if st is None:
                    return  # dom0 unreachable: the reconnect run takes it up
                outcomes[task["ref"]] = st
            try:
                inst = self.db.get_instance(uuid, internal=True)
            except exceptions.InstanceNotFound:
                return
            if inst["task_state"] is None or inst["host"] != self.host:
                return  # only tasks to account for; the instance is stable
            settle = self.settlers.get(inst["task_state"])
            vm_state = settle(ctxt, inst) if settle is not None else None
            if vm_state is None:
                inst = self.db.get_instance(uuid, internal=True)
                if inst["task_state"] is None or inst["host"] != self.host:
                    return
                vm_state = self.settler.settle(ctxt, inst, tasks, outcomes)
            if vm_state is not None:
                run.settled[uuid] = vm_state
        except Exception:
            LOG.exception("Recovery of instance %s failed", uuid)
        finally:
            self._release(uuid)

    def _sweep(self, ctxt: RequestContext, sweep: Callable[[RequestContext], Any]) -> None:
        try:
            sweep(ctxt)
        except Exception:
            LOG.exception("Recovery sweep %s failed", getattr(sweep, "__name__", sweep))

    def _reattach_loose(self, ctxt: RequestContext, task: dict[str, Any]) -> None:
        try:
            self._reattach(task)
        except Exception:
            LOG.exception("Recovery of task %s failed", task["ref"])

    def _reattach(self, task: dict[str, Any]) -> ts.TaskState | None:
        return self._reattacher.reattach(task, UNAVAILABLE_RETRY_S)

    # -- orphans ----------------------------------------------------------------------

    def _find_orphans(self, ctxt: RequestContext, run: RecoveryRun) -> None:
        try:
            vm_uuids = self.driver.list_instance_uuids()
        except exceptions.ComputeAgentError as exc:
            LOG.warning("Cannot look for orphan VMs: %s", exc.message)
            return
        # One read of the database for every VM, not one query per VM.
        known = {i["uuid"]: i for i in self.db.list_instances(include_deleted=True)}
        for uuid, why in orphans(vm_uuids, known, self.busy()):
            run.orphans.append(uuid)
            if not self.conf.reap_orphans:
                LOG.warning("Orphan VM of instance %s in dom0 (%s); set [DEFAULT] "
                            "reap_orphans to remove such VMs", uuid, why)
                continue
            if not self._claim(uuid):
                continue
            LOG.warning("Removing orphan VM of instance %s (%s)", uuid, why)
            run.reaped.append(uuid)
            self._thread(run, f"reap-{uuid}", self._reap, ctxt, uuid)

    def _reap(self, ctxt: RequestContext, uuid: str) -> None:
        try:
            op = Operation(uuid, "destroy", ctxt.request_id,
                           timeout=timeout_of(self.conf, "destroy"))
            self.driver.destroy(op, {"uuid": uuid, "name": None, "networks": [],
                                     "metadata": {}})
        except Exception:
            LOG.exception("Could not remove orphan VM of %s", uuid)
        finally:
            self._release(uuid)

