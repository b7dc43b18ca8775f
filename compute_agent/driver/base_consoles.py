"""The part of the driver interface (driver/base.py) for consoles, the
console log, metrics and diagnostics (RPC 1.5). ComputeDriver inherits it;
every method's contract is in its docstring. Drivers that cannot do these
raise NotImplementedError; the manager answers OPERATION_NOT_SUPPORTED.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


class ConsoleOperations:

    def get_vnc_console(self, instance: dict[str, Any]) -> dict[str, Any]:
        """Where the hypervisor serves the running VM's VNC (RFB) console:
        ``{"location": URL, "vm_uuid": str}``; the location is what a
        console proxy opens (for XenAPI: the console record's location, a
        dom0 ``/console`` URL to ``CONNECT`` to with a session of its own).
        Raises InstanceNotFound when there is no VM, CONSOLE_NOT_AVAILABLE
        [uuid, power state] when it is not running or has no RFB console."""
        raise NotImplementedError

    def get_console_output(self, instance: dict[str, Any], max_bytes: int) -> bytes:
        """At most the last ``max_bytes`` bytes of the guest's console log
        (what it printed on its serial console since its domain started);
        empty when it printed nothing yet. Raises InstanceNotFound,
        CONSOLE_NOT_AVAILABLE [uuid, power state] when it is not running."""
        raise NotImplementedError

    def poll_metrics(self) -> dict[str, Any]:
        """Read the hypervisor's metrics once for the whole host (for XenAPI
        one ``/rrd_updates`` request, whatever the number of VMs) and return
        ``{"host": host figures, "host_uuid": str, "sampled_at": epoch
        seconds, "step": seconds, "instances": {instance uuid: figures}}``;
        figures as in docs/metrics.md (cpu, memory, disks, nics; the host
        also load_average). Instances running without an agent mark are
        left out. Raises HypervisorUnavailable."""
        raise NotImplementedError

    def get_diagnostics(self, instance: dict[str, Any]) -> dict[str, Any]:
        """The instance's figures from the latest poll_metrics (polling
        first when there was none within an interval): ``{"vm_uuid",
        "sampled_at", "step", "cpu", "memory", "disks", "nics"}``. Raises
        InstanceNotFound, or INSTANCE_NOT_RUNNING [uuid, power state] when
        the VM has no running domain (so no metrics)."""
        raise NotImplementedError
