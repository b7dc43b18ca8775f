"""An image's bytes as a verified stream.

:class:`VerifiedStream` wraps the source's chunk iterator: it counts and
hashes every byte, and holds back the last chunk until the end of the data
checked out, so a consumer that forwards chunks as they come (into dom0, to
Glance) never delivers a complete but wrong image: a mismatch is raised
before the final bytes go out, and the receiver sees a truncated upload.
The digest is computed by a thread of its own (:class:`HashThread`), beside
the reading and the sending of the bytes instead of between them.
Memory: the chunk in hand, the one held back, and at most
``HASH_QUEUE`` chunks waiting for the hash.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from compute_agent import exceptions

# Exceptions of the transport (requests, urllib3, sockets) that mean the
# source went away; mapped to IMAGE_UNAVAILABLE by the source's classifier.
Classifier = Callable[[BaseException], exceptions.ComputeAgentError | None]

# Chunks that may wait for the hash thread before the reader waits for it.
HASH_QUEUE = 2
_STOP = object()


class HashThread:
    """A hashlib object fed through a bounded queue to a thread of its own.

    sha512 is the costliest step of an image's way (about 1 GB/s on one
    core, the same order as the whole plain copy it is measured against).
    Computed where the chunks are read, it adds to the time of every read;
    hashlib releases the GIL on buffers of more than 2 KiB, so in a thread
    of its own it runs on another core while the next chunk is received
    and the previous one sent, and the stream goes at the speed of the
    slowest step instead of the sum of all. ``update`` waits when
    ``depth`` chunks are queued (the hash is the slowest step, so it paces
    the reader and memory stays bounded); ``hexdigest`` waits for the end.
    The thread ends with ``hexdigest``, ``stop``, or when this object is
    dropped without either.
    """

    def __init__(self, algo: str, depth: int = HASH_QUEUE):
        self._state = _HashState(hashlib.new(algo), queue.Queue(maxsize=depth))
        self._thread: threading.Thread | None = None

    def update(self, data: bytes) -> None:
        state = self._state
        if state.stopped:
            return
        if self._thread is None:
            # the thread knows only the state, so dropping this object ends it
            self._thread = threading.Thread(target=_hash_loop, args=(state,),
                                            name="image-hash", daemon=True)
            self._thread.start()
            weakref.finalize(self, state.queue.put, _STOP)
        state.queue.put(data)

    def hexdigest(self) -> str:
        state = self._state
        if self._thread is not None:
            state.queue.put(_STOP)
            self._thread.join()
            self._thread = None
        if state.error is not None:
            raise state.error
        return state.hash.hexdigest()

    def stop(self) -> None:
        """Abandon the hash (the stream closed early): the thread ends
        without hashing what is still queued; later updates are ignored."""
        self._state.stopped = True
        if self._thread is not None:
            self._state.queue.put(_STOP)
            self._thread = None


class _HashState:
    def __init__(self, hash_obj: Any, pieces: queue.Queue[Any]):
        self.hash = hash_obj
        self.queue = pieces
        self.stopped = False
        self.error: BaseException | None = None


def _hash_loop(state: _HashState) -> None:
    while True:
        data = state.queue.get()
        if data is _STOP:
            return
        if state.stopped or state.error is not None:
            continue  # drained, not hashed
        try:
            state.hash.update(data)
        except BaseException as e:  # handed to hexdigest
            state.error = e


class VerifiedStream:
    def __init__(self, image_id: str, chunks: Iterable[bytes], size: int | None,
                 hash_algo: str = "", hash_value: str = "",
                 classify: Classifier | None = None,
                 close: Callable[[], None] | None = None):
        self.image_id = image_id
        self.size = size
        self.hash_algo = hash_algo
        self.hash_value = hash_value
        self._hash = HashThread(hash_algo) if hash_algo else None
        self._chunks = iter(chunks)
        self._classify = classify
        self._close = close
        self._pushed: list[bytes] = []
        self.bytes_read = 0
        self.digest = ""  # hex digest once the stream has ended and verified
        self.closed = False

    # -- reading ------------------------------------------------------------------
    def _next_raw(self) -> bytes | None:
        if self._pushed:
            return self._pushed.pop(0)
        return self._read_source()

    def _read_source(self) -> bytes | None:
        try:
            while True:
                data = next(self._chunks)
                if data:
                    break
        except StopIteration:
            return None
        except exceptions.ComputeAgentError:
            raise
        except Exception as e:
            err = self._classify(e) if self._classify else None
            if err is None:
                err = exceptions.ImageUnavailable(self.image_id, _reason(e))
            raise err from e
        self.bytes_read += len(data)
        if self._hash is not None:
            self._hash.update(data)
        if self.size is not None and self.bytes_read > self.size:
            raise exceptions.ImageChecksumMismatch(
                self.image_id, f"size:{self.size}", f"size:>{self.size}")
        return data

    def peek(self, n: int) -> bytes:
        """At least the first ``n`` bytes (fewer only if the data is
        shorter), without consuming them."""
        got = b"".join(self._pushed)
        while len(got) < n:
            data = self._read_source()
            if data is None:
                break
            self._pushed.append(data)
            got += data
        return got[:n]

    def __iter__(self) -> Iterator[bytes]:
        held = self._next_raw()
        try:
            while held is not None:
                nxt = self._next_raw()
                if nxt is None:
                    self._verify()
                yield held
                held = nxt
        finally:
            self.close()

    def _verify(self) -> None:
        if self.size is not None and self.bytes_read != self.size:
            raise exceptions.ImageUnavailable(
                self.image_id, f"short read: {self.bytes_read} of {self.size} bytes")
        if self._hash is not None:
            actual = self._hash.hexdigest()
            if actual != self.hash_value:
                raise exceptions.ImageChecksumMismatch(
                    self.image_id, f"{self.hash_algo}:{self.hash_value}",
                    f"{self.hash_algo}:{actual}")
            self.digest = actual

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._hash is not None:
            self._hash.stop()
        if self._close is not None:
            try:
                self._close()
            except Exception:  # closing a dead connection: nothing to add
                pass


def _reason(e: BaseException) -> str:
    text = str(e) or e.__class__.__name__
    return f"{e.__class__.__name__}: {text}"[:300]


_END = object()


def read_ahead(chunks: Iterable[bytes], depth: int = 2) -> Iterator[bytes]:
    """``chunks`` read by a thread of its own, at most ``depth`` pieces
    ahead of the consumer: the download (and its hashing) overlaps the
    upload instead of alternating with it. Memory: ``depth`` + 1 pieces.
    An error of the source reaches the consumer in order, after the pieces
    before it; a consumer that stops early stops the reader."""
    pieces: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                pieces.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    return
            put(_END)
        except BaseException as e:  # handed to the consumer
            put(e)
        finally:
            close = getattr(chunks, "close", None)
            if stop.is_set() and close is not None:
                close()

    thread = threading.Thread(target=reader, name="image-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = pieces.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(5.0)
