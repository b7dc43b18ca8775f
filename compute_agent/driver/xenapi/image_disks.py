"""Root disks made from images: the image's format and size checked
before any data moves, the disk cloned from the per-SR cache (or imported
for this instance alone when the cache is off), grown to the flavor's
``root_gb`` and attached as the bootable userdevice 0.

An image larger than ``root_gb`` is refused (FLAVOR_DISK_TOO_SMALL); a
flavor without a root disk (``root_gb = 0``) gets a disk of the image's
size.
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

    def create_root_disk(self, op: Operation, instance: dict[str, Any], vm: str) -> str:
        meta = self.images.meta(instance["image"])  # refuses a bad format: nothing moved
        root = int(instance["flavor"].get("root_gb") or 0) * GiB
        max_size = root if root > 0 else None
        sr = self.storage.find_sr()
        marks = ownership.marks(instance["uuid"], self.agent_host,
                                **{ownership.DISK_KEY: "root"})
        name = f"{instance['name']} root"
        if self.cache is not None:
            vdi, size = self.cache.clone_for(op, meta, sr, root or 2**63, marks, name, root)
        else:
            imported = self.importer.import_image(op, meta, sr, name, marks, max_size)
            vdi, size = imported.vdi, imported.virtual_size
        if root > size:
            self.runner.run(op, "VDI.resize", vdi, str(root))
        self.pool.call("VBD.create", vbd_record(vm, vdi, ROOT_USERDEVICE, True))
        LOG.info("Root disk of %s made from image %s", instance["uuid"], meta.image_id)
        return vdi
