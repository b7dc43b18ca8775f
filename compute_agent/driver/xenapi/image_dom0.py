"""Putting an image into a new VDI from inside dom0: the ``dom0`` image
handler.

The dom0 plugin ``images`` (etc/xapi.d/plugins/images) downloads the image
straight into a file-based SR's directory and has SR.scan introduce it; the
agent only starts it, as ``Async.host.call_plugin`` (a tracked task, so it
is recorded, followed and cancellable like any other), on the host where
the SR is attached. The VDI's uuid is the agent's choice, so a cancelled or
failed call is cleaned up by uuid (``remove_partial`` and VDI.destroy), and
the plugin sets the VDI's name and marks before it returns, so a VDI that
exists is never unmarked, even if the agent dies as the call ends.
The plugin verifies size and checksum itself; its IMAGE_* failures come
back as the agent's image errors.
"""

from __future__ import annotations

import json
import logging
import uuid as uuidlib
from collections.abc import Callable

from compute_agent import exceptions
from compute_agent.driver.base import Operation
from compute_agent.driver.xenapi.image_import import ImportedImage
from compute_agent.driver.xenapi.session import SessionPool
from compute_agent.driver.xenapi.tasks import TaskRunner
from compute_agent.image.meta import ImageMeta
from compute_agent.image.service import ImageService

LOG = logging.getLogger(__name__)

PLUGIN = "images"
IMAGE_ERRORS: dict[str, type[exceptions.ComputeAgentError]] = {
    "IMAGE_NOT_FOUND": exceptions.ImageNotFound,
    "IMAGE_UNAVAILABLE": exceptions.ImageUnavailable,
    "IMAGE_CHECKSUM_MISMATCH": exceptions.ImageChecksumMismatch,
}


class Dom0ImageImporter:
    def __init__(self, pool: SessionPool, runner: TaskRunner, images: ImageService):
        self.pool = pool
        self.runner = runner
        self.images = images

    def import_image(self, op: Operation, meta: ImageMeta, sr: str, name: str,
                     other_config: dict[str, str], max_size: int | None,
                     on_created: Callable[[str], None] | None = None) -> ImportedImage:
        """As ImageImporter.import_image, with the download done in dom0."""
        if meta.size is None:
            raise exceptions.ImageUnavailable(meta.image_id, "the image's size is unknown")
        if meta.disk_format == "raw" and max_size is not None and meta.size > max_size:
            raise exceptions.FlavorDiskTooSmall(meta.image_id, meta.size, max_size)
        sr_uuid = self.pool.call("SR.get_uuid", sr)
        vdi_uuid = str(uuidlib.uuid4())
        args = {"url": meta.url if meta.source == "http" else
                self.images.glance.data_url(meta.image_id),
                "sr_uuid": sr_uuid, "vdi_uuid": vdi_uuid, "disk_format": meta.disk_format,
                "size": str(meta.size),
                # marked by the plugin itself: an agent that dies as the
                # call ends leaves a VDI its recovery recognises
                "name_label": name[:255], "other_config": json.dumps(other_config)}
        if meta.hash_algo:
            args.update(hash_algo=meta.hash_algo, hash_value=meta.hash_value)
        if meta.source == "glance":
            token = self.images.glance.token()
            if token:
                args["auth_token"] = token
        host = self._host_of(sr)
        try:
            self.runner.run(op, "host.call_plugin", host, PLUGIN, "download_image", args)
            vdi = self.pool.call("VDI.get_by_uuid", vdi_uuid)
        except exceptions.HypervisorError as e:
            self._clean(op, host, sr_uuid, vdi_uuid)
            raise _image_error(meta, e) from None
        except BaseException:
            self._clean(op, host, sr_uuid, vdi_uuid)
            raise
        try:
            if on_created is not None:
                on_created(vdi)
            size = int(self.pool.call("VDI.get_virtual_size", vdi))
            if max_size is not None and size > max_size:
                raise exceptions.FlavorDiskTooSmall(meta.image_id, size, max_size)
        except BaseException:
            self._clean(op, host, sr_uuid, vdi_uuid)
            raise
        return ImportedImage(vdi, size, meta.hash_value)

    def _host_of(self, sr: str) -> str:
        for pbd in self.pool.call("SR.get_PBDs", sr):
            rec = self.pool.call("PBD.get_record", pbd)
            if rec.get("currently_attached"):
                return rec["host"]
        raise exceptions.HypervisorError(sr, code="SR_HAS_NO_PBDS")

    def _clean(self, op: Operation, host: str, sr_uuid: str, vdi_uuid: str) -> None:
        """Remove a partial download and the VDI if it came to exist."""
        try:
            with self.runner.cleanup(op, 60.0):
                self.runner.run(op, "host.call_plugin", host, PLUGIN, "remove_partial",
                                {"sr_uuid": sr_uuid, "vdi_uuid": vdi_uuid})
                try:
                    vdi = self.pool.call("VDI.get_by_uuid", vdi_uuid)
                except exceptions.HypervisorError:
                    return
                self.runner.run(op, "VDI.destroy", vdi)
        except exceptions.ComputeAgentError as e:
            LOG.warning("Clean-up of the dom0 download %s failed: %s", vdi_uuid, e.code)


def _image_error(meta: ImageMeta, e: exceptions.HypervisorError) -> exceptions.ComputeAgentError:
    kind = IMAGE_ERRORS.get(e.code)
    if kind is None:
        return e
    # the plugin names the URL; the agent's errors name the image
    return kind(meta.image_id, *e.params[1:])
