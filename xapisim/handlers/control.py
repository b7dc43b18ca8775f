"""The simulator's own control API under ``/_sim/``, for tests: JSON in,
JSON out, no authentication, served by every host's listener (a failed
host still answers here). Kept apart from xapi's paths on purpose.

GET  /_sim/state                  summary of hosts, VMs, sessions, tasks, faults
GET  /_sim/http_requests          HTTP requests served per host address, method and path
                                  (xapisim.http_counts); POST /_sim/clear resets them
POST /_sim/latency      {"method": "VM.start" | "*", "seconds": 0.2}
POST /_sim/duration     {"method": "VM.start" | "*", "seconds": 1.0}
POST /_sim/time_scale   {"scale": 0.1}
POST /_sim/fail         {"method": "VM.start", "error": ["CODE", "param"...], "count": 1}
POST /_sim/drop         {"method": "VM.start" | "*", "count": 1}
POST /_sim/hang         {"method": "VM.start" | "*", "count": 1, "seconds": 5}
POST /_sim/clear        {}
POST /_sim/vm/crash     {"vm": ref | uuid | name_label}
POST /_sim/vm/shutdown  {"vm": ...}      the guest powers itself off
POST /_sim/vm/reboot    {"vm": ...}      the guest reboots itself
POST /_sim/restart_xapi {}
POST /_sim/host/fail    {"host": ref | uuid | address | name_label}
POST /_sim/host/recover {"host": ...}
POST /_sim/save         {}               write the object database now (--persist)
POST /_sim/gc           {}               a task garbage collection pass now

Answers: 200 ``{"ok": true, ...}``; 400 ``{"error": "..."}`` for bad input;
404 for an unknown endpoint or object; 409 ``{"error": [CODE, params...]}``
when the simulated event is impossible (e.g. VM_BAD_POWER_STATE).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from xapisim import plugins
from xapisim.errors import XenAPIError
from xapisim.handlers import route

MAX_BODY = 1024 * 1024
JSON = "application/json"
# key of an action's result: hosts whose open connections drop after the reply
_DROP = "_drop"


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _reply(req, status: int, doc: dict[str, Any]) -> None:
    req.send(status, json.dumps(doc, sort_keys=True).encode(), JSON)


def _body(req) -> dict[str, Any]:
    if req.method == "GET":
        return dict(req.query)
    n = req.content_length or 0
    if n > MAX_BODY:
        raise BadRequest(413, "body too large")
    raw = req.rfile.read(n) if n else b""
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise BadRequest(400, f"body is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise BadRequest(400, "body must be a JSON object")
    return doc


def _number(doc: dict[str, Any], key: str, default: float | None = None) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise BadRequest(400, f"{key} must be a non-negative number")
    return float(value)


def _count(doc: dict[str, Any]) -> int:
    value = doc.get("count", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(400, "count must be a positive integer")
    return value


def _method(doc: dict[str, Any]) -> str:
    value = doc.get("method", "*")
    if not isinstance(value, str) or not value:
        raise BadRequest(400, "method must be a message name (e.g. VM.start) or *")
    return value


def _find(sim, cls: str, value: Any, *fields: str) -> str:
    """An object named by ref, uuid or one of ``fields`` (unique)."""
    if not isinstance(value, str) or not value:
        raise BadRequest(400, f"{cls} must be named by ref, uuid or {', '.join(fields)}")
    store = sim.store
    with store.lock:
        if store.has(cls, value):
            return value
        ref = store.by_uuid.get(value)
        if ref is not None and store.has(cls, ref):
            return ref
        for f in fields:
            hits = store.find(cls, **{f: value})
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise BadRequest(400, f"{len(hits)} {cls} objects have {f} {value!r}")
    raise BadRequest(404, f"no {cls} {value!r}")


# -- faults and time -----------------------------------------------------------------


def latency(sim, doc) -> dict:
    sim.faults.set_latency(_method(doc), _number(doc, "seconds"))
    return {}


def duration(sim, doc) -> dict:
    sim.faults.set_duration(_method(doc), _number(doc, "seconds"))
    return {}


def time_scale(sim, doc) -> dict:
    scale = _number(doc, "scale")
    with sim.faults.lock:
        sim.faults.time_scale = scale
    return {}


def fail(sim, doc) -> dict:
    error = doc.get("error")
    if not isinstance(error, list) or not error or not all(isinstance(e, str) for e in error):
        raise BadRequest(400, 'error must be a list of strings: ["CODE", "param", ...]')
    sim.faults.add_rule(_method(doc), "fail", _count(doc), error)
    return {}


def drop(sim, doc) -> dict:
    sim.faults.add_rule(_method(doc), "drop", _count(doc))
    return {}


def hang(sim, doc) -> dict:
    sim.faults.add_rule(_method(doc), "hang", _count(doc), seconds=_number(doc, "seconds", 30))
    return {}


def clear(sim, doc) -> dict:
    sim.faults.clear()
    sim.http_counts.clear()
    return {}


# -- guests, hosts, xapi -----------------------------------------------------------------


def _guest(event: str) -> Callable[[Any, dict], dict]:
    def run(sim, doc) -> dict:
        from xapisim import guest

        vm = _find(sim, "VM", doc.get("vm"), "name_label")
        power_state = getattr(guest, event)(sim, vm)
        return {"vm": vm, "power_state": power_state}

    run.__name__ = event
    return run


def host_fail(sim, doc) -> dict:
    from xapisim import guest

    host = _find(sim, "host", doc.get("host"), "address", "name_label")
    down = guest.host_failed(sim, host)
    sim.failed_hosts.add(host)
    # long polls and transfers die with the host
    return {"host": host, "vms_down": down, _DROP: {host}}


def host_recover(sim, doc) -> dict:
    from xapisim import guest

    host = _find(sim, "host", doc.get("host"), "address", "name_label")
    sim.failed_hosts.discard(host)
    guest.host_recovered(sim, host)
    return {"host": host}


def restart_xapi(sim, doc) -> dict:
    sim.restart_xapi()  # keeps this request's own connection for the answer
    return {}


def save(sim, doc) -> dict:
    sim.save()
    return {"file": str(sim.db_file)}


def task_gc(sim, doc) -> dict:
    return {"destroyed": sim.tasks.gc()}


def state(sim, doc) -> dict:
    store = sim.store
    with store.lock:
        master = sim.master_ref
        hosts = []
        for ref, rec in store.tables["host"].items():
            metrics = store.tables["host_metrics"].get(rec["metrics"], {})
            hosts.append({
                "ref": ref, "uuid": rec["uuid"], "name_label": rec["name_label"],
                "address": rec["address"], "url": f"{sim.scheme}://{rec['address']}:{sim.port}",
                "master": ref == master, "failed": ref in sim.failed_hosts,
                "live": metrics.get("live", False),
                "resident_VMs": len(rec["resident_VMs"]),
                "dom0_root": str(plugins.dom0_root(sim, ref, create=False)),
                "xapi_socket": str(plugins.dom0_root(sim, ref, create=False)
                                   / plugins.LOCAL_SOCKET),
            })
        vms = Counter(
            rec["power_state"] for rec in store.tables["VM"].values()
            if not rec["is_a_template"] and not rec["is_control_domain"]
            and not rec["is_a_snapshot"]
        )
        tasks = Counter(rec["status"] for rec in store.tables["task"].values())
        sessions = len(store.tables["session"])
    f = sim.faults
    with f.lock:
        faults = {
            "default_duration": f.default_duration, "durations": dict(f.durations),
            "latencies": dict(f.latencies), "time_scale": f.time_scale,
            "rules": {m: [{"kind": r.kind, "count": r.count, "error": r.error,
                           "seconds": r.seconds} for r in rules]
                      for m, rules in f.rules.items() if rules},
        }
    return {
        "url": sim.url, "urls": sim.urls, "master": master, "hosts": hosts,
        "vms": dict(vms), "tasks": dict(tasks), "sessions": sessions, "faults": faults,
        "state_dir": str(sim.state_dir), "plugins_dir": str(sim.plugins_dir),
        "tls": sim.tls, "ca_file": sim.ca_file, "epoch": store.epoch,
    }


ACTIONS: dict[str, Callable[[Any, dict], dict]] = {
    "latency": latency, "duration": duration, "time_scale": time_scale, "fail": fail,
    "drop": drop, "hang": hang, "clear": clear,
    "vm/crash": _guest("crash"), "vm/shutdown": _guest("guest_shutdown"),
    "vm/reboot": _guest("guest_reboot"),
    "restart_xapi": restart_xapi, "host/fail": host_fail, "host/recover": host_recover,
    "save": save, "gc": task_gc,
}


@route("GET", "/_sim/", prefix=True)
def control_get(req) -> None:
    name = req.path[len("/_sim/"):].strip("/")
    if name == "state":
        _reply(req, 200, {"ok": True, **state(req.sim, {})})
    elif name == "http_requests":
        _reply(req, 200, {"ok": True, "requests": req.sim.http_counts.snapshot()})
    elif name == "":
        _reply(req, 200, {"ok": True, "get": ["http_requests", "state"],
                          "post": sorted(ACTIONS)})
    else:
        _reply(req, 404, {"error": f"no GET endpoint /_sim/{name}"})


@route("POST", "/_sim/", prefix=True)
def control_post(req) -> None:
    sim = req.sim
    name = req.path[len("/_sim/"):].strip("/")
    action = ACTIONS.get(name)
    try:
        doc = _body(req)
        if action is None:
            raise BadRequest(404, f"no POST endpoint /_sim/{name}")
        sim.log.info("control: %s %s", name, {k: v for k, v in doc.items() if k != "error"})
        result = action(sim, doc)
    except BadRequest as e:
        _reply(req, e.status, {"error": str(e)})
        return
    except XenAPIError as e:
        _reply(req, 409, {"error": e.description})
        return
    doomed = result.pop(_DROP, set())
    _reply(req, 200, {"ok": True, **result})
    # connections that die with the event go only once our own answer is out
    for srv in sim.servers:
        if srv.host_ref in doomed:
            srv.drop_all_connections()
