"""Images at plain HTTP(S) URLs.

The URL's size comes from ``Content-Length`` (required: the VDI is made
before the data arrives); a ``Content-MD5`` header, hex as Glance and
many servers send it or base64 as RFC 1864 has it, is verified while the
data streams. TLS is verified against the system's trust store (or
``ca_file``). The cache tells contents apart by the ``ETag`` or
``Last-Modified`` a HEAD returns.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import requests

from compute_agent import exceptions
from compute_agent.image.meta import ImageMeta
from compute_agent.image.verify import VerifiedStream

TIMEOUT = (10.0, 60.0)


def _md5_hex(header: str | None) -> str:
    if not header:
        return ""
    header = header.strip()
    if len(header) == 32:
        return header.lower()
    try:
        raw = base64.b64decode(header, validate=True)
    except (binascii.Error, ValueError):
        return ""
    return raw.hex() if len(raw) == 16 else ""


class HTTPSource:
    def __init__(self, chunk_size: int = 1024 * 1024, ca_file: str | None = None):
        self.chunk_size = chunk_size
        self.session = requests.Session()
        self.session.verify = ca_file or True

    def _get(self, url: str, method: str, **kwargs: Any) -> requests.Response:
        try:
            resp = self.session.request(method, url, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as e:
            raise exceptions.ImageUnavailable(url, f"{e.__class__.__name__}: {e}"[:300]) from e
        if resp.status_code in (404, 410):
            resp.close()
            raise exceptions.ImageNotFound(url)
        if resp.status_code != 200:
            resp.close()
            raise exceptions.ImageUnavailable(url, f"HTTP {resp.status_code}")
        return resp

    def meta(self, url: str, disk_format: str, image_id: str | None = None) -> ImageMeta:
        resp = self._get(url, "HEAD", allow_redirects=True)
        resp.close()
        return self._meta(url, disk_format, image_id, resp.headers)

    def _meta(self, url: str, disk_format: str, image_id: str | None,
              headers: Any) -> ImageMeta:
        length = headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise exceptions.ImageUnavailable(url, "the server sends no Content-Length")
        md5 = _md5_hex(headers.get("Content-MD5"))
        validator = headers.get("ETag") or headers.get("Last-Modified") or ""
        return ImageMeta(
            image_id=image_id or url, disk_format=disk_format, size=int(length),
            hash_algo="md5" if md5 else "", hash_value=md5, source="http", url=url,
            version=f"{length}:{md5 or validator}")

    def download(self, meta: ImageMeta) -> VerifiedStream:
        resp = self._get(meta.url, "GET", stream=True)
        got = self._meta(meta.url, meta.disk_format, meta.image_id, resp.headers)
        if got.size != meta.size:
            resp.close()
            raise exceptions.ImageChecksumMismatch(meta.image_id, f"size:{meta.size}",
                                                   f"size:{got.size}")
        return VerifiedStream(meta.image_id, resp.iter_content(self.chunk_size), got.size,
                              got.hash_algo, got.hash_value, close=resp.close)
