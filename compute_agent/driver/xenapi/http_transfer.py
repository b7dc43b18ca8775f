"""Moving disk data through xapi's HTTP handlers, streamed.

``put_stream`` sends chunks to ``PUT /import_raw_vdi`` with a known
Content-Length (xapi refuses chunked uploads); ``get_stream`` yields the
body of ``GET /export_raw_vdi`` in bounded pieces. Both name a session
and a task in the query: the transfer's outcome is on that task, which the
caller follows like any other (tasks.py / transfer_tasks.py). TLS as for
the XenAPI itself (TLSSettings).
"""

from __future__ import annotations

import http.client
import logging
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.xenapi.transport import TLSSettings

LOG = logging.getLogger(__name__)

# Between two reads or writes of a transfer.
IO_TIMEOUT = 120.0
READ_CHUNK = 1024 * 1024


def _connection(base_url: str, tls: TLSSettings, timeout: float) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme == "https":
        return http.client.HTTPSConnection(parts.hostname or "", parts.port or 443,
                                           timeout=timeout, context=tls.context())
    return http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)


def _target(path: str, query: dict[str, str]) -> str:
    return f"{path}?{urllib.parse.urlencode(query)}"


def put_stream(base_url: str, tls: TLSSettings, path: str, query: dict[str, str],
               chunks: Iterable[bytes], length: int, timeout: float = IO_TIMEOUT) -> int:
    """PUT ``length`` bytes from ``chunks``; returns the HTTP status. An
    error raised by ``chunks`` (the image source) propagates after the
    connection is closed abruptly, so xapi sees a truncated upload."""
    conn = _connection(base_url, tls, timeout)
    try:
        conn.putrequest("PUT", _target(path, query), skip_accept_encoding=True)
        conn.putheader("Content-Length", str(length))
        conn.putheader("Content-Type", "application/octet-stream")
        conn.endheaders()
        sent_ok = True
        try:
            for chunk in chunks:
                conn.send(chunk)
        except OSError as e:
            # xapi answered early and closed (a refused upload): its status
            # and the task tell why
            LOG.debug("upload to %s stopped: %s", path, e)
            sent_ok = False
        try:
            resp = conn.getresponse()
            resp.read()
            return resp.status
        except (OSError, http.client.HTTPException) as e:
            if sent_ok:
                raise exceptions.HypervisorUnavailable(base_url, f"upload: {e}") from None
            return 0
    finally:
        conn.close()


def get_stream(base_url: str, tls: TLSSettings, path: str, query: dict[str, str],
               timeout: float = IO_TIMEOUT, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
    """The body of a GET, in pieces of at most ``chunk_size``; raises
    HypervisorUnavailable on a transport error or a non-200 answer."""
    conn = _connection(base_url, tls, timeout)
    try:
        try:
            conn.request("GET", _target(path, query))
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            raise exceptions.HypervisorUnavailable(base_url, f"download: {e}") from None
        if resp.status != 200:
            body: Any = resp.read(2000)
            raise exceptions.HypervisorUnavailable(
                base_url, f"download: HTTP {resp.status} {body[:200]!r}")
        while True:
            try:
                data = resp.read(chunk_size)
            except (OSError, http.client.HTTPException) as e:
                raise exceptions.HypervisorUnavailable(base_url, f"download: {e}") from None
            if not data:
                return
            yield data
    finally:
        conn.close()
