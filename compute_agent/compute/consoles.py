"""The console and diagnostics queries of the manager (RPC 1.5):
get_vnc_console issues a token for compute-agent-novncproxy, get_console_output
reads the guest's console log, get_diagnostics gives the instance's latest
RRD figures. All three are queries: they change no instance state, hold no
task_state and leave nothing for recovery to settle (an unused console
token simply expires; expired tokens are purged as new ones are issued).

Each checks that the instance exists on this agent's host, then asks the
driver; a driver that cannot answers OPERATION_NOT_SUPPORTED.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable
from typing import Any

from compute_agent import exceptions
from compute_agent.compute import states
from compute_agent.compute.requests import driver_view
from compute_agent.compute.runner import NotSupported, WrongHost
from compute_agent.compute.validation import validate_uuid
from compute_agent.console.tokens import ConsoleTokens
from compute_agent.driver.base import ComputeDriver

LOG = logging.getLogger(__name__)

# get_console_output reads at most this much of the log's end (the dom0
# plugin's own bound) and returns at most MAX_TAIL_LINES lines of it.
MAX_OUTPUT_BYTES = 100 * 1024
MAX_TAIL_LINES = 10000


class ConsoleQueries:
    def __init__(self, conf: Any, db: Any, driver: ComputeDriver, host: str):
        self.conf = conf
        self.db = db
        self.driver = driver
        self.host = host
        self.tokens = ConsoleTokens(db)

    def _instance(self, instance_uuid: Any) -> dict[str, Any]:
        uuid = validate_uuid(instance_uuid)
        inst = self.db.get_instance(uuid, internal=True)
        if inst["vm_state"] == states.DELETED:
            raise exceptions.InstanceNotFound(uuid)
        if inst["host"] != self.host:
            raise WrongHost(uuid, inst["host"], self.host)
        return inst

    def _driver_call(self, name: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except NotImplementedError:
            raise NotSupported(name, type(self.driver).__name__) from None

    def vnc_console(self, instance_uuid: Any) -> dict[str, Any]:
        inst = self._instance(instance_uuid)
        where = self._driver_call("get_vnc_console",
                                  lambda: self.driver.get_vnc_console(driver_view(inst)))
        issued = self.tokens.issue(inst["uuid"], self.host, where["location"],
                                   int(self.conf.console.token_ttl))
        base = urllib.parse.urlsplit(self.conf.console.novncproxy_base_url)
        query = urllib.parse.parse_qsl(base.query, keep_blank_values=True)
        query.append(("path", "websockify?" + urllib.parse.urlencode(
            {"token": issued["token"]})))
        url = urllib.parse.urlunsplit(base._replace(query=urllib.parse.urlencode(query)))
        LOG.info("Console token issued for %s (expires %s)", inst["uuid"],
                 issued["expires_at"])
        return {"instance_uuid": inst["uuid"], "protocol": "vnc", "url": url,
                "token": issued["token"], "expires_at": issued["expires_at"]}

    def console_output(self, instance_uuid: Any, tail_length: Any = None) -> dict[str, Any]:
        if tail_length is not None and (
                isinstance(tail_length, bool) or not isinstance(tail_length, int)
                or not 1 <= tail_length <= MAX_TAIL_LINES):
            raise exceptions.InvalidInput(
                "tail_length", f"must be null or an integer from 1 to {MAX_TAIL_LINES}")
        inst = self._instance(instance_uuid)
        raw = self._driver_call(
            "get_console_output",
            lambda: self.driver.get_console_output(driver_view(inst), MAX_OUTPUT_BYTES))
        text = raw.decode("utf-8", errors="replace")
        truncated = len(raw) >= MAX_OUTPUT_BYTES
        if truncated:  # the first line is cut off mid-way: drop it
            text = text.split("\n", 1)[1] if "\n" in text else ""
        if tail_length is not None:
            lines = text.splitlines(keepends=True)
            truncated = truncated or len(lines) > tail_length
            text = "".join(lines[-tail_length:])
        return {"instance_uuid": inst["uuid"], "output": text, "truncated": truncated}

    def diagnostics(self, instance_uuid: Any) -> dict[str, Any]:
        inst = self._instance(instance_uuid)
        figures = self._driver_call("get_diagnostics",
                                    lambda: self.driver.get_diagnostics(driver_view(inst)))
        return {"instance_uuid": inst["uuid"], "name": inst["name"], "host": self.host,
                **figures}
