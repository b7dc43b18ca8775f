"""An image's bytes into a storage volume, streamed in bounded chunks.

libvirt's own path is ``virStorageVolUpload``: the agent opens a virStream
on the volume and sends the chunks as they arrive from the image source;
libvirt writes them into the volume whatever the pool's type (and over
``qemu+ssh://`` or ``xen+ssh://`` from another machine).

Some drivers do not implement it (``VIR_ERR_NO_SUPPORT``; libvirt's test
driver is one). A volume that is a local file or block device (dir, fs,
netfs and logical pools: the agent runs on the host) is then written at
its target path, the same bytes in the same order. A volume that is
neither (rbd, iscsi-direct, gluster) has no such path and the import fails
with OPERATION_NOT_SUPPORTED [volume upload, libvirt].

Either way memory holds one chunk; the source's verified stream holds the
last one back until its size and checksum check out, so a wrong image is
never written whole.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

import libvirt

from compute_agent import exceptions
from compute_agent.driver.libvirt.errors import DRIVER_NAME

LOG = logging.getLogger(__name__)

LOCAL_VOLUME_TYPES = (libvirt.VIR_STORAGE_VOL_FILE, libvirt.VIR_STORAGE_VOL_BLOCK)


@dataclass(frozen=True)
class Uploaded:
    bytes: int
    path: str  # "stream" (virStorageVolUpload) or "local" (the volume's file)


def upload(conn: libvirt.virConnect, vol: libvirt.virStorageVol,
           chunks: Iterable[bytes], length: int) -> Uploaded:
    """Write ``chunks`` (``length`` bytes in all) from offset 0 of ``vol``."""
    stream = conn.newStream(0)
    try:
        vol.upload(stream, 0, length, 0)
    except libvirt.libvirtError as exc:
        _abort(stream)
        if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
            raise
        LOG.info("libvirt cannot upload into %s (%s); writing its file", vol.name(),
                 exc.get_error_message())
        return Uploaded(_write_local(vol, chunks), "local")
    sent = 0
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                n = stream.send(view.tobytes())
                if n < 0:  # -2 "would block": only from a non-blocking stream
                    raise exceptions.HypervisorError("volume upload: the stream would block",
                                                     code="VIR_ERR_RPC")
                view = view[n:]
                sent += n
        stream.finish()
    except BaseException:
        _abort(stream)
        raise
    return Uploaded(sent, "stream")


def _write_local(vol: libvirt.virStorageVol, chunks: Iterable[bytes]) -> int:
    kind = vol.info()[0]
    path = vol.path()
    if kind not in LOCAL_VOLUME_TYPES or not path or not os.path.isabs(path):
        raise exceptions.OperationNotSupported("volume upload", DRIVER_NAME)
    written = 0
    try:
        # No O_TRUNC: a block device cannot be truncated, and a file volume
        # keeps the capacity libvirt gave it beyond the image's bytes.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise exceptions.HypervisorError(f"cannot write volume {vol.name()} at {path}: "
                                         f"{exc.strerror}", code="VOLUME_WRITE_FAILED") from None
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                n = os.write(fd, view)
                view = view[n:]
                written += n
        os.fsync(fd)
    finally:
        os.close(fd)
    return written


def _abort(stream: libvirt.virStream) -> None:
    try:
        stream.abort()
    except libvirt.libvirtError:
        pass
