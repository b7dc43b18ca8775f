"""Disks made from images: the image's format and size checked before any
data moves, the disk cloned from the per-SR cache (or imported for this
instance alone when the cache is off).

A build's root disk is grown to the flavor's ``root_gb`` and attached as
the bootable userdevice 0; an image larger than ``root_gb`` is refused
(FLAVOR_DISK_TOO_SMALL) and a flavor without a root disk (``root_gb = 0``)
gets a disk of the image's size. A rescue disk (rescue.py) is the image at
its own size, marked as the instance's rescue disk, so that unrescue
removes it and never the cache base it was cloned from.
"""

from __future__ import annotations

import logging
from typing import Any

from compute_agent.driver.base import Operation
from compute_agent.driver.xenapi import ownership
from compute_agent.driver.xenapi.image_cache import ImageCache
from compute_agent.driver.xenapi.image_import import Importer
from compute_agent.driver.xenapi.session import SessionPool
from compute_agent.driver.xenapi.storage import ROOT_USERDEVICE, GiB, Storage, vbd_record
from compute_agent.driver.xenapi.tasks import TaskRunner
from compute_agent.image.meta import ImageMeta
from compute_agent.image.service import ImageService

LOG = logging.getLogger(__name__)


class ImageDisks:
    def __init__(self, pool: SessionPool, runner: TaskRunner, storage: Storage,
                 images: ImageService, importer: Importer, cache: ImageCache | None,
                 agent_host: str):
        self.pool = pool
        self.runner = runner
        self.storage = storage
        self.images = images
        self.importer = importer
        self.cache = cache
        self.agent_host = agent_host

    def meta(self, image: dict[str, Any]) -> ImageMeta:
        """What the image is (IMAGE_NOT_FOUND, IMAGE_FORMAT_UNSUPPORTED, ...
        from its source): asked before anything in dom0 changes."""
        return self.images.meta(image)

    def create_root_disk(self, op: Operation, instance: dict[str, Any], vm: str) -> str:
        meta = self.meta(instance["image"])  # refuses a bad format: nothing moved
        root = int(instance["flavor"].get("root_gb") or 0) * GiB
        vdi = self.disk_from_image(op, meta, instance["uuid"], "root",
                                   f"{instance['name']} root", root)
        self.pool.call("VBD.create", vbd_record(vm, vdi, ROOT_USERDEVICE, True))
        LOG.info("Root disk of %s made from image %s", instance["uuid"], meta.image_id)
        return vdi

    def disk_from_image(self, op: Operation, meta: ImageMeta, instance_uuid: str,
                        kind: str, name: str, size: int = 0) -> str:
        """A new VDI holding the image, marked as the instance's ``kind``
        disk (ownership.DISK_KEY) from the moment it exists: at least
        ``size`` bytes (when non-zero, an image larger than that is
        FLAVOR_DISK_TOO_SMALL), else the image's own size. On failure
        nothing of it is left (the cache base of a cached image stays)."""
        sr = self.storage.find_sr()
        marks = ownership.marks(instance_uuid, self.agent_host,
                                **{ownership.DISK_KEY: kind})
        if self.cache is not None:
            vdi, got = self.cache.clone_for(op, meta, sr, size or 2**63, marks, name, size)
        else:
            imported = self.importer.import_image(op, meta, sr, name, marks, size or None)
            vdi, got = imported.vdi, imported.virtual_size
        if size > got:
            self.runner.run(op, "VDI.resize", vdi, str(size))
        return vdi
