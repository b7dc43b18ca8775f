"""Putting an image into a new VDI: the ``stream`` image handler.

The agent streams the verified image (compute_agent.image) through xapi's
``PUT /import_raw_vdi`` (raw or vhd) into a VDI made for it, with a
``task_id``: the import is a tracked task whose progress the caller sees.
Nothing of the image is kept in the agent beyond the chunk in flight. On
any failure the new VDI is destroyed before the error goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from compute_agent import exceptions
from compute_agent.driver.base import Operation
from compute_agent.driver.xenapi.http_transfer import put_stream
from compute_agent.driver.xenapi.session import SessionPool
from compute_agent.driver.xenapi.tasks import TaskRunner
from compute_agent.driver.xenapi.transfer_tasks import run_transfer
from compute_agent.image import vhd_footer
from compute_agent.image.meta import ImageMeta
from compute_agent.image.service import ImageService
from compute_agent.image.verify import read_ahead

LOG = logging.getLogger(__name__)

SECTOR = 512


@dataclass
class ImportedImage:
    vdi: str
    virtual_size: int
    digest: str  # the verified digest ("" when the source named none)


class Importer(Protocol):
    """An image handler: ImageImporter (stream) or Dom0ImageImporter (dom0)."""

    def import_image(self, op: Operation, meta: ImageMeta, sr: str, name: str,
                     other_config: dict[str, str], max_size: int | None,
                     on_created: Callable[[str], None] | None = None) -> ImportedImage: ...


def round_up(size: int, unit: int = SECTOR) -> int:
    return -(-size // unit) * unit


def vdi_record(sr: str, name: str, size: int, other_config: dict[str, str]) -> dict[str, Any]:
    return {
        "name_label": name, "name_description": "", "SR": sr,
        "virtual_size": str(size), "type": "user", "sharable": False, "read_only": False,
        "other_config": dict(other_config), "xenstore_data": {}, "sm_config": {},
        "tags": [],
    }


class ImageImporter:
    def __init__(self, pool: SessionPool, runner: TaskRunner, images: ImageService):
        self.pool = pool
        self.runner = runner
        self.images = images

    def import_image(self, op: Operation, meta: ImageMeta, sr: str, name: str,
                     other_config: dict[str, str], max_size: int | None,
                     on_created: Callable[[str], None] | None = None) -> ImportedImage:
        """A new VDI on ``sr`` holding the image. FLAVOR_DISK_TOO_SMALL
        when its virtual size exceeds ``max_size``; the IMAGE_* errors of
        the source. ``on_created(vdi)`` is called once the VDI exists."""
        if meta.disk_format == "raw" and meta.size is not None and max_size is not None \
                and meta.size > max_size:
            raise exceptions.FlavorDiskTooSmall(meta.image_id, meta.size, max_size)
        stream = self.images.download(meta)
        try:
            size = self._virtual_size(meta, stream)
            if max_size is not None and size > max_size:
                raise exceptions.FlavorDiskTooSmall(meta.image_id, size, max_size)
            vdi = self.runner.run(op, "VDI.create",
                                  vdi_record(sr, name, round_up(size), other_config))
        except BaseException:
            stream.close()
            raise
        if on_created is not None:
            on_created(vdi)
        try:
            self._send(op, meta, vdi, stream)
        except BaseException:
            LOG.warning("Import of image %s failed; removing its VDI", meta.image_id)
            self._destroy(op, vdi)
            raise
        finally:
            stream.close()
        return ImportedImage(vdi, round_up(size), stream.digest)

    @staticmethod
    def _virtual_size(meta: ImageMeta, stream: Any) -> int:
        if meta.size is None:
            raise exceptions.ImageUnavailable(meta.image_id, "the image's size is unknown")
        if meta.disk_format == "raw":
            return meta.size
        try:
            return vhd_footer.virtual_size(stream.peek(vhd_footer.FOOTER_SIZE), meta.size)
        except vhd_footer.NotAVHD as e:
            raise exceptions.ImageUnavailable(meta.image_id, f"not a usable VHD: {e}") from None

    def _send(self, op: Operation, meta: ImageMeta, vdi: str, stream: Any) -> None:
        def work(task_ref: str) -> int:
            with self.pool.session() as sess:
                query = {"session_id": sess.handle(), "vdi": vdi,
                         "format": meta.disk_format, "task_id": task_ref}
                return put_stream(sess.url, self.pool.settings.tls, "/import_raw_vdi",
                                  query, read_ahead(stream), int(meta.size or 0))

        run_transfer(self.runner, op, f"Import image {meta.image_id}", work)

    def _destroy(self, op: Operation, vdi: str) -> None:
        try:
            with self.runner.cleanup(op, 60.0):
                self.runner.run(op, "VDI.destroy", vdi)
        except exceptions.ComputeAgentError as e:
            if e.code != "HANDLE_INVALID":
                LOG.warning("Could not remove VDI after a failed import: %s", e.code)
