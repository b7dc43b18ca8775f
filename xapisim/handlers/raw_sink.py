"""Writing an import's raw data into the VDI's file the way xapi's
``vhd-tool serve --direct`` writes it into the attached disk: the body is
read into reused, page-aligned block buffers (2 MiB, as vhd-tool's
``serve_raw_to_raw``) and each block goes to its offset with ``O_DIRECT``,
past dom0's page cache.

Why the simulator does it too: it stands in for dom0, which has CPUs and
disks of its own, yet it runs on the machine where the agent is measured
against it. Written through the page cache, 1 GiB of import cost this
simulator more CPU than anything else on the path (1.1-1.6 CPU-seconds on
the 2-core test machine, where fresh page-cache pages are slow to come by:
more than the agent's sha512 of the same bytes); from reused buffers with
O_DIRECT it costs little beyond reading the socket. Two buffers, and the
writes in a thread of their own, so the socket is read while the previous
block goes to disk: the simulator takes data faster than one client can
send it and is not what a measurement of the agent measures.

Where O_DIRECT is not available (tmpfs) or a write is not aligned (the last
block of an odd length, HTTP-chunked pieces), the writes go through the
page cache: same bytes, same file. Blocks of zeros are not written (the
file stays sparse; they read as zeros anyway).
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from xapisim.handlers.http_body import Truncated, body_chunks

BLOCK = 2 * 1024 * 1024
# O_DIRECT wants offsets, lengths and memory aligned to the device's
# logical block; 4 KiB covers every device (512 would do for most).
ALIGN = 4096
_ZERO = bytes(BLOCK)
_SECTOR = 512
_O_DIRECT = getattr(os, "O_DIRECT", 0)


class RawSink:
    """The target file of an import (created, ``size`` long, sparse);
    ``receive`` writes the request body into it. A context manager."""

    def __init__(self, path: os.PathLike | str, size: int):
        flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        self.direct = bool(_O_DIRECT)
        try:
            self.fd = os.open(path, flags | _O_DIRECT, 0o600)
        except OSError as e:
            if not _O_DIRECT or e.errno != errno.EINVAL:
                raise
            self.fd = os.open(path, flags, 0o600)
            self.direct = False
        self._buffers: list[mmap.mmap] = []
        self._writer: ThreadPoolExecutor | None = None
        try:
            os.ftruncate(self.fd, size)
            # page-aligned, as O_DIRECT needs
            self._buffers = [mmap.mmap(-1, BLOCK) for _ in range(2)]
        except BaseException:
            self.close()
            raise
        self._views = [memoryview(b) for b in self._buffers]
        self._pending: list[Future | None] = [None, None]
        self._turn = 0  # the buffer the next piece is read into

    def __enter__(self) -> RawSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd < 0:
            return
        if self._writer is not None:
            self._writer.shutdown(wait=True)  # no write may outlive the buffers
        for view in getattr(self, "_views", []):
            view.release()
        for buf in self._buffers:
            buf.close()
        os.close(self.fd)
        self.fd = -1

    # -- the body --------------------------------------------------------------------
    def receive(self, req, limit: int, on_block: Callable[[int], None]) -> int:
        """Read the body (by Content-Length, or HTTP chunks, which raise
        TooLarge past ``limit``) and write it; ``on_block(bytes so far)``
        after each piece. Returns once every write is done; Truncated when
        the body ends early."""
        done = 0
        for n in self._pieces(req, limit):
            self._submit(self._turn, done, n)
            done += n
            on_block(done)
            self._turn ^= 1
        for i in (0, 1):
            self._wait(i)
        return done

    def _pieces(self, req, limit: int) -> Iterator[int]:
        """Yield the length of each next piece of the body, read into the
        buffer of the current turn once that buffer's last write is done."""
        if "chunked" in req.headers.get("Transfer-Encoding", "").lower():
            for data in body_chunks(req, limit):
                self._wait(self._turn)
                self._views[self._turn][:len(data)] = data
                yield len(data)
            return
        length = req.content_length or 0
        received = 0
        while received < length:
            self._wait(self._turn)
            view = self._views[self._turn]
            n = min(BLOCK, length - received)
            got = 0
            while got < n:
                try:
                    k = req.rfile.readinto(view[got:n])
                except (TimeoutError, OSError) as e:
                    raise Truncated(str(e)) from None
                if not k:
                    raise Truncated(f"received {received + got} of {length} bytes")
                got += k
            received += n
            yield n

    # -- writes ----------------------------------------------------------------------
    def _submit(self, i: int, offset: int, n: int) -> None:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="xapisim-import-write")
        self._pending[i] = self._writer.submit(self._write, i, offset, n)

    def _wait(self, i: int) -> None:
        """Wait for the write from buffer ``i``; its error, if any."""
        pending, self._pending[i] = self._pending[i], None
        if pending is not None:
            pending.result()

    def _write(self, i: int, offset: int, n: int) -> None:
        buf = self._buffers[i]
        if _all_zero(buf, n):
            return
        if self.direct and (offset % ALIGN or n % ALIGN):
            self._buffered()
        data = self._views[i][:n]
        done = 0
        while done < n:
            try:
                done += os.pwrite(self.fd, data[done:], offset + done)
            except OSError as e:
                if not self.direct or e.errno != errno.EINVAL:
                    raise
                self._buffered()  # the device wants another alignment

    def _buffered(self) -> None:
        flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, flags & ~_O_DIRECT)
        self.direct = False


def _all_zero(buf: mmap.mmap, n: int) -> bool:
    # The first sector settles nearly every block of real data; only a
    # block that starts with one of zeros is compared whole (mmap slices
    # are bytes, compared with memcmp).
    head = min(n, _SECTOR)
    if buf[:head] != _ZERO[:head]:
        return False
    return buf[:n] == (_ZERO if n == BLOCK else _ZERO[:n])
