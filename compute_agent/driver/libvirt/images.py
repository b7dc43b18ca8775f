"""A build's image into its root volume (libvirt driver).

The image sources (compute_agent/image/) say what the image is and stream
its bytes, verified for size and checksum; this module picks the formats
libvirt boots, sizes the root volume and streams the bytes into it
(volume_upload.py). The same image serves Xen and KVM: qcow2 and raw, the
volume taking the image's format (a qcow2 volume under a raw image would
be read as garbage, and the reverse).

- raw: the volume is ``root_gb`` large and the image's bytes fill its
  start; the image must fit. (``root_gb`` 0: the image's size.)
- qcow2: the image's virtual size is read from its header (bytes 24-31,
  big-endian) before anything is written; it must fit ``root_gb``. The
  written file is the image (its header sets the virtual size), so the
  volume is grown to ``root_gb`` afterwards where libvirt can resize it
  (``virStorageVolResize``; a driver without it keeps the image's size).
"""

from __future__ import annotations

import logging
import struct
from typing import Any

import libvirt

from compute_agent import exceptions
from compute_agent.driver.libvirt import volume_upload
from compute_agent.driver.libvirt.storage import GiB, Pool
from compute_agent.image.meta import ImageMeta
from compute_agent.image.service import ImageService, wants_image

LOG = logging.getLogger(__name__)

LIBVIRT_FORMATS = ("raw", "qcow2")
QCOW2_MAGIC = b"QFI\xfb"
QCOW2_HEADER = 32  # magic, version, backing file offset and size, cluster bits, size

__all__ = ["LIBVIRT_FORMATS", "RootImages", "qcow2_virtual_size", "wants_image"]


def qcow2_virtual_size(header: bytes) -> int:
    """The virtual size a qcow2 header declares; ValueError if it is not one."""
    if len(header) < QCOW2_HEADER or header[:4] != QCOW2_MAGIC:
        raise ValueError("no qcow2 header")
    version = struct.unpack(">I", header[4:8])[0]
    if version not in (2, 3):
        raise ValueError(f"qcow2 version {version}")
    return struct.unpack(">Q", header[24:32])[0]


class RootImages:
    """Root volumes made from images, for one driver."""

    def __init__(self, images: ImageService, pool: Pool):
        self.images = images
        self.pool = pool

    def meta(self, image: dict[str, Any]) -> ImageMeta:
        """What the build's image is, in a format libvirt boots
        (IMAGE_FORMAT_UNSUPPORTED otherwise, before any data moves);
        IMAGE_NOT_FOUND / IMAGE_UNAVAILABLE from the source."""
        url, image_id = image.get("url"), image.get("id")
        asked = (image.get("disk_format") or "").lower()
        if url:
            fmt = asked or "raw"
            _require_format(image_id or url, fmt)
            return self.images.http.meta(url, fmt, image_id)
        if not image_id:
            raise exceptions.InvalidInput("image", "needs an id or a url")
        meta = self.images.glance.meta(image_id)
        if asked and asked != meta.disk_format:
            raise exceptions.InvalidInput(
                "image.disk_format", f"{asked} asked, Glance has {meta.disk_format}")
        _require_format(image_id, meta.disk_format)
        return meta

    def fill(self, conn: libvirt.virConnect, uuid: str, root_gb: int,
             meta: ImageMeta) -> libvirt.virStorageVol:
        """The instance's root volume, in the image's format, holding the
        image: ``root_gb`` large, or the image's virtual size when
        ``root_gb`` is 0. FLAVOR_DISK_TOO_SMALL when it does not fit."""
        if meta.size is None:
            raise exceptions.ImageUnavailable(meta.image_id, "the image's size is unknown")
        capacity = int(root_gb) * GiB if root_gb and int(root_gb) > 0 else None
        if meta.disk_format == "raw" and capacity is not None and meta.size > capacity:
            raise exceptions.FlavorDiskTooSmall(meta.image_id, meta.size, capacity)
        stream = self.images.download(meta)
        try:
            virtual = meta.size
            if meta.disk_format == "qcow2":
                try:
                    virtual = qcow2_virtual_size(stream.peek(QCOW2_HEADER))
                except ValueError as exc:
                    raise exceptions.ImageUnavailable(
                        meta.image_id, f"not a usable qcow2 image: {exc}") from None
            if capacity is not None and virtual > capacity:
                raise exceptions.FlavorDiskTooSmall(meta.image_id, virtual, capacity)
            vol = self.pool.ensure_root(conn, uuid, root_gb, meta.disk_format,
                                        size_bytes=capacity or virtual)
            done = volume_upload.upload(conn, vol, stream, meta.size)
        finally:
            stream.close()
        LOG.info("Image %s (%s, %d bytes) written into %s by %s", meta.image_id,
                 meta.disk_format, done.bytes, vol.name(), done.path)
        if meta.disk_format == "qcow2" and capacity is not None and virtual < capacity:
            self._grow(vol, capacity)
        return vol

    @staticmethod
    def _grow(vol: libvirt.virStorageVol, capacity: int) -> None:
        try:
            vol.resize(capacity, 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                raise
            LOG.info("libvirt cannot resize %s; it keeps the image's virtual size",
                     vol.name())


def _require_format(image_id: str, disk_format: str) -> None:
    if disk_format not in LIBVIRT_FORMATS:
        raise exceptions.ImageFormatUnsupported(image_id, disk_format or "none")
