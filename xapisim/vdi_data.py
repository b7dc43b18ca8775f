"""Where a VDI's bytes live: one sparse raw file per VDI under
``<state_dir>/vdis/<vdi-uuid>.raw``. A VDI without a file reads as zeros;
a file shorter than the VDI's virtual_size reads as zeros past its end.

Storage handlers (clone, copy, snapshot, destroy, resize) call these so the
content follows the VDI; the HTTP import/export handlers read and write it.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import uuid as uuidlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xapisim.services import SimServices

_COPY_CHUNK = 1024 * 1024


def directory(sim: SimServices) -> pathlib.Path:
    d = pathlib.Path(sim.state_dir) / "vdis"
    d.mkdir(parents=True, exist_ok=True)
    return d


def path(sim: SimServices, vdi_uuid: str) -> pathlib.Path:
    # uuids come from the store, but never let one escape the directory
    if "/" in vdi_uuid or vdi_uuid in ("", ".", ".."):
        raise ValueError(f"bad VDI uuid {vdi_uuid!r}")
    return directory(sim) / f"{vdi_uuid}.raw"


def temp_path(sim: SimServices, vdi_uuid: str) -> pathlib.Path:
    """A fresh file name next to the VDI's, for writing before a rename."""
    return directory(sim) / f".{vdi_uuid}.{uuidlib.uuid4().hex}.part"


def exists(sim: SimServices, vdi_uuid: str) -> bool:
    return path(sim, vdi_uuid).exists()


def allocated_bytes(sim: SimServices, vdi_uuid: str) -> int:
    """Bytes the file really occupies on disk (its physical utilisation)."""
    try:
        return path(sim, vdi_uuid).stat().st_blocks * 512
    except FileNotFoundError:
        return 0


def copy(sim: SimServices, src_uuid: str, dst_uuid: str) -> None:
    """Give ``dst`` the content of ``src``, keeping holes as holes."""
    src = path(sim, src_uuid)
    dst = path(sim, dst_uuid)
    if not src.exists():
        dst.unlink(missing_ok=True)
        return
    tmp = temp_path(sim, dst_uuid)
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            size = os.fstat(fin.fileno()).st_size
            fout.truncate(size)
            _copy_data_ranges(fin, fout, size)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _copy_data_ranges(fin, fout, size: int) -> None:
    fd = fin.fileno()
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            return  # only a hole remains
        try:
            end = os.lseek(fd, start, os.SEEK_HOLE)
        except OSError:
            end = size
        fin.seek(start)
        while start < end:
            data = fin.read(min(_COPY_CHUNK, end - start))
            if not data:
                return
            if data.count(0) != len(data):
                fout.seek(start)
                fout.write(data)
            start += len(data)
        pos = end


def delete(sim: SimServices, vdi_uuid: str) -> None:
    path(sim, vdi_uuid).unlink(missing_ok=True)


def resize(sim: SimServices, vdi_uuid: str, new_size: int) -> None:
    """Shrink the file if it is longer than ``new_size`` (growing needs
    nothing: past the end reads as zeros)."""
    p = path(sim, vdi_uuid)
    if p.exists() and p.stat().st_size > new_size:
        with open(p, "r+b") as f:
            f.truncate(new_size)


def wipe_all(sim: SimServices) -> None:
    shutil.rmtree(directory(sim), ignore_errors=True)


def copy_by_ref(sim: SimServices, src_ref: str, dst_ref: str) -> None:
    """``copy`` for two VDI refs (both must exist in the store)."""
    store = sim.store
    with store.lock:
        src = store.raw("VDI", src_ref)["uuid"]
        dst = store.raw("VDI", dst_ref)["uuid"]
    copy(sim, src, dst)
