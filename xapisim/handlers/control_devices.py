"""Control API endpoints for what lives outside dom0's object model: iSCSI
storage targets, the guest agents' behaviour and each host's xenstore
(which the simulated dom0's ``xenstore-*`` tools reach through here).

POST /_sim/storage/target         {"iqn", "portal": "addr[:port]", "luns": {"0": bytes, ...},
                                   "chap_user", "chap_secret"}   define or replace a target
POST /_sim/storage/target/remove  {"iqn"}
POST /_sim/guest_agent            {"vm": ref|uuid|name (omit: every VM), "mode":
                                   "present"|"absent"|"slow"|"failing", "delay": s,
                                   "error": [returncode, message]}
POST /_sim/guest_agent/inspect    {"vm"} -> the guest's password, files, network, commands
POST /_sim/xenstore               {"host": uuid, "op": "read"|"write"|"rm"|"ls"|"exists",
                                   "path", "value"} -> {"value"} | {"entries"} | {"exists"}
                                   (a xenstore error: 404 {"error": "ENOENT"})
"""

from __future__ import annotations

from typing import Any

from xapisim.handlers.control import ACTIONS, BadRequest, _find, _number
from xapisim.xenstore import XenstoreError


def _text(doc: dict[str, Any], key: str, required: bool = True) -> str:
    value = doc.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise BadRequest(400, f"{key} must be a non-empty string")
    return value


def storage_target(sim, doc) -> dict:
    luns = doc.get("luns", {"0": 1024 ** 3})
    if not isinstance(luns, dict) or not luns:
        raise BadRequest(400, "luns must map LUN ids to sizes in bytes")
    parsed: dict[int, int] = {}
    for key, size in luns.items():
        if not str(key).isdigit() or isinstance(size, bool) or not isinstance(size, int) \
                or size <= 0:
            raise BadRequest(400, "luns must map LUN ids to positive sizes in bytes")
        parsed[int(key)] = size
    target = sim.storage_targets.define(
        _text(doc, "iqn"), _text(doc, "portal"), parsed,
        _text(doc, "chap_user", required=False), _text(doc, "chap_secret", required=False))
    return {"target": target.public()}


def storage_target_remove(sim, doc) -> dict:
    return {"removed": sim.storage_targets.remove(_text(doc, "iqn"))}


def storage_targets(sim, doc) -> dict:
    return {"targets": [t.public() for t in sim.storage_targets.all()]}


def guest_agent(sim, doc) -> dict:
    vm_uuid = ""
    if doc.get("vm"):
        vm = _find(sim, "VM", doc["vm"], "name_label")
        vm_uuid = sim.store.field("VM", vm, "uuid")
    error = doc.get("error")
    if error is not None and (not isinstance(error, list) or len(error) != 2
                              or not all(isinstance(e, str) for e in error)):
        raise BadRequest(400, "error must be [returncode, message]")
    try:
        sim.guest_agents.configure(vm_uuid, _text(doc, "mode"), _number(doc, "delay", 0.0),
                                   tuple(error) if error else None)
    except ValueError as e:
        raise BadRequest(400, str(e)) from None
    return {"vm": vm_uuid or "*", "mode": doc["mode"]}


def guest_agent_inspect(sim, doc) -> dict:
    vm = _find(sim, "VM", doc.get("vm"), "name_label")
    return sim.guest_agents.inspect(sim.store.field("VM", vm, "uuid"))


def xenstore(sim, doc) -> dict:
    host = _find(sim, "host", doc.get("host"), "address", "name_label")
    xs = sim.xenstores.of(host)
    op = _text(doc, "op")
    path = _text(doc, "path")
    try:
        if op == "read":
            return {"value": xs.read(path)}
        if op == "write":
            xs.write(path, _text(doc, "value", required=False))
            return {}
        if op == "rm":
            xs.rm(path)
            return {}
        if op == "ls":
            return {"entries": xs.ls(path)}
        if op == "exists":
            return {"exists": xs.exists(path)}
    except XenstoreError as e:
        raise BadRequest(404, e.errno_name) from None
    raise BadRequest(400, "op must be read, write, rm, ls or exists")


ACTIONS.update({
    "storage/target": storage_target, "storage/target/remove": storage_target_remove,
    "storage/targets": storage_targets,
    "guest_agent": guest_agent, "guest_agent/inspect": guest_agent_inspect,
    "xenstore": xenstore,
})
