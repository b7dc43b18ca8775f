"""Which changes of a VM record are power events for the manager, and
their delivery on a thread of their own (so a slow listener never delays
the event stream). The TaskWatcher (watcher.py) feeds both.

Also which fields of a VM record the TaskWatcher keeps (:data:`VM_FIELDS`):
what these events, the driver's instance list (vm_ops.infos_of) and the
search for an instance's VM (vm_lookup.py) read. A full record is ~9 KB in
memory (90 fields); the kept fields ~1.4 KB, which at 1,000 VMs is the
difference between ~9 MB and ~1.5 MB.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from compute_agent.driver.base import InstanceInfo
from compute_agent.driver.xenapi import ownership
from compute_agent.driver.xenapi.vm_ops import instance_info

LOG = logging.getLogger(__name__)

PowerChange = Callable[[str, InstanceInfo], None]

VM_FIELDS = ("uuid", "name_label", "power_state", "domid", "is_a_template", "is_a_snapshot",
             "is_control_domain", "other_config")


def kept_fields(rec: dict[str, Any]) -> dict[str, Any]:
    """The VM_FIELDS of a VM record (those it has)."""
    return {k: rec[k] for k in VM_FIELDS if k in rec}


def power_key(rec: dict[str, Any]) -> tuple[Any, ...]:
    """What a power event is about: state, last shutdown reason and time,
    and the domain (a reboot changes only the last two)."""
    other = rec.get("other_config") or {}
    return (
        rec.get("power_state"),
        other.get("last_shutdown_reason"),
        other.get("last_shutdown_time"),
        str(rec.get("domid")),
    )


def power_change(ref: str, old: dict[str, Any] | None, new: dict[str, Any],
                 agent_host: str | None) -> tuple[str, InstanceInfo] | None:
    """(instance uuid, info) when ``new`` is a power event of a VM this
    agent owns; None for a first sight, another agent's VM, a template, a
    snapshot or a rescue VM, or a change that is not about power."""
    if old is None or agent_host is None:
        return None
    # A rescue VM speaks for its instance only through get_info (the
    # periodic sync): its ref must never become the instance's VM.
    if new.get("is_a_template") or new.get("is_a_snapshot") or ownership.is_rescue(new):
        return None
    if not ownership.owned_by(new, agent_host):
        return None
    instance = ownership.instance_of(new)
    if not instance or power_key(old) == power_key(new):
        return None
    return instance, instance_info(ref, new)


class PowerDeliveries:
    """Power events queued by the stream and handed, in order, to the
    current listener (``listener()``) on a thread of their own."""

    def __init__(self, listener: Callable[[], PowerChange | None]):
        self._listener = listener
        self.queue: queue.SimpleQueue[tuple[str, InstanceInfo] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="xenapi-power-events",
                                        daemon=True)
        self._thread.start()

    def put(self, changes: list[tuple[str, InstanceInfo]]) -> None:
        for change in changes:
            self.queue.put(change)

    def close(self, timeout: float = 5.0) -> None:
        self.queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            cb = self._listener()
            if cb is None:
                continue
            try:
                cb(*item)
            except Exception:
                LOG.exception("power state listener failed for %s", item[0])
