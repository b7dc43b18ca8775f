"""The manager's RPC 1.5 methods: the browser console, the console log and
diagnostics (compute/consoles.py). A mixin of ComputeManager (manager.py)."""

from __future__ import annotations

from typing import Any

from compute_agent.context import RequestContext


class ConsoleMethods:
    # Set up by ComputeManager.__init__.
    _consoles: Any

    def get_vnc_console(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        """A one-time noVNC URL and token for the running instance's console
        (compute/consoles.py)."""
        return self._consoles.vnc_console(instance_uuid)

    def get_console_output(self, ctxt: RequestContext, instance_uuid: Any,
                           tail_length: Any = None) -> dict[str, Any]:
        return self._consoles.console_output(instance_uuid, tail_length)

    def get_diagnostics(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        return self._consoles.diagnostics(instance_uuid)
