"""PUT /import_metadata: the receiving side of a cross-pool migration's
metadata transfer (xapi's Importexport.remote_metadata_export_import).

Query: ``session_id``, ``task_id`` (the outcome: the new VM's ref), and
``dry_run=true`` to check only (as xapi's assert_can_migrate does).
Body: the VM's record with its VBDs and VIFs, already mapped by the sender
to this pool's VDIs and networks, plus where it must run (``host``) and
whether it arrives running (``live``).

Deviation: xapi sends its XML export format inside a tar stream; the
simulator sends the same records as one JSON document. The VM keeps its
uuid (xapi imports with restore=true), so a VM of that uuid already here
is DUPLICATE_VM.
"""

from __future__ import annotations

import json
from typing import Any

from xapisim import domains, placement
from xapisim.errors import XenAPIError
from xapisim.handlers import route
from xapisim.handlers.http_task import HttpTask, fault_gate
from xapisim.schema import NULL_REF

MAX_METADATA = 16 * 1024 * 1024


@route("PUT", "/import_metadata")
def import_metadata(req) -> None:
    if not fault_gate(req):
        return
    call = HttpTask.open(req, "VM metadata import", "VM.import")
    if call is None:
        return
    try:
        try:
            length = req.content_length or 0
            if length <= 0 or length > MAX_METADATA:
                raise ValueError("metadata length")
            doc = json.loads(req.rfile.read(length))
            dry_run = req.query.get("dry_run", "false") == "true"
        except ValueError as e:
            call.fail(XenAPIError("IMPORT_ERROR", f"bad metadata: {e}"))
            req.send_error(400, "bad metadata")
            return
        req.send_headers(200, {"Connection": "close", "task-id": call.task_ref})
        req.close_connection()
        try:
            call.succeed(_import(req.sim, call, doc, dry_run))
        except XenAPIError as e:
            call.fail(e)
        except (KeyError, TypeError, AttributeError) as e:
            call.fail(XenAPIError("IMPORT_ERROR", f"bad metadata: {e.__class__.__name__}"))
    finally:
        call.close()


def _check(sim, doc: dict[str, Any]) -> str:
    store = sim.store
    host = doc["host"]
    with store.lock:
        store.raw("host", host)
        if not placement.host_live(sim, host):
            raise XenAPIError("HOST_OFFLINE", host)
        if not store.raw("host", host)["enabled"]:
            raise XenAPIError("HOST_DISABLED", host)
        uuid = doc["VM"].get("uuid", "")
        if uuid and uuid in store.by_uuid:
            raise XenAPIError("DUPLICATE_VM", store.by_uuid[uuid])
        for vbd in doc["VBDs"]:
            if vbd["VDI"] != NULL_REF:
                store.raw("VDI", vbd["VDI"])
        for vif in doc["VIFs"]:
            store.raw("network", vif["network"])
    return host


def _import(sim, call: HttpTask, doc: dict[str, Any], dry_run: bool) -> str:
    host = _check(sim, doc)
    if dry_run:
        return ""
    session = call.session_ref
    master = sim.master_ref

    def api(method: str, *args: Any) -> Any:
        return sim.dispatcher.call(master, method, [session, *args])

    record = {k: v for k, v in doc["VM"].items() if k != "uuid"}
    vm = api("VM.create", record)
    try:
        with sim.store.lock:
            sim.store.update("VM", vm, uuid=doc["VM"]["uuid"])
        for vbd in doc["VBDs"]:
            api("VBD.create", dict(vbd, VM=vm))
        for vif in doc["VIFs"]:
            api("VIF.create", dict(vif, VM=vm))
        if doc.get("live"):
            with sim.store.lock:
                placement.assert_can_boot_here(sim, vm, host)
                domains.boot(sim, vm, host)
        else:
            with sim.store.lock:
                sim.store.update("VM", vm, affinity=host)
    except Exception:
        from xapisim.api.vm import destroy_vm_records

        destroy_vm_records(sim, vm)
        raise
    sim.log.info("import_metadata: VM %s arrived (%s)", doc["VM"]["uuid"],
                 "running" if doc.get("live") else "halted")
    return vm
