"""Power state as the hypervisor reports it, applied to the instances.

Two ways in: :meth:`PowerStateSync.on_event`, the driver's power-state
listener (the XenAPI driver calls it from its ``event.from`` stream when a VM
of this agent changes power state or records a new shutdown), and
:meth:`PowerStateSync.sync_all`, the periodic full reconciliation every
``[DEFAULT] sync_power_state_interval`` seconds, the backstop for missed
events and for drivers without events.

Events are queued and applied by one worker thread, so a slow database
never stalls the driver's event loop; several events for one instance are
coalesced to the newest.

Only instances of this host with no task_state are changed (an operation in
progress settles its own instance from the hypervisor when it ends), and
never ``building`` or ``deleted`` ones. The rules, from the power state the
hypervisor reports:

===============  =====================================  ==========  ==========================
power state      vm_state before                        after       fault
===============  =====================================  ==========  ==========================
running          stopped, error, paused, suspended      active
shutdown         active, paused, suspended              stopped
crashed          any but error                          error       GUEST_CRASHED [uuid, reason]
paused           active                                 paused
suspended        active, paused                         suspended
(no VM, sync)    any but error with no power state      error       VM_MISSING [uuid]
===============  =====================================  ==========  ==========================

A crash is an *error*, not a stop: the guest did not go down by anyone's
wish and the instance needs attention (a hard reboot or a stop brings it
back to a normal state). A guest that shut itself down cleanly is
*stopped*. Other combinations keep the vm_state and only record the power
state. The shutdown reason (halted, rebooted, crashed, ...) is recorded
whenever the hypervisor gives one, and a guest that rebooted on its own
(still running, but a new shutdown recorded: ``InstanceInfo.extra
['last_shutdown_time']`` changed) is reported too. Each change sends the
notification ``instance.power_state.update``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from compute_agent import exceptions
from compute_agent import notifications as notif
from compute_agent.compute import states
from compute_agent.compute.locks import InstanceLocks
from compute_agent.context import RequestContext, clear_current, get_admin_context
from compute_agent.db.api import instance_to_dict
from compute_agent.db.types import parse_time, utcnow
from compute_agent.driver import power_state
from compute_agent.driver.base import ComputeDriver, InstanceInfo

LOG = logging.getLogger(__name__)

EVENT_TYPE = "instance.power_state.update"
MARKER_KEY = "last_shutdown_time"

# power state -> (vm_states it moves from, vm_state it moves to)
RULES: dict[int, tuple[tuple[str, ...], str]] = {
    power_state.RUNNING: ((states.STOPPED, states.ERROR, states.PAUSED, states.SUSPENDED),
                          states.ACTIVE),
    # Not rescued: the power state of a rescued instance is its rescue VM's,
    # and a rescue VM that went down is still a rescue to undo (unrescue).
    power_state.SHUTDOWN: ((states.ACTIVE, states.PAUSED, states.SUSPENDED), states.STOPPED),
    power_state.CRASHED: ((states.ACTIVE, states.STOPPED, states.PAUSED, states.SUSPENDED,
                           states.RESCUED, states.RESIZED), states.ERROR),
    power_state.PAUSED: ((states.ACTIVE,), states.PAUSED),
    power_state.SUSPENDED: ((states.ACTIVE, states.PAUSED), states.SUSPENDED),
}
UNTOUCHED = (states.BUILDING, states.DELETED)


class GuestCrashed(exceptions.ComputeAgentError):
    """params: instance uuid, shutdown reason."""

    code = "GUEST_CRASHED"
    msg_fmt = "The guest of instance {0} crashed (reason: {1})"


class VMMissing(exceptions.ComputeAgentError):
    """params: instance uuid."""

    code = "VM_MISSING"
    msg_fmt = "The VM of instance {0} is gone from the hypervisor"


def target_vm_state(vm_state: str, power: int) -> str:
    """The vm_state an instance in ``vm_state`` moves to when the hypervisor
    reports ``power`` (the table in the module docstring)."""
    rule = RULES.get(power)
    if rule is not None and vm_state in rule[0]:
        return rule[1]
    return vm_state


class PowerStateSync:
    def __init__(
        self,
        db: Any,
        driver: ComputeDriver,
        notifier: notif.Notifier,
        host: str,
        locks: InstanceLocks | None = None,
    ):
        self.db = db
        self.driver = driver
        self.notifier = notifier
        self.host = host
        self.locks = locks if locks is not None else InstanceLocks()
        self._markers: dict[str, Any] = {}  # uuid -> last shutdown marker seen
        self._own_writes: dict[str, str] = {}  # uuid -> updated_at of our last write
        self._pending: dict[str, tuple[InstanceInfo, Any]] = {}  # uuid -> (info, received)
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self._stopped = False
        self._idle = True

    # -- events ---------------------------------------------------------------------

    def on_event(self, instance_uuid: str, info: InstanceInfo) -> None:
        """The driver's power-state listener: queue and return at once."""
        with self._cond:
            if self._stopped:
                return
            self._pending[instance_uuid] = (info, utcnow())
            self._idle = False
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="power-sync",
                                                daemon=True)
                self._worker.start()
            self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every queued event is applied (for tests)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._idle, timeout)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(5.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopped:
                    self._idle = True
                    self._cond.notify_all()
                    self._cond.wait()
                if self._stopped:
                    self._idle = True
                    self._cond.notify_all()
                    return
                uuid, (info, received) = next(iter(self._pending.items()))
                del self._pending[uuid]
            ctxt = get_admin_context().for_instance(uuid)
            ctxt.update_store()
            try:
                self._apply_event(ctxt, uuid, info, received)
            except Exception:
                LOG.exception("Could not apply the power state event of %s", uuid)
            finally:
                clear_current()

    def _apply_event(self, ctxt: RequestContext, uuid: str, info: InstanceInfo,
                     received: Any) -> None:
        with self.locks.hold(uuid):
            try:
                inst = self.db.get_instance(uuid, internal=True)
            except exceptions.InstanceNotFound:
                LOG.debug("Power state event for unknown instance %s", uuid)
                return
            written = inst["updated_at"]
            if (written and written != self._own_writes.get(uuid)
                    and parse_time(written) > received):
                # Someone else (an operation settling the instance from a
                # fresher read) wrote it after the event arrived: stale event.
                self._markers[uuid] = info.extra.get(MARKER_KEY)
                return
            self.apply(ctxt, inst, info)

    # -- periodic reconciliation ------------------------------------------------------

    def sync_all(self, ctxt: RequestContext) -> int:
        """Compare every instance of this host with the hypervisor; returns
        how many changed. Stops early if the hypervisor is unreachable."""
        changed = 0
        try:
            # One read of every VM (not one call per instance).
            infos = self.driver.list_instance_infos()
        except exceptions.ComputeAgentError as exc:
            LOG.warning("Power state sync skipped: %s", exc.message)
            return changed
        for inst in self.db.list_instances(host=self.host, internal=True):
            if inst["task_state"] is not None or inst["vm_state"] in UNTOUCHED:
                continue
            info: InstanceInfo | None = infos.get(inst["uuid"])
            if info is None:
                # Not in the listing: ask once more (a VM created since).
                try:
                    info = self.driver.get_info(inst)
                except exceptions.InstanceNotFound:
                    info = None
                except exceptions.ComputeAgentError as exc:
                    LOG.warning("Power state sync stopped: %s", exc.message)
                    return changed
            if info is not None and self._agrees(inst, info):
                continue  # nothing to write: no lock, no second read
            with self.locks.hold(inst["uuid"]):
                try:
                    current = self.db.get_instance(inst["uuid"], internal=True)
                except exceptions.InstanceNotFound:
                    continue
                if self.apply(ctxt, current, info):
                    changed += 1
        return changed

    def _agrees(self, inst: dict[str, Any], info: InstanceInfo) -> bool:
        """Whether apply() would find nothing to change for the instance as
        listed (power state, vm_state, shutdown reason, no new shutdown)."""
        marker = info.extra.get(MARKER_KEY)
        seen = self._markers.get(inst["uuid"])
        if marker is not None and seen is not None and marker != seen:
            return False
        if marker is not None:
            self._markers[inst["uuid"]] = marker
        reason = info.shutdown_reason
        return (info.power_state == inst["power_state"]
                and target_vm_state(inst["vm_state"], info.power_state) == inst["vm_state"]
                and (reason is None or reason == inst.get("shutdown_reason")))

    # -- the rule ---------------------------------------------------------------------

    def apply(self, ctxt: RequestContext, inst: dict[str, Any],
              info: InstanceInfo | None) -> bool:
        """Apply what the hypervisor says to one instance (call with its lock
        held); True if anything changed."""
        uuid = inst["uuid"]
        old_power, old_vm = inst["power_state"], inst["vm_state"]
        if inst["task_state"] is not None or old_vm in UNTOUCHED or inst["host"] != self.host:
            return False
        fault: exceptions.ComputeAgentError | None = None
        values: dict[str, Any] = {}
        reason = None
        new_shutdown = False
        if info is None:
            if old_vm == states.ERROR and old_power == power_state.NOSTATE:
                return False
            values = {"vm_state": states.ERROR, "power_state": power_state.NOSTATE,
                      "vm_ref": None}
            fault = VMMissing(uuid)
            reason = "missing"
        else:
            reason = info.shutdown_reason
            marker = info.extra.get(MARKER_KEY)
            seen = self._markers.get(uuid)
            new_shutdown = marker is not None and seen is not None and marker != seen
            if marker is not None:
                self._markers[uuid] = marker
            if info.power_state != old_power:
                values["power_state"] = info.power_state
            if reason is not None and reason != inst.get("shutdown_reason"):
                values["shutdown_reason"] = reason
            new_vm = target_vm_state(old_vm, info.power_state)
            if new_vm != old_vm:
                values["vm_state"] = new_vm
                if new_vm == states.ERROR and info.power_state == power_state.CRASHED:
                    fault = GuestCrashed(uuid, reason or "crashed")
            if not values and not new_shutdown:
                return False
            if info.vm_ref and info.vm_ref != inst.get("vm_ref"):
                values["vm_ref"] = info.vm_ref
        if values:
            try:
                updated = self.db.update_instance(uuid, values, expected_task_state=None)
            except exceptions.UnexpectedTaskState:
                return False  # an operation started meanwhile; it settles the state
        else:
            updated = self.db.get_instance(uuid)
        if fault is not None:
            self.db.add_instance_fault(uuid, fault.code, fault.params, fault.message)
            updated = self.db.get_instance(uuid)
        self._own_writes[uuid] = updated["updated_at"]
        LOG.info("Instance %s changed outside the agent: power %s -> %s, vm_state %s -> %s, "
                 "shutdown reason %s", uuid, power_state.name(old_power),
                 power_state.name(updated["power_state"]), old_vm, updated["vm_state"], reason)
        self._notify(ctxt, updated, old_power, old_vm, reason)
        return True

    def _notify(self, ctxt: RequestContext, inst: dict[str, Any], old_power: int,
                old_vm: str, reason: str | None) -> None:
        """``instance.power_state.update``: the instance as it is now (its
        fault included), the old power state and vm_state, the reason."""
        self.notifier.power_state_update(ctxt, instance_to_dict(inst), old_power, old_vm, reason)
