"""Pure logic of the image sources: the verified stream, VHD sizes, the
digest choice, and the snapshot request's image fields."""

from __future__ import annotations

import hashlib
import struct

import pytest

from compute_agent import exceptions
from compute_agent.compute.snapshots import image_properties
from compute_agent.image import vhd_footer
from compute_agent.image.meta import ImageMeta, pick_hash
from compute_agent.image.verify import VerifiedStream

DATA = [b"a" * 10, b"b" * 10, b"c" * 5]
SHA = hashlib.sha256(b"".join(DATA)).hexdigest()


def test_verified_stream_passes_good_data_and_records_the_digest():
    s = VerifiedStream("img", DATA, 25, "sha256", SHA)
    assert list(s) == DATA and s.digest == SHA and s.closed


def test_mismatch_is_raised_before_the_last_chunk_is_delivered():
    got = []
    with pytest.raises(exceptions.ImageChecksumMismatch) as e:
        for chunk in VerifiedStream("img", DATA, 25, "sha256", "0" * 64):
            got.append(chunk)
    assert got == DATA[:-1]
    assert e.value.params == ["img", "sha256:" + "0" * 64, "sha256:" + SHA]


def test_short_and_long_data_are_errors():
    with pytest.raises(exceptions.ImageUnavailable) as e:
        list(VerifiedStream("img", DATA, 30))
    assert e.value.params == ["img", "short read: 25 of 30 bytes"]
    with pytest.raises(exceptions.ImageChecksumMismatch):
        list(VerifiedStream("img", DATA, 20))


def test_a_transport_error_is_image_unavailable_and_closes():
    closed = []

    def broken():
        yield b"x"
        raise ConnectionResetError("peer reset")

    s = VerifiedStream("img", broken(), 10, close=lambda: closed.append(1))
    with pytest.raises(exceptions.ImageUnavailable) as e:
        list(s)
    assert "ConnectionResetError" in e.value.params[1] and closed == [1]


def test_peek_does_not_consume():
    s = VerifiedStream("img", DATA, 25, "sha256", SHA)
    assert s.peek(12) == b"a" * 10 + b"bb"
    assert b"".join(s) == b"".join(DATA)


def _footer(size: int, disk_type: int) -> bytes:
    f = bytearray(512)
    f[0:8] = b"conectix"
    struct.pack_into(">Q", f, 48, size)
    struct.pack_into(">I", f, 60, disk_type)
    return bytes(f)


def test_vhd_virtual_size():
    assert vhd_footer.virtual_size(_footer(5 * 2**30, 3), 10_000) == 5 * 2**30
    assert vhd_footer.virtual_size(b"\0" * 512, 1024 + 512) == 1024  # fixed
    with pytest.raises(vhd_footer.NotAVHD):
        vhd_footer.virtual_size(_footer(2**30, 4), 10_000)  # differencing
    with pytest.raises(vhd_footer.NotAVHD):
        vhd_footer.virtual_size(b"\0" * 512, 1000)


def test_pick_hash_prefers_the_multihash_and_falls_back_to_md5():
    assert pick_hash("sha512", "ABC", "d41d") == ("sha512", "abc")
    assert pick_hash("whirlpool-9000", "abc", "D41D") == ("md5", "d41d")
    assert pick_hash(None, None, None) == ("", "")


def test_only_raw_and_vhd_boot():
    ImageMeta("i", "raw", 1).require_bootable()
    ImageMeta("i", "vhd", 1).require_bootable()
    with pytest.raises(exceptions.ImageFormatUnsupported) as e:
        ImageMeta("i", "qcow2", 1).require_bootable()
    assert e.value.params == ["i", "qcow2"]


def test_snapshot_image_properties():
    props = image_properties({"name": "n", "os_distro": "debian"}, "u")
    assert props == {"name": "n", "os_distro": "debian", "disk_format": "vhd",
                     "container_format": "bare", "instance_uuid": "u",
                     "image_type": "snapshot"}
    for bad, field in (("x", "image"), ({}, "image.name"), ({"name": ""}, "image.name"),
                       ({"name": "n", "status": "active"}, "image.status"),
                       ({"name": "n", "k": 5}, "image.k")):
        with pytest.raises(exceptions.InvalidInput) as e:
            image_properties(bad, "u")
        assert e.value.params[0] == field


def test_read_ahead_keeps_order_and_passes_the_error_after_the_pieces_before_it():
    from compute_agent.image.verify import read_ahead

    def source():
        yield b"1"
        yield b"2"
        raise exceptions.ImageUnavailable("img", "cut")

    got = []
    with pytest.raises(exceptions.ImageUnavailable):
        for piece in read_ahead(source(), depth=1):
            got.append(piece)
    assert got == [b"1", b"2"]
    assert list(read_ahead(iter([b"a", b"b", b"c"]))) == [b"a", b"b", b"c"]


def test_read_ahead_stops_its_reader_when_the_consumer_stops():
    from compute_agent.image.verify import read_ahead

    s = VerifiedStream("img", iter([b"x"] * 100), 100)
    it = read_ahead(s, depth=2)
    assert next(it) == b"x"
    it.close()
    assert s.closed  # the reader closed the source


def test_hash_thread_digest_is_the_digest_of_the_pieces_in_order():
    from compute_agent.image.verify import HashThread

    pieces = [bytes([i]) * (1000 + i) for i in range(50)]
    h = HashThread("sha512", depth=1)
    for piece in pieces:
        h.update(piece)
    assert h.hexdigest() == hashlib.sha512(b"".join(pieces)).hexdigest()
    assert HashThread("sha256").hexdigest() == hashlib.sha256().hexdigest()  # no data


def _hash_threads() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name == "image-hash"]


def test_a_stream_closed_early_ends_its_hash_thread():
    import time

    before = len(_hash_threads())
    s = VerifiedStream("img", iter([b"x" * 4096] * 10), 40960, "sha256", "0" * 64)
    it = iter(s)
    assert next(it) == b"x" * 4096
    assert len(_hash_threads()) == before + 1
    it.close()
    assert s.closed
    deadline = time.monotonic() + 5
    while len(_hash_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(_hash_threads()) == before


def test_a_hash_thread_dropped_unfinished_ends_its_thread():
    import gc
    import time

    from compute_agent.image.verify import HashThread

    before = len(_hash_threads())
    h = HashThread("sha256")
    h.update(b"x" * 4096)
    assert len(_hash_threads()) == before + 1
    del h
    gc.collect()
    deadline = time.monotonic() + 5
    while len(_hash_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(_hash_threads()) == before
