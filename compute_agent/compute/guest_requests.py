"""The guest agent's commands as RPC requests (1.4): set the admin
password, inject a file, reset the network. The driver speaks to the
agent; this checks the arguments and runs them as instance calls
(instance_calls.py). The password and the file's contents are arguments
only: they are in no record, log line or notification.
"""

from __future__ import annotations

from typing import Any

from compute_agent import exceptions
from compute_agent.compute.instance_calls import InstanceCalls
from compute_agent.context import RequestContext

MAX_PASSWORD = 255
MAX_PATH = 255
# A xenstore value holds 4096 bytes; base64 and the request around it must fit.
MAX_FILE_BYTES = 2048


class GuestRequests:
    def __init__(self, calls: InstanceCalls):
        self.calls = calls

    def set_admin_password(self, ctxt: RequestContext, instance_uuid: Any,
                           password: Any) -> dict[str, Any]:
        if not isinstance(password, str) or not password or len(password) > MAX_PASSWORD:
            raise exceptions.InvalidInput("password",
                                          f"must be a string of 1 to {MAX_PASSWORD} characters")
        with self.calls.run(ctxt, instance_uuid, "set_admin_password",
                            (password,)) as (inst, op):
            self.calls.r.driver.set_admin_password(op, inst, password)
            return {"instance_uuid": inst["uuid"], "password_set": True}

    def inject_file(self, ctxt: RequestContext, instance_uuid: Any, path: Any,
                    contents: Any) -> dict[str, Any]:
        if not isinstance(path, str) or not path.startswith("/") or len(path) > MAX_PATH \
                or "\0" in path:
            raise exceptions.InvalidInput("path", "must be an absolute path")
        if not isinstance(contents, str):
            raise exceptions.InvalidInput("contents", "must be a string")
        data = contents.encode()
        if len(data) > MAX_FILE_BYTES:
            raise exceptions.InvalidInput("contents", f"must be at most {MAX_FILE_BYTES} bytes")
        with self.calls.run(ctxt, instance_uuid, "inject_file") as (inst, op):
            self.calls.r.driver.inject_file(op, inst, path, data)
            return {"instance_uuid": inst["uuid"], "path": path, "injected": True}

    def reset_network(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        with self.calls.run(ctxt, instance_uuid, "reset_network") as (inst, op):
            self.calls.r.driver.reset_network(op, inst)
            return {"instance_uuid": inst["uuid"], "network_reset": True}
