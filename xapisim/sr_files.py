"""File-based SRs' mount directories in the simulated dom0, and what
``SR.scan`` finds there.

An EXT (or NFS, or file) SR is mounted at ``/var/run/sr-mount/<sr-uuid>``
in dom0 and keeps each VDI as ``<vdi-uuid>.vhd``; SR.scan introduces a VHD
file it does not know yet as a VDI of that uuid (what the SM's scan does).
In the simulator that directory is under the dom0 root of the host whose
PBD is attached (plugins.dom0_root), so a dom0 plugin that writes a VHD
there and calls SR.scan runs unchanged on a real host and here.

Deviation: the simulator keeps VDI contents as sparse raw files in its own
store (vdi_data), so a scanned VHD is extracted into that store and its
file removed; only VDIs that arrive as files live in the mount directory,
and only until the scan that introduces them.
"""

from __future__ import annotations

import logging
import os
import pathlib
import re
from typing import TYPE_CHECKING

from xapisim import plugins, vdi_data, vhd
from xapisim.vdi_records import new_vdi

if TYPE_CHECKING:
    from xapisim.services import SimServices

LOG = logging.getLogger("xapisim")

FILE_SR_TYPES = frozenset({"ext", "nfs", "file"})
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _serving_host(sim: SimServices, sr: str) -> str | None:
    store = sim.store
    with store.lock:
        for pbd in store.raw("SR", sr)["PBDs"]:
            rec = store.raw("PBD", pbd)
            if rec["currently_attached"]:
                return rec["host"]
    return None


def mount_dir(sim: SimServices, sr: str) -> pathlib.Path | None:
    """``<dom0 root>/var/run/sr-mount/<sr-uuid>`` of a file-based SR
    attached somewhere (created if missing); None for other SRs."""
    store = sim.store
    with store.lock:
        rec = store.raw("SR", sr)
        kind, uuid = rec["type"], rec["uuid"]
    host = _serving_host(sim, sr)
    if kind not in FILE_SR_TYPES or host is None:
        return None
    path = plugins.dom0_root(sim, host) / "var" / "run" / "sr-mount" / uuid
    path.mkdir(parents=True, exist_ok=True)
    return path


def ensure_mounts(sim: SimServices, host: str) -> None:
    """The mount directories of the file-based SRs attached on ``host``,
    as a real dom0 has them while the PBDs are plugged (a plugin about to
    run may write there)."""
    store = sim.store
    with store.lock:
        srs = [store.raw("PBD", p)["SR"] for p in store.tables["PBD"]
               if store.raw("PBD", p)["host"] == host
               and store.raw("PBD", p)["currently_attached"]]
    for sr in srs:
        mount_dir(sim, sr)


def scan(sim: SimServices, sr: str) -> list[str]:
    """Introduce the ``<uuid>.vhd`` files of the SR's mount directory that
    are not VDIs yet; returns the new VDI refs. A file that is not a valid
    VHD is left alone (logged), as the SM skips it."""
    directory = mount_dir(sim, sr)
    if directory is None:
        return []
    made = []
    for path in sorted(directory.glob("*.vhd")):
        uuid = path.stem
        if not _UUID.match(uuid):
            continue
        with sim.store.lock:
            if uuid in sim.store.by_uuid:
                continue
        try:
            made.append(_introduce(sim, sr, path, uuid))
        except (vhd.VHDError, OSError) as e:
            LOG.warning("SR.scan: skipping %s: %s", path.name, e)
    return made


def _introduce(sim: SimServices, sr: str, path: pathlib.Path, uuid: str) -> str:
    tmp = vdi_data.temp_path(sim, uuid)
    try:
        with open(path, "rb") as f:
            footer = vhd.probe(f)
            with open(tmp, "w+b") as out:
                out.truncate(footer.current_size)
                vhd.extract(f, out, footer)
        store = sim.store
        with store.lock:
            vdi = new_vdi(sim, sr, footer.current_size, name_label=uuid)
            store.update("VDI", vdi, uuid=uuid, location=uuid)
            os.replace(tmp, vdi_data.path(sim, uuid))
            store.update("VDI", vdi, physical_utilisation=vdi_data.allocated_bytes(sim, uuid))
        path.unlink()
        return vdi
    finally:
        tmp.unlink(missing_ok=True)
