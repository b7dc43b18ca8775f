"""The per-SR image cache: one verified base VDI per image, cloned for
every root disk built from it.

A base VDI is marked in its ``other_config``: the image's cache key and
version (its checksum), the agent that owns it, its own uuid (a clone
copies other_config; a copy whose uuid differs is not a base) and a state:
``importing`` until the import ended with the checksum verified, then
``ready``. Only a ready base is ever cloned. A build that finds none
imports one, under a lock per (SR, image), so concurrent builds of an
uncached image download it once. A base left ``importing`` by a crash is
removed at start-up (``remove_half_imported``); ``cleanup`` removes ready
bases no disk was cloned from and no build used for ``max_unused_age``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.base import Operation
from compute_agent.driver.xenapi import ownership
from compute_agent.driver.xenapi.image_import import Importer
from compute_agent.driver.xenapi.session import SessionPool
from compute_agent.driver.xenapi.tasks import TaskRunner
from compute_agent.image.meta import ImageMeta

LOG = logging.getLogger(__name__)

KEY = "compute_agent_image"  # the image's cache key
VERSION = "compute_agent_image_version"
STATE = "compute_agent_image_state"  # importing | ready
SELF = "compute_agent_image_vdi"  # the base's own uuid
LAST_USED = "compute_agent_image_last_used"  # unix time, as a string
SIZE = "compute_agent_image_size"  # the image's virtual size in bytes
BASE = "compute_agent_image_base"  # on a clone: the uuid of its base
GROWN = "compute_agent_image_grown_to"  # on a base grown past the image: its size
GiB = 1024**3
IMPORTING, READY = "importing", "ready"


def base_marks(meta: ImageMeta, agent_host: str) -> dict[str, str]:
    return {KEY: meta.cache_key, VERSION: meta.version, STATE: IMPORTING,
            ownership.HOST_KEY: agent_host, LAST_USED: str(int(time.time()))}


def is_base(rec: dict[str, Any], agent_host: str) -> bool:
    oc = rec.get("other_config") or {}
    return bool(oc.get(KEY)) and oc.get(ownership.HOST_KEY) == agent_host \
        and oc.get(SELF) in (None, rec.get("uuid"))


class ImageCache:
    def __init__(self, pool: SessionPool, runner: TaskRunner, importer: Importer,
                 agent_host: str):
        self.pool = pool
        self.runner = runner
        self.importer = importer
        self.agent_host = agent_host
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_lock = threading.Lock()

    @contextlib.contextmanager
    def _lock(self, sr: str, key: str) -> Iterator[None]:
        with self._locks_lock:
            lock = self._locks.setdefault((sr, key), threading.Lock())
        with lock:
            yield

    # -- lookups -----------------------------------------------------------------------
    def _bases(self, sr: str | None = None) -> dict[str, dict[str, Any]]:
        where = f'field "SR" = "{sr}"' if sr else 'true'
        recs = self.pool.call("VDI.get_all_records_where", where)
        return {ref: rec for ref, rec in recs.items() if is_base(rec, self.agent_host)}

    @staticmethod
    def _match(bases: dict[str, dict[str, Any]], meta: ImageMeta,
               grown_to: int | None = None) -> tuple[str, dict[str, Any]] | None:
        """The ready base of the image: the image-sized one (``grown_to``
        None) or the one grown to ``grown_to`` bytes."""
        want = None if grown_to is None else str(grown_to)
        for ref, rec in sorted(bases.items()):
            oc = rec.get("other_config") or {}
            if oc.get(KEY) == meta.cache_key and oc.get(VERSION) == meta.version \
                    and oc.get(STATE) == READY and oc.get(SELF) == rec.get("uuid") \
                    and oc.get(GROWN) == want:
                return ref, rec
        return None

    def find_ready(self, sr: str, meta: ImageMeta) -> tuple[str, dict[str, Any]] | None:
        return self._match(self._bases(sr), meta)

    # -- builds ------------------------------------------------------------------------
    def clone_for(self, op: Operation, meta: ImageMeta, sr: str, max_size: int,
                  disk_marks: dict[str, str], name: str, root: int = 0) -> tuple[str, int]:
        """A new VDI cloned from the image's ready base on ``sr`` (imported
        first if there is none), marked with ``disk_marks``; at least
        ``root`` bytes large when ``root`` exceeds the image. Returns (vdi,
        its virtual size).

        A disk larger than the image comes from a second base: the image's
        base cloned and grown to that size once, then cloned for every
        build of that size, so such a build costs one clone, as a blank
        disk costs one create."""
        with self._lock(sr, meta.cache_key):
            bases = self._bases(sr)
            found = self._match(bases, meta)
            if found is None:
                base, size = self._import_base(op, meta, sr, max_size)
            else:
                base = found[0]
                size = int((found[1].get("other_config") or {}).get(SIZE) or
                           found[1].get("virtual_size") or 0)
                if size > max_size:
                    raise exceptions.FlavorDiskTooSmall(meta.image_id, size, max_size)
            now = str(int(time.time()))
            self._set(base, LAST_USED, now)
            source = base
            if root > size:
                grown = self._match(bases, meta, root)
                source = grown[0] if grown else self._grow(op, meta, base, root)
                size = root
                self._set(source, LAST_USED, now)
            clone = self.runner.run(op, "VDI.clone", source, {})
            # The clone carries the base's marks: make it the instance's disk
            # before anything else (the build's clean-up finds it by these).
            self.pool.call("VDI.set_other_config", clone,
                           {**disk_marks, BASE: self.pool.call("VDI.get_uuid", source)})
            self.pool.call("VDI.set_name_label", clone, name)
        return clone, size

    def _grow(self, op: Operation, meta: ImageMeta, base: str, size: int) -> str:
        """A base of the image grown to ``size`` bytes: a clone of the
        image's base, marked (importing until grown), resized."""
        grown = self.runner.run(op, "VDI.clone", base, {})
        try:
            uuid = self.pool.call("VDI.get_uuid", grown)
            marks = {**base_marks(meta, self.agent_host), SELF: uuid, SIZE: str(size),
                     GROWN: str(size), BASE: self.pool.call("VDI.get_uuid", base)}
            self.pool.call("VDI.set_other_config", grown, marks)
            self.pool.call("VDI.set_name_label", grown,
                           f"image {meta.name or meta.image_id} (cache, {size // GiB} GiB)"
                           if size % GiB == 0 else f"image {meta.image_id} (cache, {size} B)")
            self.runner.run(op, "VDI.resize", grown, str(size))
            self._set(grown, STATE, READY)
        except BaseException:
            self._destroy_quietly(op, grown)
            raise
        return grown

    def _import_base(self, op: Operation, meta: ImageMeta, sr: str,
                     max_size: int) -> tuple[str, int]:
        created: list[str] = []

        def mark_self(vdi: str) -> None:
            created.append(vdi)
            self._set(vdi, SELF, self.pool.call("VDI.get_uuid", vdi))

        label = f"image {meta.name or meta.image_id} (cache)"
        try:
            imported = self.importer.import_image(
                op, meta, sr, label, base_marks(meta, self.agent_host), max_size,
                on_created=mark_self)
            self._set(imported.vdi, SIZE, str(imported.virtual_size))
            # Usable only now: the data arrived whole and its checksum matched.
            self._set(imported.vdi, STATE, READY)
        except BaseException:
            for vdi in created:
                self._destroy_quietly(op, vdi)
            raise
        LOG.info("Image %s cached on SR %s", meta.image_id, sr)
        return imported.vdi, imported.virtual_size

    def _set(self, vdi: str, key: str, value: str) -> None:
        self.pool.call("VDI.remove_from_other_config", vdi, key)
        self.pool.call("VDI.add_to_other_config", vdi, key, value)

    def _destroy_quietly(self, op: Operation, vdi: str) -> None:
        try:
            with self.runner.cleanup(op, 60.0):
                self.runner.run(op, "VDI.destroy", vdi)
        except exceptions.ComputeAgentError as e:
            if e.code != "HANDLE_INVALID":
                LOG.warning("Could not remove cache VDI: %s", e.code)

    # -- housekeeping --------------------------------------------------------------------
    def remove_half_imported(self, op: Operation) -> list[str]:
        """Destroy this agent's bases still ``importing`` (a crash stopped
        their import): at start-up, when no build of ours runs."""
        gone = []
        for ref, rec in self._bases().items():
            if (rec.get("other_config") or {}).get(STATE) != READY:
                self._destroy_quietly(op, ref)
                gone.append(ref)
        if gone:
            LOG.info("Removed %d half-imported image cache VDI(s)", len(gone))
        return gone

    def _orphan_copy(self, rec: dict[str, Any]) -> bool:
        oc = rec.get("other_config") or {}
        return bool(oc.get(KEY)) and oc.get(ownership.HOST_KEY) == self.agent_host \
            and oc.get(SELF) not in (None, rec.get("uuid")) \
            and not oc.get(ownership.INSTANCE_KEY)

    def cleanup(self, op: Operation, max_unused_age: float) -> list[str]:
        """Destroy ready bases that no VDI was cloned from and that no build
        used for ``max_unused_age`` seconds."""
        recs = self.pool.call("VDI.get_all_records")
        in_use = {(rec.get("other_config") or {}).get(BASE) for rec in recs.values()}
        now = time.time()
        gone = []
        for ref, rec in sorted(recs.items()):
            if self._orphan_copy(rec):
                # a clone the agent died before marking as a disk or base
                with self._lock(rec.get("SR", ""), (rec.get("other_config") or {}).get(KEY, "")):
                    self._destroy_quietly(op, ref)
                gone.append(ref)
                continue
            if not is_base(rec, self.agent_host):
                continue
            oc = rec.get("other_config") or {}
            if oc.get(STATE) != READY or rec.get("uuid") in in_use:
                continue
            with self._lock(rec.get("SR", ""), oc.get(KEY, "")):
                try:
                    last = float(self.pool.call("VDI.get_other_config", ref).get(LAST_USED, 0))
                except exceptions.HypervisorError:
                    continue
                if now - last < max_unused_age:
                    continue
                self._destroy_quietly(op, ref)
                gone.append(ref)
        return gone
