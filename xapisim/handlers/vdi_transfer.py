"""PUT /import_raw_vdi and GET /export_raw_vdi, as xapi serves them.

Query: ``session_id`` (or basic auth), ``vdi`` (ref or uuid), ``format``
(``raw`` default, or ``vhd``), ``task_id`` (optional). Import without
``vdi`` but with ``sr_id``/``sr_uuid`` and a raw body creates the VDI
("Imported VDI", virtual_size = Content-Length), as xapi does.

As in xapi, once the request is accepted the 200 status line and a
``task-id`` header go out *before* the data moves, the connection closes
at the end, and the outcome is on the task (result: the VDI ref for an
import). Errors found before that (credentials, parameters, an upload
larger than the VDI) answer 4xx and fail the caller's task.

Imports land in a temporary file renamed over the VDI's file only when
the whole body arrived and checked out, so a truncated or refused upload
leaves the VDI as it was. Deviation: real xapi refuses HTTP chunked
Transfer-Encoding on import; the simulator accepts it (raw and vhd).
"""

from __future__ import annotations

import contextlib
import os
import urllib.parse
from collections.abc import Iterator
from typing import BinaryIO

from xapisim import vdi_data, vhd
from xapisim.errors import XenAPIError
from xapisim.handlers import route
from xapisim.handlers.http_body import CHUNK, TooLarge, Truncated, body_chunks, drain
from xapisim.handlers.http_task import IDLE_TIMEOUT, HttpTask, connection, fault_gate
from xapisim.handlers.raw_sink import RawSink
from xapisim.schema import NULL_REF

FORMATS = {"raw": "application/octet-stream", "vhd": "application/vhd"}
def _resolve(store, cls: str, value: str) -> str:
    """A ref or a uuid, as xapi accepts for ``vdi=`` and ``sr_uuid=``."""
    with store.lock:
        if store.has(cls, value):
            return value
        return store.ref_of_uuid(cls, value)


def _host_for_sr(sim, sr: str, here: str) -> str:
    """The host that should serve the data of ``sr``: this one if it has an
    attached PBD (or nobody has), else one that has."""
    store = sim.store
    with store.lock:
        hosts = [store.raw("PBD", p)["host"] for p in store.raw("SR", sr)["PBDs"]
                 if store.raw("PBD", p)["currently_attached"]]
    if not hosts or here in hosts:
        return here
    live = [h for h in hosts if h not in sim.failed_hosts]
    chosen = (live or hosts)[0]
    # a host that joined from another simulator process keeps its disks'
    # data here, with the pool's database
    return here if chosen in sim.joined_hosts else chosen


def _redirect(req, host: str) -> None:
    query = urllib.parse.urlencode(req.query_all, doseq=True)
    target = f"{req.sim.scheme}://{req.sim.host_address(host)}:{req.sim.port}{req.path}?{query}"
    req.send(302, b"", headers={"Location": target, "Connection": "close"})
    req.close_connection()


def _refuse(req, call: HttpTask, status: int, error: XenAPIError) -> None:
    call.fail(error)
    drain(req)
    req.send_error(status, " ".join(error.description))


def _start_stream(req, call: HttpTask, content_type: str, extra: dict[str, str] | None = None):
    headers = {"Connection": "close", "task-id": call.task_ref, "Content-Type": content_type}
    headers.update(extra or {})
    req.send_headers(200, headers)
    req.close_connection()


# -- import ------------------------------------------------------------------------


@route("PUT", "/import_raw_vdi")
def import_raw_vdi(req) -> None:
    if not fault_gate(req):
        return
    call = HttpTask.open(req, "Importing raw VDI", "VDI.import")
    if call is None:
        return
    try:
        _import(req, call)
    except XenAPIError as e:  # a lookup failed before the data moved
        _refuse(req, call, 400, e)
    finally:
        call.close()


def _import(req, call: HttpTask) -> None:
    sim = req.sim
    store = sim.store
    fmt = req.query.get("format", "raw").lower()
    if fmt not in FORMATS:
        _refuse(req, call, 404, XenAPIError("INTERNAL_ERROR", f"Unknown format {fmt}"))
        return
    chunked = "chunked" in req.headers.get("Transfer-Encoding", "").lower()
    if req.content_length is None and not chunked:
        call.fail(XenAPIError("INTERNAL_ERROR", "Content-Length or chunked encoding required"))
        req.send_error(411, "Content-Length required")
        return
    vdi = _import_target(req, call, fmt)
    if vdi is None:
        return
    with store.lock:
        rec = store.raw("VDI", vdi)
        uuid, size, sr = rec["uuid"], rec["virtual_size"], rec["SR"]
        read_only = rec["read_only"]
    if read_only:
        _refuse(req, call, 400, XenAPIError("VDI_READONLY", vdi))
        return
    serving = _host_for_sr(sim, sr, req.host_ref) if store.has("SR", sr) else req.host_ref
    if serving != req.host_ref:
        # as xapi: the caller's task stays pending for the redirected request
        _redirect(req, serving)
        return
    # a raw body can't exceed the disk; a vhd has 512+ bytes of metadata on top
    limit = size if fmt == "raw" else vhd.MAX_VHD_SIZE + 64 * 1024 * 1024
    if req.content_length is not None and not chunked and req.content_length > limit:
        _refuse(req, call, 400, XenAPIError("VDI_TOO_SMALL", vdi, str(req.content_length)))
        return

    connection(req).settimeout(IDLE_TIMEOUT)
    _start_stream(req, call, "application/octet-stream")
    tmp = vdi_data.temp_path(sim, uuid)
    spool = vdi_data.temp_path(sim, uuid) if fmt == "vhd" else None
    try:
        if fmt == "raw":
            _receive_raw(req, call, tmp, size, limit)
        else:
            _receive_vhd(req, call, spool, tmp, vdi, size, limit)
        call.check_cancel()
        with store.lock:
            store.raw("VDI", vdi)  # still there?
            os.replace(tmp, vdi_data.path(sim, uuid))
            store.update("VDI", vdi, physical_utilisation=vdi_data.allocated_bytes(sim, uuid))
        call.succeed(vdi)
    except Truncated as e:
        call.fail(XenAPIError("INTERNAL_ERROR", f"upload truncated: {e}"))
    except TooLarge as e:
        call.fail(XenAPIError("VDI_TOO_SMALL", vdi, str(e.size)))
    except vhd.VHDError as e:
        call.fail(XenAPIError("INTERNAL_ERROR", f"invalid VHD: {e}"))
    except XenAPIError as e:
        call.fail(e)
    finally:
        tmp.unlink(missing_ok=True)
        if spool is not None:
            spool.unlink(missing_ok=True)


def _import_target(req, call: HttpTask, fmt: str) -> str | None:
    """The VDI to write: the ``vdi`` parameter, or a new one in the SR
    named by ``sr_id``/``sr_uuid`` for a raw upload of known length."""
    sim = req.sim
    if "vdi" in req.query:
        return _resolve(sim.store, "VDI", req.query["vdi"])
    sr = req.query.get("sr_id")
    if sr is None and "sr_uuid" in req.query:
        sr = _resolve(sim.store, "SR", req.query["sr_uuid"])
    if sr is None:
        _refuse(req, call, 400, XenAPIError("INTERNAL_ERROR", "Require an SR or VDI to import"))
        return None
    if fmt != "raw" or req.content_length is None:
        _refuse(req, call, 400, XenAPIError(
            "INTERNAL_ERROR", "Importing a VHD directly into an SR not yet supported"
            if fmt != "raw" else "Not enough info supplied to import"))
        return None
    record = {
        "name_label": "Imported VDI", "name_description": "", "SR": sr,
        "virtual_size": str(req.content_length), "type": "user", "sharable": False,
        "read_only": False, "other_config": {}, "xenstore_data": {}, "sm_config": {},
        "tags": [],
    }
    return sim.dispatcher.call(req.host_ref, "VDI.create", [call.session_ref, record])


def _new_sparse(path, size: int) -> BinaryIO:
    f = open(path, "w+b")
    f.truncate(size)
    return f


def _receive_raw(req, call: HttpTask, tmp, size: int, limit: int) -> None:
    total = req.content_length or size

    def on_block(done: int) -> None:
        if done > limit:
            raise TooLarge(done)
        call.check_cancel()
        call.progress(done / max(total, 1))

    with RawSink(tmp, size) as sink:
        sink.receive(req, limit, on_block)


def _receive_vhd(req, call: HttpTask, spool, tmp, vdi: str, size: int, limit: int) -> None:
    total = req.content_length or 0
    done = 0
    with open(spool, "w+b") as f:
        for data in body_chunks(req, limit):
            f.write(data)
            done += len(data)
            call.check_cancel()
            if total:
                call.progress(0.5 * done / total)
        footer = vhd.probe(f)
        if footer.current_size > size:
            raise XenAPIError("VDI_TOO_SMALL", vdi, str(footer.current_size))
        with _new_sparse(tmp, size) as out:
            vhd.extract(f, out, footer, CHUNK, progress=lambda x: call.progress(0.5 + x / 2))


# -- export ------------------------------------------------------------------------


@route("GET", "/export_raw_vdi")
def export_raw_vdi(req) -> None:
    if not fault_gate(req):
        return
    call = HttpTask.open(req, "Exporting raw VDI", "VDI.export_raw_vdi")
    if call is None:
        return
    try:
        _export(req, call)
    except XenAPIError as e:
        call.fail(e)
        req.send_error(400 if e.code != "HANDLE_INVALID" else 404, " ".join(e.description))
    finally:
        call.close()


def _export(req, call: HttpTask) -> None:
    sim = req.sim
    store = sim.store
    fmt = req.query.get("format", "raw").lower()
    if fmt not in FORMATS:
        call.fail(XenAPIError("INTERNAL_ERROR", f"Unknown format {fmt}"))
        req.send_error(404, f"Unknown format {fmt}")
        return
    if "vdi" not in req.query:
        raise XenAPIError("INTERNAL_ERROR", "Missing vdi query parameter")
    vdi = _resolve(store, "VDI", req.query["vdi"])
    with store.lock:
        rec = store.raw("VDI", vdi)
        uuid, size, sr = rec["uuid"], rec["virtual_size"], rec["SR"]
    serving = _host_for_sr(sim, sr, req.host_ref) if sr != NULL_REF and store.has("SR", sr) \
        else req.host_ref
    if serving != req.host_ref:
        _redirect(req, serving)
        return
    connection(req).settimeout(IDLE_TIMEOUT)
    _start_stream(req, call, FORMATS[fmt],
                  {"Content-Disposition": f'attachment; filename="{uuid}.{fmt}"'})
    if fmt == "vhd" and size > vhd.MAX_VHD_SIZE:
        call.fail(XenAPIError("VDI_TOO_LARGE", vdi, str(vhd.MAX_VHD_SIZE)))
        return
    try:
        with _open_data(sim, uuid) as f:
            pieces = _raw_pieces(f, size) if fmt == "raw" else vhd.export_dynamic(f, size)
            total = size if fmt == "raw" else vhd.dynamic_size(f, size)
            sent = 0
            for piece in pieces:
                call.check_cancel()
                req.wfile.write(piece)
                sent += len(piece)
                call.progress(sent / max(total, 1))
            req.wfile.flush()
        call.succeed()
    except XenAPIError as e:
        call.fail(e)
    except OSError as e:  # broken pipe, reset, timeout: the client went away
        call.fail(XenAPIError("INTERNAL_ERROR", f"client went away: {e.__class__.__name__}"))


@contextlib.contextmanager
def _open_data(sim, uuid: str) -> Iterator[BinaryIO | None]:
    p = vdi_data.path(sim, uuid)
    try:
        f = open(p, "rb")
    except FileNotFoundError:
        yield None
        return
    with f:
        yield f


def _raw_pieces(f: BinaryIO | None, size: int) -> Iterator[bytes]:
    done = 0
    if f is not None:
        while done < size:
            data = f.read(min(CHUNK, size - done))
            if not data:
                break
            done += len(data)
            yield data
    zero = bytes(CHUNK)
    while done < size:
        n = min(CHUNK, size - done)
        done += n
        yield zero[:n]


__all__ = ["import_raw_vdi", "export_raw_vdi"]
