"""Image sources against the real Glance (gunicorn, SQLite, file store) and
an in-process HTTP server: metadata, streamed and verified downloads, and
the structured errors of every way a download can go wrong."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import threading
import uuid as uuidlib
from collections.abc import Iterator

import pytest
from oslo_config import cfg

from compute_agent import exceptions
from compute_agent.conf import glance as glance_opts
from compute_agent.image.glance import GlanceClient
from compute_agent.image.http_source import HTTPSource
from compute_agent.image.service import ImageService
from tests.functional.glance_fixture import GlanceProcess
from tests.functional.harness import free_port

CHUNK = 64 * 1024


def glance_conf(url: str) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    glance_opts.register_opts(conf)
    conf([], project="image-test", default_config_files=[])
    conf.set_override("auth_type", "none", group="glance")
    conf.set_override("endpoint_override", url, group="glance")
    conf.set_override("chunk_size_kb", CHUNK // 1024, group="glance")
    return conf


@pytest.fixture
def service(glance: GlanceProcess) -> ImageService:
    conf = glance_conf(glance.url)
    return ImageService(GlanceClient.from_conf(conf), HTTPSource(CHUNK))


def test_glance_raw_image_streams_verified_bytes(glance, service):
    data = os.urandom(3 * CHUNK + 123)
    image = glance.create_image(data)
    meta = service.meta({"id": image["id"], "url": None, "disk_format": None})
    assert (meta.size, meta.disk_format, meta.hash_algo) == (len(data), "raw", "sha512")
    assert meta.hash_value == hashlib.sha512(data).hexdigest()
    before = glance.downloads(image["id"])
    stream = service.download(meta)
    chunks = list(stream)
    assert b"".join(chunks) == data
    assert max(len(c) for c in chunks) <= CHUNK  # bounded pieces
    assert stream.digest == meta.hash_value
    assert glance.downloads(image["id"]) == before + 1


def test_md5_checksum_is_verified_when_the_multihash_is_unknown(glance):
    data = os.urandom(CHUNK)
    image = glance.create_image(data)
    client = GlanceClient.from_conf(glance_conf(glance.url))
    rec = client.show(image["id"])
    from compute_agent.image.meta import pick_hash
    assert pick_hash("no-such-algo", rec["os_hash_value"], rec["checksum"]) == (
        "md5", hashlib.md5(data).hexdigest())


def test_missing_image_is_image_not_found(service):
    missing = str(uuidlib.uuid4())
    with pytest.raises(exceptions.ImageNotFound) as e:
        service.meta({"id": missing})
    assert e.value.params == [missing]


def test_unsupported_format_is_refused_before_any_download(glance, service):
    image = glance.create_image(bytes(4096), disk_format="iso")
    with pytest.raises(exceptions.ImageFormatUnsupported) as e:
        service.meta({"id": image["id"]})
    assert e.value.params == [image["id"], "iso"]
    assert glance.downloads(image["id"]) == 0


def test_corrupted_data_is_a_checksum_mismatch_and_the_last_chunk_is_withheld(glance, service):
    data = os.urandom(4 * CHUNK)
    image = glance.create_image(data)
    meta = service.meta({"id": image["id"]})
    glance.corrupt(image["id"])
    delivered = 0
    with pytest.raises(exceptions.ImageChecksumMismatch) as e:
        for chunk in service.download(meta):
            delivered += len(chunk)
    bad = bytes([data[0] ^ 0xFF]) + data[1:]
    assert e.value.params == [image["id"], f"sha512:{hashlib.sha512(data).hexdigest()}",
                              f"sha512:{hashlib.sha512(bad).hexdigest()}"]
    # a consumer forwarding chunks never sent the whole (wrong) image
    assert delivered < len(data)


def test_glance_down_is_image_unavailable(glance, service):
    image = glance.create_image(os.urandom(CHUNK))
    glance.stop()
    try:
        with pytest.raises(exceptions.ImageUnavailable) as e:
            service.meta({"id": image["id"]})
        assert e.value.params[0] == image["id"]
        assert "Connect" in e.value.params[1]
    finally:
        glance.restart()


def test_glance_killed_mid_stream_is_image_unavailable(glance, service):
    data = os.urandom(96 * 1024 * 1024)  # far more than socket buffers hold
    image = glance.create_image(data)
    meta = service.meta({"id": image["id"]})
    stream = service.download(meta)
    got = 0
    try:
        with pytest.raises(exceptions.ImageUnavailable) as e:
            for chunk in stream:
                if got == 0:
                    glance.kill()
                got += len(chunk)
        assert got < len(data)
        assert e.value.params[0] == image["id"]
    finally:
        glance.restart()


# -- plain HTTP -----------------------------------------------------------------------


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, tuple[bytes, dict[str, str]]] = {}

    def _answer(self, body: bool) -> None:
        entry = self.files.get(self.path)
        if entry is None:
            self.send_error(404)
            return
        data, headers = entry
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(False)

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def http_files() -> Iterator[tuple[str, dict]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Files)
    files: dict[str, tuple[bytes, dict[str, str]]] = {}
    _Files.files = files
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", files
    finally:
        server.shutdown()
        server.server_close()


def test_http_url_streams_and_verifies_content_md5():
    source = ImageService(None, HTTPSource(CHUNK))
    data = os.urandom(2 * CHUNK + 7)
    with http_files() as (base, files):
        files["/good.img"] = (data, {"Content-MD5": hashlib.md5(data).hexdigest()})
        files["/bad.vhd"] = (data, {"Content-MD5": hashlib.md5(b"other").hexdigest()})
        meta = service_meta = source.meta({"url": f"{base}/good.img"})
        assert (service_meta.size, service_meta.disk_format, meta.hash_algo) == (
            len(data), "raw", "md5")
        assert b"".join(source.download(meta)) == data
        bad = source.meta({"url": f"{base}/bad.vhd", "disk_format": "vhd"})
        with pytest.raises(exceptions.ImageChecksumMismatch):
            b"".join(source.download(bad))
        with pytest.raises(exceptions.ImageNotFound):
            source.meta({"url": f"{base}/missing.img"})
        with pytest.raises(exceptions.ImageFormatUnsupported) as e:
            source.meta({"url": f"{base}/good.img", "disk_format": "iso"})
        assert e.value.params == [f"{base}/good.img", "iso"]
    with pytest.raises(exceptions.ImageUnavailable):
        source.meta({"url": f"http://127.0.0.1:{free_port()}/x.img"})
