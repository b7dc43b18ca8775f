"""The XenAPI driver's console, console log, metrics and diagnostics
methods (RPC 1.5): reads that start no dom0 task, so they run under no
operation scope; they hand over to consoles.py and host_metrics.py.
XenAPIDriver inherits them (it provides ``_ops`` and the parts set up in
``_connect``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compute_agent.driver.xenapi.consoles import Consoles
    from compute_agent.driver.xenapi.host_metrics import HostMetrics
    from compute_agent.driver.xenapi.tasks import TaskRunner


class ConsoleMethods:
    # Set up by XenAPIDriver._connect.
    consoles: Consoles | None
    metrics: HostMetrics | None

    def _ops(self) -> tuple[TaskRunner, Any]:  # XenAPIDriver's
        raise NotImplementedError

    def _consoles(self) -> Consoles:
        self._ops()
        assert self.consoles is not None
        return self.consoles

    def _metrics(self) -> HostMetrics:
        self._ops()
        assert self.metrics is not None
        return self.metrics

    def get_vnc_console(self, instance: dict[str, Any]) -> dict[str, Any]:
        return self._consoles().vnc_location(instance)

    def get_console_output(self, instance: dict[str, Any], max_bytes: int) -> bytes:
        return self._consoles().output(instance, max_bytes)

    def poll_metrics(self) -> dict[str, Any]:
        return self._metrics().poll()

    def get_diagnostics(self, instance: dict[str, Any]) -> dict[str, Any]:
        return self._metrics().diagnostics(instance)
