"""Glance v2 through a keystoneauth1 adapter: image records, streamed
downloads of ``/v2/images/{id}/file``, and for snapshots create, chunked
upload and delete.

The adapter comes from the ``[glance]`` options (conf/glance.py): with
Keystone, the catalog gives the endpoint and a token goes with every
request; with ``auth_type = none`` and ``endpoint_override`` the requests
go there as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import loading as ks_loading
from keystoneauth1 import noauth

from compute_agent import exceptions
from compute_agent.image.meta import ImageMeta, pick_hash
from compute_agent.image.verify import VerifiedStream

LOG = logging.getLogger(__name__)

# When the session has no timeout of its own: connect, and between two reads.
DEFAULT_TIMEOUT = (10.0, 60.0)
JSON_PATCH = "application/openstack-images-v2.1-json-patch"


def adapter_from_conf(conf: Any, group: str = "glance") -> Any:
    """A keystoneauth1 Adapter built from the group's session, auth and
    adapter options."""
    auth = ks_loading.load_auth_from_conf_options(conf, group)
    session = ks_loading.load_session_from_conf_options(conf, group, auth=auth)
    return ks_loading.load_adapter_from_conf_options(conf, group, session=session, auth=auth)


class GlanceClient:
    def __init__(self, adapter: Any, chunk_size: int = 1024 * 1024, num_retries: int = 2):
        self.adapter = adapter
        self.chunk_size = chunk_size
        self.num_retries = num_retries
        self.timeout = adapter.session.timeout or DEFAULT_TIMEOUT

    @classmethod
    def from_conf(cls, conf: Any) -> GlanceClient:
        return cls(adapter_from_conf(conf), chunk_size=conf.glance.chunk_size_kb * 1024,
                   num_retries=conf.glance.num_retries)

    # -- requests -----------------------------------------------------------------
    def _request(self, image_id: str, method: str, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout)
        try:
            return self.adapter.request(path, method, raise_exc=False, **kwargs)
        except ks_exc.ClientException as e:
            # unreachable, timed out, no endpoint in the catalog, auth refused
            raise exceptions.ImageUnavailable(image_id, _reason(e)) from e

    def _check(self, image_id: str, resp: Any, ok: tuple[int, ...] = (200,)) -> Any:
        if resp.status_code == 404:
            resp.close()
            raise exceptions.ImageNotFound(image_id)
        if resp.status_code not in ok:
            text = (resp.text or "")[:200] if not resp.raw or not resp.raw.closed else ""
            resp.close()
            raise exceptions.ImageUnavailable(image_id, f"HTTP {resp.status_code} {text}".strip())
        return resp

    def show(self, image_id: str) -> dict[str, Any]:
        last: exceptions.ImageUnavailable | None = None
        for _ in range(self.num_retries + 1):
            try:
                return self._check(image_id, self._request(
                    image_id, "GET", f"/v2/images/{image_id}")).json()
            except exceptions.ImageUnavailable as e:
                last = e
        assert last is not None
        raise last

    def meta(self, image_id: str) -> ImageMeta:
        """The image's record as ImageMeta; IMAGE_UNAVAILABLE unless it is
        active (queued, saving, killed and deleted images have no data)."""
        rec = self.show(image_id)
        status = rec.get("status")
        if status != "active":
            raise exceptions.ImageUnavailable(image_id, f"image status is {status}")
        algo, value = pick_hash(rec.get("os_hash_algo"), rec.get("os_hash_value"),
                                rec.get("checksum"))
        return ImageMeta(
            image_id=image_id, disk_format=rec.get("disk_format") or "",
            size=rec.get("size"), hash_algo=algo, hash_value=value, source="glance",
            version=value or str(rec.get("updated_at") or ""), name=rec.get("name") or "")

    def download(self, meta: ImageMeta) -> VerifiedStream:
        """The image's data, verified against ``meta`` while it streams."""
        resp = self._check(meta.image_id, self._request(
            meta.image_id, "GET", f"/v2/images/{meta.image_id}/file", stream=True))
        return VerifiedStream(meta.image_id, resp.iter_content(self.chunk_size), meta.size,
                              meta.hash_algo, meta.hash_value, close=resp.close)

    def data_url(self, image_id: str) -> str:
        """Where the image's data is, for a downloader other than this
        client (the dom0 plugin)."""
        try:
            endpoint = self.adapter.get_endpoint()
        except ks_exc.ClientException as e:
            raise exceptions.ImageUnavailable(image_id, _reason(e)) from e
        if not endpoint:
            raise exceptions.ImageUnavailable(image_id, "no image service endpoint")
        return f"{endpoint.rstrip('/')}/v2/images/{image_id}/file"

    def token(self) -> str | None:
        """The Keystone token requests carry, or None without Keystone."""
        auth = self.adapter.auth or self.adapter.session.auth
        if auth is None or isinstance(auth, noauth.NoAuth):
            return None
        try:
            return self.adapter.get_token()
        except ks_exc.ClientException as e:
            raise exceptions.ImageUnavailable("glance", _reason(e)) from e

    # -- snapshots ------------------------------------------------------------------
    def create(self, properties: dict[str, Any]) -> dict[str, Any]:
        name = str(properties.get("name") or "")
        resp = self._request(name, "POST", "/v2/images", json=properties)
        return self._check(name, resp, ok=(201,)).json()

    def upload(self, image_id: str, chunks: Iterable[bytes]) -> None:
        """PUT the data in chunks (HTTP chunked encoding: the length is
        not known before the end)."""
        resp = self._request(image_id, "PUT", f"/v2/images/{image_id}/file", data=chunks,
                             headers={"Content-Type": "application/octet-stream"})
        self._check(image_id, resp, ok=(204,))

    def delete(self, image_id: str) -> bool:
        """Delete an image; False if that did not work (gone already counts
        as done)."""
        try:
            resp = self._request(image_id, "DELETE", f"/v2/images/{image_id}")
        except exceptions.ImageUnavailable as e:
            LOG.warning("Could not delete image %s: %s", image_id, e)
            return False
        return resp.status_code in (204, 404)


def _reason(e: BaseException) -> str:
    return f"{e.__class__.__name__}: {e}"[:300]
