"""xcp-rrdd's HTTP endpoints: GET /rrd_updates (rrdtool ``xport`` deltas),
/vm_rrd?uuid= and /host_rrd (whole RRDs, rrdtool ``dump`` layout).

XML by default; JSON when the query has a ``json`` key (any value, as
rrdd checks only its presence) or when the Accept header prefers
``application/json`` over ``text/xml`` (``*/*`` does: JSON). As rrdd's
JSON, every number is written as a string.

/rrd_updates on a host covers the VMs running there (control domain
included) and, with ``host=true``, the host; ``vm_uuid=`` (repeatable)
narrows the VMs; ``cf=AVERAGE|MIN|MAX``, ``interval=`` seconds and
``start=`` (seconds since the epoch, negative: relative to now) pick the
archive and rows exactly as rrdd does (newest row first). The values come
from xapisim.rrd_series. Simplification: no SR data sources; an empty
selection gives an empty document instead of rrdd's error.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from xml.sax.saxutils import escape

from xapisim import rrd_series
from xapisim.errors import XenAPIError
from xapisim.handlers import route
from xapisim.handlers.http_task import fault_gate, has_param

XML_TYPE = "text/xml"
JSON_TYPE = "application/json"
HEADERS = {"Access-Control-Allow-Origin": "*"}


def f_to_s(v: float) -> str:
    """rrdd's number format: %0.15g, with NaN/Infinity spelt out."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    if v == 0:
        return "0.0"
    return format(v, ".15g")


def wants_json(req) -> bool:
    """rrdd's rule: the Accept header decides if it names one of the two
    types (JSON first among equals), else the presence of ``json``."""
    accept = req.headers.get("Accept")
    if accept:
        best: tuple[float, int] | None = None
        choice = None
        for item in accept.split(","):
            parts = [p.strip() for p in item.split(";")]
            mime, q = parts[0].lower(), 1.0
            for p in parts[1:]:
                if p.startswith("q="):
                    try:
                        q = float(p[2:])
                    except ValueError:
                        q = 0.0
            for rank, candidate in enumerate((JSON_TYPE, XML_TYPE)):
                if q > 0 and _matches(mime, candidate):
                    score = (q, -rank)
                    if best is None or score > best:
                        best, choice = score, candidate
        if choice is not None:
            return choice == JSON_TYPE
    return has_param(req, "json")


def _matches(pattern: str, mime: str) -> bool:
    if pattern in ("*/*", mime):
        return True
    return pattern.endswith("/*") and mime.startswith(pattern[:-1])


def _authorised(req) -> bool:
    if not fault_gate(req):
        return False
    own = "session_id" not in req.query
    session = req.session()
    if session is None:
        return False
    if own:  # a basic-auth session lives for this request only
        req.sim.sessions.destroy(session)
    return True


def _send(req, body: str, as_json: bool) -> None:
    req.send(200, body.encode(), JSON_TYPE if as_json else XML_TYPE, HEADERS)


# -- /rrd_updates -------------------------------------------------------------------


def _pick_archive(last_updated: int, start: int, pdp_interval: int) -> tuple[int, int]:
    """rrdd's choice: the finest archive that is coarse enough for the
    interval and still holds ``start``; else the coarsest."""
    for pdp_cnt, rows in rrd_series.ARCHIVES:
        oldest = last_updated - rrd_series.STEP * rows * pdp_cnt
        if pdp_cnt >= pdp_interval and start > oldest:
            return pdp_cnt, rows
    return rrd_series.ARCHIVES[-1]


def updates(rrds: list[rrd_series.Rrd], start: int, interval: int, cf: str | None,
            last_updated: int) -> dict:
    if start < 0:
        start += last_updated
    pdp_cnt, rows = _pick_archive(last_updated, start, interval // rrd_series.STEP)
    step = pdp_cnt * rrd_series.STEP
    last_cdp = last_updated // step * step
    first_cdp = start // step * step + step
    cfs = [cf] if cf else list(rrd_series.CFS)
    legend = [f"{c}:{r.prefix}{s.name}" for r in rrds for c in cfs for s in r.sources]
    data = []
    i = 0
    while rrds and i < rows:
        t = last_cdp - i * step
        if t < start:
            break
        values: list[float] = []
        for r in rrds:
            row = r.row(pdp_cnt, t)
            for c in cfs:
                values += row[c]
        data.append((t, values))
        i += 1
    return {"start": first_cdp, "step": step, "end": last_cdp, "legend": legend, "data": data}


def xport_xml(u: dict) -> str:
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<xport><meta>',
           f"<start>{u['start']}</start><step>{u['step']}</step><end>{u['end']}</end>",
           f"<rows>{len(u['data'])}</rows><columns>{len(u['legend'])}</columns><legend>"]
    out += [f"<entry>{escape(e)}</entry>" for e in u["legend"]]
    out.append("</legend></meta><data>")
    for t, values in u["data"]:
        out.append(f"<row><t>{t}</t>" + "".join(f"<v>{f_to_s(v)}</v>" for v in values) +
                   "</row>")
    out.append("</data></xport>")
    return "".join(out)


def xport_json(u: dict) -> str:
    doc = {
        "meta": {
            "start": str(u["start"]), "step": str(u["step"]), "end": str(u["end"]),
            "rows": str(len(u["data"])), "columns": str(len(u["legend"])),
            "legend": u["legend"],
        },
        "data": [{"t": str(t), "values": [f_to_s(v) for v in values]}
                 for t, values in u["data"]],
    }
    return json.dumps(doc, separators=(",", ":"))


@route("GET", "/rrd_updates")
def rrd_updates(req) -> None:
    if not _authorised(req):
        return
    sim = req.sim
    try:
        start = int(req.query["start"])
        interval = int(req.query.get("interval", "0") or 0)
    except (KeyError, ValueError):
        req.send_error(400, "start (and interval) must be integers")
        return
    cf = req.query.get("cf")
    if cf is not None and cf not in rrd_series.CFS:
        req.send_error(500, f"No RRA available for consolidation function {cf}")
        return
    now = rrd_series.last_update_time()
    rrds = []
    if req.query.get("host") == "true":
        rrds.append(rrd_series.host_rrd(sim, req.host_ref, now))
    wanted = set(req.query_all.get("vm_uuid", []))
    for vm in rrd_series.resident_vms(sim, req.host_ref):
        try:
            r = rrd_series.vm_rrd(sim, vm, now)
        except XenAPIError:  # went away meanwhile
            continue
        if not wanted or r.prefix[3:-1] in wanted:
            rrds.append(r)
    u = updates(rrds, start, interval, cf, now)
    as_json = wants_json(req)
    _send(req, xport_json(u) if as_json else xport_xml(u), as_json)


# -- /vm_rrd, /host_rrd -----------------------------------------------------------------


def dump(r: rrd_series.Rrd) -> dict:
    """The whole RRD: data sources, then per archive (time scale major,
    AVERAGE/MIN/MAX minor) its rows, oldest first."""
    current = r.current()
    rras = []
    for pdp_cnt, rows in rrd_series.ARCHIVES:
        step = pdp_cnt * rrd_series.STEP
        last = r.last_updated // step * step
        times = [last - (rows - 1 - i) * step for i in range(rows)]
        table = [r.row(pdp_cnt, t) for t in times]
        for cf in rrd_series.CFS:
            rras.append({"cf": cf, "pdp_per_row": pdp_cnt,
                         "database": [row[cf] for row in table]})
    return {"step": rrd_series.STEP, "lastupdate": r.last_updated, "current": current,
            "sources": r.sources, "rras": rras}


def dump_xml(d: dict) -> str:
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<rrd><version>0003</version>',
           f"<step>{d['step']}</step><lastupdate>{d['lastupdate']}</lastupdate>"]
    for src, value in zip(d["sources"], d["current"], strict=True):
        out.append(
            f"<ds><name>{escape(src.name)}</name><type>{src.kind}</type>"
            f"<minimal_heartbeat>300.0</minimal_heartbeat><min>0.0</min>"
            f"<max>{f_to_s(src.ds_max)}</max><last_ds>{f_to_s(value)}</last_ds>"
            f"<value>{f_to_s(value)}</value><unknown_sec>0</unknown_sec></ds>"
        )
    cdp = ("<ds><primary_value>0.0</primary_value><secondary_value>0.0</secondary_value>"
           "<value>0.0</value><unknown_datapoints>0</unknown_datapoints></ds>")
    for rra in d["rras"]:
        out.append(f"<rra><cf>{rra['cf']}</cf><pdp_per_row>{rra['pdp_per_row']}</pdp_per_row>"
                   "<params><xff>0.5</xff></params><cdp_prep>")
        out.append(cdp * len(d["sources"]))
        out.append("</cdp_prep><database>")
        for row in rra["database"]:
            out.append("<row>" + "".join(f"<v>{f_to_s(v)}</v>" for v in row) + "</row>")
        out.append("</database></rra>")
    out.append("</rrd>")
    return "".join(out)


def dump_json(d: dict) -> str:
    cdp = {"primary_value": "0.0", "secondary_value": "0.0", "value": "0.0",
           "unknown_datapoints": "0"}
    doc = {
        "version": "0003",
        "step": str(d["step"]),
        "lastupdate": f_to_s(float(d["lastupdate"])),
        "ds": [
            {"name": s.name, "type": s.kind, "minimal_heartbeat": "300.0", "min": "0.0",
             "max": f_to_s(s.ds_max), "last_ds": f_to_s(v), "value": f_to_s(v),
             "unknown_sec": "0.0", "last_updated": f_to_s(float(d["lastupdate"]))}
            for s, v in zip(d["sources"], d["current"], strict=True)
        ],
        "rra": [
            {"cf": rra["cf"], "pdp_per_row": str(rra["pdp_per_row"]),
             "params": {"xff": "0.5"}, "cdp_prep": {"ds": [cdp] * len(d["sources"])},
             "database": [[f_to_s(v) for v in row] for row in rra["database"]]}
            for rra in d["rras"]
        ],
    }
    return json.dumps(doc, separators=(",", ":"))


def _send_dump(req, r: rrd_series.Rrd) -> None:
    d = dump(r)
    as_json = wants_json(req)
    _send(req, dump_json(d) if as_json else dump_xml(d), as_json)


@route("GET", "/host_rrd")
def host_rrd(req) -> None:
    if not _authorised(req):
        return
    _send_dump(req, rrd_series.host_rrd(req.sim, req.host_ref))


@route("GET", "/vm_rrd")
def vm_rrd(req) -> None:
    if not _authorised(req):
        return
    sim = req.sim
    store = sim.store
    uuid = req.query.get("uuid", "")
    with store.lock:
        try:
            vm = store.ref_of_uuid("VM", uuid)
        except XenAPIError:
            vm = None
        rec = store.raw("VM", vm) if vm else None
        if rec is None or rec["is_a_template"] or rec["is_a_snapshot"]:
            req.send_error(404, f"no RRD for VM {uuid}")
            return
        running_on = rec["resident_on"] if rec["power_state"] in ("Running", "Paused") else None
    if running_on and running_on != req.host_ref and store.has("host", running_on):
        # the rrdd of the host running the VM has its RRD
        query = urllib.parse.urlencode(req.query_all, doseq=True)
        target = f"{sim.scheme}://{sim.host_address(running_on)}:{sim.port}/vm_rrd?{query}"
        req.send(302, b"", headers={"Location": target})
        return
    _send_dump(req, rrd_series.vm_rrd(sim, vm))
