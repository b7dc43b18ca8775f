"""A directory served over real HTTP from the test process, for images
the agent fetches by URL (Content-Length on every answer, as the HTTP image
source requires)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

CHUNK = 64 * 1024


class _Quiet(http.server.SimpleHTTPRequestHandler):
    pause = 0.0  # seconds after each CHUNK sent

    def log_message(self, *args):  # no access log on the test's stderr
        pass

    def copyfile(self, source, outputfile):
        try:
            while data := source.read(CHUNK):
                outputfile.write(data)
                if self.pause:
                    outputfile.flush()
                    time.sleep(self.pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away mid-download (a killed agent)


@contextlib.contextmanager
def http_server(root: Path, pause: float = 0.0) -> Iterator[str]:
    """Files under ``root`` at the yielded base URL; ``pause`` seconds
    after every 64 KiB sent (a slow source, for builds caught mid-import)."""
    handler = functools.partial(type("Handler", (_Quiet,), {"pause": pause}),
                                directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="image-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
