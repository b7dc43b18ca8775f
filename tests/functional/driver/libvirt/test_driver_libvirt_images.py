"""Booting from an image with the libvirt driver, in-process on a libvirt
``test:///<node file>`` whose storage pool's target is a real directory,
the images served by the image sources of compute_agent/image/: over real
HTTP by an in-process server, and by the real Glance. Images are real: raw
bytes, and qcow2 files made by ``qemu-img``, which also reads the root
volumes back.

libvirt's test driver answers VIR_ERR_NO_SUPPORT to virStorageVolUpload,
so the bytes go into the volume's file (volume_upload.py); the check is
the same either way: the volume holds the image.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from compute_agent import exceptions
from compute_agent.driver import power_state
from tests.functional.glance_fixture import glance  # noqa: F401  (a fixture)
from tests.functional.image_http import http_server
from tests.functional.libvirt_inprocess import instance, op

pytestmark = pytest.mark.timeout(60)

MiB = 1024**2
POOL = "images-pool"


def qemu_img(*args: str) -> str:
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True,
                          text=True, timeout=60).stdout


@pytest.fixture
def site(tmp_path):
    """A directory of images served over HTTP: raw bytes and the same
    content as qcow2, and a qcow2 image larger than a 1 GiB root disk."""
    root = tmp_path / "www"
    root.mkdir()
    block = hashlib.sha256(b"image").digest() * 2048  # 64 KiB, not all zeros
    raw = root / "disk.raw"
    raw.write_bytes(block * 48 + b"tail")  # 3 MiB + 4 bytes
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(root / "disk.qcow2"))
    qemu_img("create", "-f", "qcow2", str(root / "big.qcow2"), "2G")
    (root / "disk.vhd").write_bytes(b"conectix" + bytes(504))
    with http_server(root) as url:
        yield url, root


@pytest.fixture
def node(tmp_path) -> Path:
    target = tmp_path / "pool"
    target.mkdir()
    node = tmp_path / "node.xml"
    node.write_text(
        f"<node><pool type='dir'><name>{POOL}</name><capacity unit='GiB'>100</capacity>"
        "<allocation>0</allocation><available unit='GiB'>100</available>"
        f"<target><path>{target}</path></target></pool>"
        "<network><name>default</name><bridge name='virbr0'/></network></node>")
    return node


@pytest.fixture
def driver(make_driver, node):
    driver, _ = make_driver(connection_uri=f"test://{node}", storage_pool=POOL)
    return driver


def boot(driver, url: str, fmt: str | None, root_gb: int = 1) -> dict:
    inst = instance("from-image")
    inst["image"] = {"id": None, "url": url, "disk_format": fmt}
    inst["flavor"]["root_gb"] = root_gb
    return inst


def root_volume(driver, uuid: str) -> libvirt.virStorageVol:
    pool = driver.connection.get().storagePoolLookupByName(POOL)
    return pool.storageVolLookupByName(f"instance-{uuid}-root")


def volumes(driver) -> list[str]:
    pool = driver.connection.get().storagePoolLookupByName(POOL)
    return [v.name() for v in pool.listAllVolumes()]


def disk_driver_type(driver, uuid: str) -> str:
    dom = driver.connection.get().lookupByUUIDString(uuid)
    return ET.fromstring(dom.XMLDesc()).find("devices/disk/driver").get("type")


def test_a_raw_image_fills_the_start_of_its_root_volume(driver, site):
    url, root = site
    inst = boot(driver, f"{url}/disk.raw", "raw")
    info = driver.spawn(op(inst, "spawn"), inst)
    assert info.power_state == power_state.RUNNING
    vol = root_volume(driver, inst["uuid"])
    assert vol.info()[1] == 1024 * MiB  # root_gb, as libvirt records it
    image = (root / "disk.raw").read_bytes()
    with open(vol.path(), "rb") as f:
        assert f.read(len(image) + 1) == image
    assert disk_driver_type(driver, inst["uuid"]) == "raw"
    driver.destroy(op(inst, "destroy"), inst)
    assert volumes(driver) == []
    # A flavor without a root disk size: the image's size.
    inst = boot(driver, f"{url}/disk.raw", "raw", root_gb=0)
    driver.spawn(op(inst, "spawn"), inst)
    assert root_volume(driver, inst["uuid"]).info()[1] == len(image)
    driver.destroy(op(inst, "destroy"), inst)


def test_a_qcow2_image_becomes_a_qcow2_root_volume_with_its_content(driver, site):
    url, root = site
    inst = boot(driver, f"{url}/disk.qcow2", "qcow2")
    driver.spawn(op(inst, "spawn"), inst)
    vol = root_volume(driver, inst["uuid"])
    written = json.loads(qemu_img("info", "--output=json", vol.path()))
    assert written["format"] == "qcow2"
    # The test driver cannot resize volumes: the image's virtual size (the
    # raw file's, in whole 512-byte sectors) stays.
    assert written["virtual-size"] == -(-(root / "disk.raw").stat().st_size // 512) * 512
    qemu_img("compare", "-f", "raw", "-F", "qcow2", str(root / "disk.raw"), vol.path())
    assert disk_driver_type(driver, inst["uuid"]) == "qcow2"
    driver.destroy(op(inst, "destroy"), inst)


def test_images_that_cannot_boot_leave_nothing(driver, site):
    url, _ = site
    cases = [
        (f"{url}/big.qcow2", "qcow2", exceptions.FlavorDiskTooSmall,
         lambda e: e.params[1:] == [str(2 * 1024 * MiB), str(1024 * MiB)]),
        (f"{url}/disk.vhd", "vhd", exceptions.ImageFormatUnsupported,
         lambda e: e.params[1] == "vhd"),
        (f"{url}/disk.raw", "qcow2", exceptions.ImageUnavailable,
         lambda e: "qcow2" in e.params[1]),
        (f"{url}/missing.raw", "raw", exceptions.ImageNotFound, lambda e: True),
    ]
    for image_url, fmt, error, check in cases:
        inst = boot(driver, image_url, fmt)
        with pytest.raises(error) as err:
            driver.spawn(op(inst, "spawn"), inst)
        assert check(err.value), (image_url, err.value.params)
        assert driver.list_instance_uuids() == [], image_url
        assert volumes(driver) == [], image_url
    # A root disk large enough takes the big image.
    inst = boot(driver, f"{url}/big.qcow2", "qcow2", root_gb=2)
    driver.spawn(op(inst, "spawn"), inst)
    assert json.loads(qemu_img("info", "--output=json", root_volume(
        driver, inst["uuid"]).path()))["virtual-size"] == 2 * 1024 * MiB
    driver.destroy(op(inst, "destroy"), inst)


@pytest.fixture
def glance_options(conf, glance):  # noqa: F811  (the fixture imported above)
    for key, value in (("auth_type", "none"), ("endpoint_override", glance.url)):
        conf.set_override(key, value, "glance")
    yield glance
    for key in ("auth_type", "endpoint_override"):
        conf.clear_override(key, "glance")


def test_one_glance_image_boots_under_xen_and_kvm_and_is_verified(make_driver, node, site,
                                                                  glance_options):
    store = glance_options
    _, root = site
    image = store.create_image(root / "disk.qcow2", disk_format="qcow2", name="shared")
    written = []
    for virt_type, bus in (("xen", "xen"), ("kvm", "virtio")):
        driver, _ = make_driver(connection_uri=f"test://{node}", storage_pool=POOL,
                                virt_type=virt_type)
        inst = instance(f"on-{virt_type}")
        inst["image"] = {"id": image["id"], "url": None, "disk_format": None}
        driver.spawn(op(inst, "spawn"), inst)
        xml = ET.fromstring(driver.connection.get().lookupByUUIDString(inst["uuid"]).XMLDesc())
        assert xml.find("devices/disk/driver").get("type") == "qcow2"
        assert xml.find("devices/disk/target").get("bus") == bus
        path = root_volume(driver, inst["uuid"]).path()
        qemu_img("compare", "-f", "raw", "-F", "qcow2", str(root / "disk.raw"), path)
        written.append(Path(path).read_bytes())
        driver.destroy(op(inst, "destroy"), inst)
    assert written[0] == written[1] == (root / "disk.qcow2").read_bytes()

    # What Glance serves no longer matches its record. A raw image: the
    # last chunk is held back, the build fails with the mismatch and
    # leaves nothing. The qcow2 one: its header is no qcow2 header any
    # more, refused before anything is written.
    raw = store.create_image(root / "disk.raw", disk_format="raw", name="raw")
    for bad, error in ((raw, exceptions.ImageChecksumMismatch),
                       (image, exceptions.ImageUnavailable)):
        store.corrupt(bad["id"])
        inst = instance("corrupt")
        inst["image"] = {"id": bad["id"], "url": None, "disk_format": None}
        with pytest.raises(error) as err:
            driver.spawn(op(inst, "spawn"), inst)
        assert err.value.params[0] == bad["id"]
        assert driver.list_instance_uuids() == [] and volumes(driver) == []
