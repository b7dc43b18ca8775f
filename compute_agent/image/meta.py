"""What the agent knows about an image before it reads any of its data."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from compute_agent import exceptions

# Disk formats a build can boot: xapi imports these two as they are.
BOOTABLE_FORMATS = ("raw", "vhd")


@dataclass(frozen=True)
class ImageMeta:
    """``image_id`` is Glance's id, or the URL for a plain HTTP image.
    ``size`` is the byte length of the data (None if unknown until read);
    ``hash_algo``/``hash_value`` the digest to verify (hashlib name and
    lower-case hex), empty when the source names none. ``version`` tells two
    contents under one id apart (the checksum for Glance, the HTTP
    validators for a URL): the cache keys on it."""

    image_id: str
    disk_format: str
    size: int | None
    hash_algo: str = ""
    hash_value: str = ""
    source: str = "glance"  # or "http"
    url: str = ""
    version: str = ""
    name: str = ""

    @property
    def cache_key(self) -> str:
        return self.image_id if self.source == "glance" else f"url:{self.url}"

    def require_bootable(self) -> None:
        """Refuse, before any download, a format xapi cannot import."""
        if self.disk_format not in BOOTABLE_FORMATS:
            raise exceptions.ImageFormatUnsupported(self.image_id, self.disk_format or "none")


def pick_hash(os_hash_algo: str | None, os_hash_value: str | None,
              md5: str | None) -> tuple[str, str]:
    """The digest to verify: Glance's multihash when this Python knows its
    algorithm, else the legacy MD5 ``checksum``, else none."""
    if os_hash_algo and os_hash_value and os_hash_algo in hashlib.algorithms_available:
        return os_hash_algo, os_hash_value.lower()
    if md5:
        return "md5", md5.lower()
    return "", ""
