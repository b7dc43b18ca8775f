"""The guest agent's commands as RPC requests (1.4): set the admin
password, inject a file, reset the network. The driver speaks to the
agent; this checks the arguments and runs them as instance calls
(instance_calls.py). The password and the file's contents are arguments
only: they are in no record, log line or notification.
"""

from __future__ import annotations

from typing import Any

from compute_agent.compute.instance_calls import InstanceCalls
from compute_agent.compute.validation_devices import (
    validate_contents,
    validate_password,
    validate_path,
)
from compute_agent.context import RequestContext


class GuestRequests:
    def __init__(self, calls: InstanceCalls):
        self.calls = calls

    def set_admin_password(self, ctxt: RequestContext, instance_uuid: Any,
                           password: Any) -> dict[str, Any]:
        password = validate_password(password)
        with self.calls.run(ctxt, instance_uuid, "set_admin_password",
                            (password,)) as (inst, op):
            self.calls.r.driver.set_admin_password(op, inst, password)
            return {"instance_uuid": inst["uuid"], "password_set": True}

    def inject_file(self, ctxt: RequestContext, instance_uuid: Any, path: Any,
                    contents: Any) -> dict[str, Any]:
        path = validate_path(path)
        data = validate_contents(contents)
        with self.calls.run(ctxt, instance_uuid, "inject_file") as (inst, op):
            self.calls.r.driver.inject_file(op, inst, path, data)
            return {"instance_uuid": inst["uuid"], "path": path, "injected": True}

    def reset_network(self, ctxt: RequestContext, instance_uuid: Any) -> dict[str, Any]:
        with self.calls.run(ctxt, instance_uuid, "reset_network") as (inst, op):
            self.calls.r.driver.reset_network(op, inst)
            return {"instance_uuid": inst["uuid"], "network_reset": True}
