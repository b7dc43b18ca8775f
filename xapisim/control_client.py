"""A small client of the simulator's control API (``/_sim/``), for tests
of other packages that run the simulator out of process:

    ctl = SimControl("http://127.0.0.1:8080")            # or https + ca_file=
    ctl.fail("VM.start", ["HOST_NOT_ENOUGH_FREE_MEMORY", "1024", "512"])
    ctl.set_duration("VM.start", 2.0)
    ctl.crash_vm(vm_uuid)
    ctl.state()["hosts"]

Every method returns the decoded answer; a refused request raises
ControlError (``status`` and ``error``: a message, or the XenAPI error
list when the simulated event was impossible).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any


class ControlError(Exception):
    def __init__(self, status: int, error: Any):
        super().__init__(f"HTTP {status}: {error}")
        self.status = status
        self.error = error


class SimControl:
    def __init__(self, url: str, ca_file: str | None = None,
                 ssl_context: ssl.SSLContext | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        if ssl_context is None and ca_file is not None:
            ssl_context = ssl.create_default_context(cafile=ca_file)
        self.ssl_context = ssl_context

    # -- transport ----------------------------------------------------------------
    def _request(self, method: str, endpoint: str, doc: dict[str, Any] | None = None) -> dict:
        data = json.dumps(doc or {}).encode() if method == "POST" else None
        req = urllib.request.Request(f"{self.url}/_sim/{endpoint}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout,
                                        context=self.ssl_context) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                error = json.loads(body).get("error")
            except ValueError:
                error = body.decode(errors="replace")
            raise ControlError(e.code, error) from None

    def post(self, endpoint: str, **doc: Any) -> dict:
        return self._request("POST", endpoint, doc)

    # -- reading --------------------------------------------------------------------
    def state(self) -> dict:
        return self._request("GET", "state")

    def http_requests(self, path: str | None = None, method: str | None = None) -> int:
        """How many HTTP requests (all hosts) the simulator served, optionally
        only those to ``path`` and/or with ``method``."""
        rows = self._request("GET", "http_requests")["requests"]
        return sum(r["count"] for r in rows
                   if (path is None or r["path"] == path)
                   and (method is None or r["method"] == method))

    # -- time and faults ------------------------------------------------------------
    def set_latency(self, method: str, seconds: float) -> dict:
        """Delay every call of ``method`` (``"*"``: all calls) by ``seconds``."""
        return self.post("latency", method=method, seconds=seconds)

    def set_duration(self, method: str, seconds: float) -> dict:
        """How long the work of ``method`` takes (``"*"``: the default)."""
        return self.post("duration", method=method, seconds=seconds)

    def set_time_scale(self, scale: float) -> dict:
        """Multiply every latency and duration by ``scale``."""
        return self.post("time_scale", scale=scale)

    def fail(self, method: str, error: list[str], count: int = 1) -> dict:
        """The next ``count`` calls of ``method`` fail with ``error``."""
        return self.post("fail", method=method, error=list(error), count=count)

    def drop(self, method: str = "*", count: int = 1) -> dict:
        """The next ``count`` calls lose their connection unanswered."""
        return self.post("drop", method=method, count=count)

    def hang(self, method: str = "*", seconds: float = 30.0, count: int = 1) -> dict:
        """The next ``count`` calls get no answer for ``seconds``, then drop."""
        return self.post("hang", method=method, seconds=seconds, count=count)

    def clear(self) -> dict:
        """Forget every latency, duration override, rule and time scale, and
        the HTTP request counts."""
        return self.post("clear")

    # -- events -------------------------------------------------------------------
    def crash_vm(self, vm: str) -> dict:
        return self.post("vm/crash", vm=vm)

    def guest_shutdown(self, vm: str) -> dict:
        return self.post("vm/shutdown", vm=vm)

    def guest_reboot(self, vm: str) -> dict:
        return self.post("vm/reboot", vm=vm)

    def restart_xapi(self) -> dict:
        return self.post("restart_xapi")

    def fail_host(self, host: str) -> dict:
        return self.post("host/fail", host=host)

    def recover_host(self, host: str) -> dict:
        return self.post("host/recover", host=host)

    def save(self) -> dict:
        return self.post("save")

    def task_gc(self) -> dict:
        """A task garbage collection pass now (finished tasks past their
        age, and those task.destroy marked while pending)."""
        return self.post("gc")
