"""Image bytes into a storage volume (volume_upload.py) on real libvirt
test:/// nodes. libvirt's test driver does not implement
virStorageVolUpload (VIR_ERR_NO_SUPPORT, checked here), so the upload goes
the other real way: the volume's file, in a pool whose target is a real
directory of the test's. The bytes are read back from that file."""

from __future__ import annotations

import hashlib
import os

import libvirt
import pytest

from compute_agent import exceptions
from compute_agent.driver.libvirt import volume_upload
from compute_agent.driver.libvirt.storage import volume_xml

MiB = 1024**2


def chunks(total: int, size: int = 64 * 1024, seed: bytes = b"image"):
    """``total`` deterministic bytes, ``size`` at a time (never all at once)."""
    block = hashlib.sha256(seed).digest() * (size // 32)
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield block[:n]
        sent += n


@pytest.fixture
def pool(tmp_path):
    """A dir pool whose target is a real directory."""
    target = tmp_path / "pool"
    target.mkdir()
    node = tmp_path / "node.xml"
    node.write_text(
        "<node><pool type='dir'><name>p</name><capacity unit='GiB'>10</capacity>"
        "<allocation>0</allocation><available unit='GiB'>10</available>"
        f"<target><path>{target}</path></target></pool></node>")
    conn = libvirt.open(f"test://{node}")
    yield conn, conn.storagePoolLookupByName("p")
    conn.close()


def test_the_test_driver_has_no_volume_upload(pool):
    conn, p = pool
    vol = p.createXML(volume_xml("probe", MiB, "raw"), 0)
    stream = conn.newStream(0)
    with pytest.raises(libvirt.libvirtError) as err:
        vol.upload(stream, 0, MiB, 0)
    assert err.value.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT
    stream.abort()


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_an_image_streams_into_the_volumes_file(pool, fmt):
    conn, p = pool
    vol = p.createXML(volume_xml(f"root-{fmt}", 8 * MiB, fmt), 0)
    total = 3 * MiB + 12345
    done = volume_upload.upload(conn, vol, chunks(total), total)
    assert done == volume_upload.Uploaded(total, "local")
    data = open(vol.path(), "rb").read()  # noqa: SIM115 - read back whole: 3 MiB
    assert len(data) == total
    assert hashlib.sha256(data).digest() == hashlib.sha256(b"".join(chunks(total))).digest()


def test_a_source_failing_midway_stops_the_upload(pool):
    conn, p = pool
    vol = p.createXML(volume_xml("broken", 8 * MiB, "raw"), 0)

    class SourceGone(Exception):
        pass

    def failing():
        yield from chunks(MiB)
        raise SourceGone  # e.g. the source's checksum did not match

    with pytest.raises(SourceGone):
        volume_upload.upload(conn, vol, failing(), 2 * MiB)
    assert os.path.getsize(vol.path()) == MiB  # what arrived before the failure


def test_a_volume_without_a_local_path_is_a_structured_error():
    conn = libvirt.open("test:///default")  # its pool's target directory does not exist
    try:
        p = conn.storagePoolLookupByName("default-pool")
        vol = p.createXML(volume_xml("nowhere", MiB, "raw"), 0)
        try:
            with pytest.raises(exceptions.HypervisorError) as err:
                volume_upload.upload(conn, vol, chunks(MiB), MiB)
            assert err.value.code == "VOLUME_WRITE_FAILED"
            assert vol.path() in err.value.params[0]
        finally:
            vol.delete(0)
    finally:
        conn.close()
