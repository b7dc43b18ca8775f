"""The demo's image part: an image served over in-process HTTP, a build
from it (downloaded, verified and imported into a cached base VDI), and a
second build of the same image that is cloned from the cache and downloads
nothing. Used by compute_agent.demo; not a production module."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

MiB = 1024 * 1024
IMAGE_SIZE = 16 * MiB


class ImageServer:
    """One raw disk image at ``url``, with Content-Length and Content-MD5;
    ``downloads`` counts the GETs of its data."""

    def __init__(self, size: int = IMAGE_SIZE):
        # A boot sector's worth of zeros, then data: a stand-in for a disk.
        self.data = bytes(512) + os.urandom(size - 512)
        self.md5 = hashlib.md5(self.data).hexdigest()
        self.downloads = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _head(self) -> bool:
                if self.path != "/demo-disk.img":
                    self.send_error(404)
                    return False
                self.send_response(200)
                self.send_header("Content-Length", str(len(server.data)))
                self.send_header("Content-MD5", server.md5)
                self.end_headers()
                return True

            def do_HEAD(self) -> None:  # noqa: N802
                self._head()

            def do_GET(self) -> None:  # noqa: N802
                if self._head():
                    server.downloads += 1
                    view = memoryview(server.data)
                    for start in range(0, len(view), MiB):
                        self.wfile.write(view[start:start + MiB])

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/demo-disk.img"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> ImageServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def image_builds(api: Any, host: str, printer: Any,
                 settle: Callable[[list[str], dict[str, str]], dict[str, dict]],
                 names: dict[str, str]) -> tuple[bool, list[str]]:
    """Build demo-img-1, then demo-img-2 from the same image; returns
    (the second downloaded nothing, their uuids)."""
    server = ImageServer().start()
    try:
        printer.note(f"image: {server.url} ({len(server.data) // MiB} MiB raw, "
                     f"md5 {server.md5})")
        uuids = []
        for i in (1, 2):
            body = {"uuid": str(uuidlib.uuid4()), "name": f"demo-img-{i}",
                    "flavor": {"vcpus": 1, "memory_mb": 512, "root_gb": 1},
                    "image": {"id": None, "url": server.url, "disk_format": "raw"},
                    "networks": [], "metadata": {"purpose": "demo"}}
            names[body["uuid"]] = body["name"]
            before = server.downloads
            started = time.monotonic()
            api.build_instance(host, body)
            settle([body["uuid"]], {body["uuid"]: "active"})
            printer.note(f"demo-img-{i} active in {time.monotonic() - started:.1f} s; "
                         f"image downloads during this build: {server.downloads - before}")
            uuids.append(body["uuid"])
        cached = server.downloads == 1
        printer.note("second build cloned the cached base VDI: nothing downloaded"
                     if cached else "second build downloaded the image again?!")
        return cached, uuids
    finally:
        server.stop()
