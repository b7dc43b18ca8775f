"""A running VM's consoles, as dom0 has them: where its VNC console is
served (the console record's location, which a console proxy opens with
``CONNECT``) and the tail of its console log, read in dom0 by the
``console_log`` host plugin (etc/xapi.d/plugins/console_log) on the host
the VM runs on.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.xenapi.session import SessionPool
from compute_agent.driver.xenapi.vm_ops import VMOps

PLUGIN = "console_log"
# the plugin's own bound: it refuses more
MAX_LOG_BYTES = 100 * 1024
_RUNNING = ("Running", "Paused")


class Consoles:
    def __init__(self, pool: SessionPool, vmops: VMOps):
        self.pool = pool
        self.vmops = vmops

    def _running(self, instance: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        ref, rec = self.vmops.require(instance)
        if rec.get("power_state") not in _RUNNING:
            raise exceptions.ConsoleNotAvailable(instance["uuid"],
                                                 str(rec.get("power_state")).lower())
        return ref, rec

    def vnc_location(self, instance: dict[str, Any]) -> dict[str, Any]:
        _ref, rec = self._running(instance)
        for console in rec.get("consoles") or []:
            crec = self.pool.call("console.get_record", console)
            if crec.get("protocol") == "rfb" and crec.get("location"):
                return {"location": crec["location"], "vm_uuid": rec["uuid"]}
        raise exceptions.ConsoleNotAvailable(instance["uuid"], "no rfb console")

    def output(self, instance: dict[str, Any], max_bytes: int) -> bytes:
        _ref, rec = self._running(instance)
        args = {"dom_id": str(int(rec["domid"])),
                "max_bytes": str(max(1, min(int(max_bytes), MAX_LOG_BYTES)))}
        try:
            encoded = self.pool.call("host.call_plugin", rec["resident_on"], PLUGIN, "tail",
                                     args)
        except exceptions.HypervisorError as e:
            if e.code == "CONSOLE_LOG_NOT_FOUND":
                return b""  # the guest printed nothing yet
            raise
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise exceptions.HypervisorError(PLUGIN, "the log is not base64",
                                             code="XENAPI_PLUGIN_FAILURE") from None
