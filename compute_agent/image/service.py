"""The image of a build: which source serves it, and its data.

A build's ``image`` is ``{id, url, disk_format}``: with a ``url`` the
agent fetches that URL (``disk_format`` from the request, ``raw`` when
unset); with only an ``id`` it asks Glance. Formats other than raw and vhd
are refused here, before any data moves.
"""

from __future__ import annotations

from typing import Any

from compute_agent import exceptions
from compute_agent.image.glance import GlanceClient
from compute_agent.image.http_source import HTTPSource
from compute_agent.image.meta import ImageMeta
from compute_agent.image.verify import VerifiedStream


def wants_image(image: dict[str, Any] | None) -> bool:
    """Whether a build names an image at all (else: a blank root disk)."""
    image = image or {}
    return bool(image.get("url") or image.get("id"))


class ImageService:
    def __init__(self, glance: GlanceClient | None, http: HTTPSource):
        self._glance = glance
        self.http = http

    @classmethod
    def from_conf(cls, conf: Any) -> ImageService:
        chunk = conf.glance.chunk_size_kb * 1024
        return cls(GlanceClient.from_conf(conf), HTTPSource(chunk))

    @property
    def glance(self) -> GlanceClient:
        if self._glance is None:
            raise exceptions.ImageUnavailable("glance", "no image service configured")
        return self._glance

    def meta(self, image: dict[str, Any]) -> ImageMeta:
        """What the build's image is; IMAGE_FORMAT_UNSUPPORTED for a format
        that cannot boot, IMAGE_NOT_FOUND / IMAGE_UNAVAILABLE from the source."""
        url, image_id = image.get("url"), image.get("id")
        if url:
            fmt = (image.get("disk_format") or "raw").lower()
            ImageMeta(image_id or url, fmt, None).require_bootable()
            return self.http.meta(url, fmt, image_id)
        if not image_id:
            raise exceptions.InvalidInput("image", "needs an id or a url")
        meta = self.glance.meta(image_id)
        asked = image.get("disk_format")
        if asked and asked.lower() != meta.disk_format:
            raise exceptions.InvalidInput(
                "image.disk_format", f"{asked} asked, Glance has {meta.disk_format}")
        meta.require_bootable()
        return meta

    def download(self, meta: ImageMeta) -> VerifiedStream:
        if meta.source == "http":
            return self.http.download(meta)
        return self.glance.download(meta)
