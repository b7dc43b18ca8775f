"""Reading an upload's body as xapi's HTTP handlers do: by Content-Length or
HTTP chunks, in bounded pieces, with a limit; and reading what a refused
upload still sends (bounded) so the client sees the answer, not a broken
pipe."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from xapisim.handlers.http_task import connection

CHUNK = 1024 * 1024
# A refused upload's body is read and thrown away up to this much, so the
# client sees the answer instead of a broken pipe.
DRAIN_LIMIT = 64 * 1024 * 1024


class Truncated(Exception):
    """The body ended before the announced length (or mid-chunk)."""


class TooLarge(Exception):
    def __init__(self, size: int):
        super().__init__(size)
        self.size = size


def body_chunks(req, limit: int) -> Iterator[bytes]:
    """The request body, in pieces; raises TooLarge past ``limit`` bytes,
    Truncated when the connection ends early."""
    if "chunked" in req.headers.get("Transfer-Encoding", "").lower():
        yield from _chunked(req.rfile, limit)
        return
    length = req.content_length
    remaining = length or 0
    while remaining > 0:
        try:
            data = req.rfile.read(min(CHUNK, remaining))
        except (TimeoutError, OSError) as e:
            raise Truncated(str(e)) from None
        if not data:
            raise Truncated(f"received {length - remaining} of {length} bytes")
        remaining -= len(data)
        yield data


def _chunked(rfile: BinaryIO, limit: int) -> Iterator[bytes]:
    total = 0
    while True:
        try:
            line = rfile.readline(1024)
        except (TimeoutError, OSError) as e:
            raise Truncated(str(e)) from None
        if not line.endswith(b"\n"):
            raise Truncated("body ended inside a chunk header")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise Truncated(f"bad chunk header {line[:40]!r}") from None
        if size == 0:
            # trailers up to the empty line
            while True:
                line = rfile.readline(8192)
                if not line.endswith(b"\n"):
                    raise Truncated("body ended inside the trailers")
                if line in (b"\r\n", b"\n"):
                    return
        total += size
        if total > limit:
            # Read what the client still sends (bounded) before the
            # connection closes, so it sees the answer, not a broken pipe.
            _discard_chunks(rfile, size, DRAIN_LIMIT)
            raise TooLarge(total)
        while size > 0:
            try:
                data = rfile.read(min(CHUNK, size))
            except (TimeoutError, OSError) as e:
                raise Truncated(str(e)) from None
            if not data:
                raise Truncated("body ended inside a chunk")
            size -= len(data)
            yield data
        if rfile.readline(8) not in (b"\r\n", b"\n"):
            raise Truncated("chunk not followed by CRLF")


def _discard_chunks(rfile: BinaryIO, size: int, budget: int) -> None:
    """Skip the rest of a chunked body: ``size`` bytes left of the current
    chunk, then whole chunks, reading at most ``budget`` bytes."""
    try:
        while budget > 0:
            while size > 0 and budget > 0:
                data = rfile.read(min(CHUNK, size, budget))
                if not data:
                    return
                size -= len(data)
                budget -= len(data)
            rfile.readline(8)  # the CRLF after the chunk
            line = rfile.readline(1024)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                return
    except (OSError, ValueError):
        return


def drain(req) -> None:
    """Read (and drop) what the client still sends, briefly."""
    if "chunked" in req.headers.get("Transfer-Encoding", "").lower():
        return
    remaining = min(req.content_length or 0, DRAIN_LIMIT)
    sock = connection(req)
    try:
        sock.settimeout(2.0)
        while remaining > 0:
            data = req.rfile.read(min(CHUNK, remaining))
            if not data:
                break
            remaining -= len(data)
    except OSError:
        pass


# -- shared lookups ----------------------------------------------------------------


