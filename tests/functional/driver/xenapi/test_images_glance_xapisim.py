"""Booting from images with the XenAPI driver: the real Glance (gunicorn,
SQLite, file store) as the image service, the simulator over HTTP as dom0,
the ``stream`` handler (PUT /import_raw_vdi with a task_id) and the per-SR
image cache. The root disk's bytes are read back from dom0 with
GET /export_raw_vdi; Glance's access log counts downloads."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import urllib.request
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor

import pytest
from xenapi_fixtures import make_instance, op_for

from compute_agent import exceptions
from compute_agent.driver.base import Operation
from compute_agent.driver.xenapi import image_cache
from tests.functional.glance_fixture import glance  # noqa: F401  (a fixture)
from tests.functional.image.test_image_sources_glance import http_files
from xapisim import vhd

MiB = 1024 * 1024
GiB = 1024 * MiB


@pytest.fixture
def images_driver(sim, glance, make_driver, listener, conf_overrides):  # noqa: F811
    def make(cache: bool = True, handler: str = "stream"):
        conf_overrides("glance", auth_type="none", endpoint_override=glance.url,
                       chunk_size_kb=256)
        conf_overrides("image_cache", enabled=cache)
        return make_driver(sim.url, listener=listener, image_handler=handler)
    return make


def image_bytes(n: int = 3 * MiB + 512) -> bytes:
    # a zero first sector: nothing in it that looks like a partition table
    return bytes(512) + os.urandom(n - 512)


def dynamic_vhd(raw: bytes, size: int | None = None) -> bytes:
    """A dynamic VHD of a disk of ``size`` bytes that starts with ``raw``."""
    size = size or len(raw)
    with tempfile.TemporaryFile() as f:
        f.write(raw)
        f.truncate(size)
        f.seek(0)
        return b"".join(vhd.export_dynamic(f, size))


def boot(driver, image: dict, root_gb: int = 1) -> dict:
    inst = make_instance(root_gb=root_gb)
    inst["image"] = {"id": None, "url": None, "disk_format": None, **image}
    driver.spawn(op_for(inst, "spawn"), inst)
    return inst


def root_vdi(xapi, inst: dict) -> str:
    x = xapi.xenapi
    vm = next(r for r, rec in x.VM.get_all_records().items()
              if rec["other_config"].get("compute_agent_instance_uuid") == inst["uuid"])
    for vbd in x.VM.get_VBDs(vm):
        if x.VBD.get_userdevice(vbd) == "0":
            return x.VBD.get_VDI(vbd)
    raise AssertionError("no root disk")


def disk_head(sim, xapi, vdi: str, n: int) -> bytes:
    """The first ``n`` bytes of a VDI, exported by dom0."""
    url = f"{sim.url}/export_raw_vdi?session_id={xapi._session}&vdi={vdi}&format=raw"
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read(n)


def vdis(xapi) -> dict[str, dict]:
    return xapi.xenapi.VDI.get_all_records()


def cache_vdis(xapi) -> dict[str, dict]:
    return {r: rec for r, rec in vdis(xapi).items()
            if rec["other_config"].get(image_cache.KEY)}


@pytest.mark.parametrize("handler, cache", [("stream", True), ("stream", False),
                                            ("dom0", True)],
                         ids=["stream-cache", "stream-nocache", "dom0-cache"])
@pytest.mark.parametrize("disk_format", ["raw", "vhd"])
def test_boot_from_glance_image_holds_exactly_its_bytes(
        sim, xapi, glance, images_driver, listener, disk_format, cache, handler):  # noqa: F811
    data = image_bytes()
    payload = data if disk_format == "raw" else dynamic_vhd(data)
    image = glance.create_image(payload, disk_format=disk_format)
    driver = images_driver(cache=cache, handler=handler)
    before = set(vdis(xapi))  # dom0's own (the guest tools ISO)
    inst = boot(driver, {"id": image["id"]})
    vdi = root_vdi(xapi, inst)
    assert disk_head(sim, xapi, vdi, len(data) + MiB) == data + bytes(MiB)
    assert int(xapi.xenapi.VDI.get_virtual_size(vdi)) == 1 * GiB  # grown to root_gb
    assert xapi.xenapi.VM.get_power_state(
        xapi.xenapi.VBD.get_VM(xapi.xenapi.VDI.get_VBDs(vdi)[0])) == "Running"
    # the import was a tracked task, reported before it was waited on, with progress
    started = [a for a in listener.of("started")]
    finished = {a[1]: a[2] for a in listener.of("finished")}
    imports = [a[1] for a in started if a[0] == "spawn"]
    assert any(finished.get(ref) == "success" for ref in imports)
    # the image's base and the base grown to the flavor's 1 GiB
    assert len(cache_vdis(xapi)) == (2 if cache else 0)
    driver.destroy(op_for(inst, "destroy"), inst)
    assert set(vdis(xapi)) - before == set(cache_vdis(xapi))


def test_second_build_downloads_nothing_and_clones_the_cached_base(
        sim, xapi, glance, images_driver):  # noqa: F811
    data = image_bytes()
    image = glance.create_image(data)
    driver = images_driver()
    first = boot(driver, {"id": image["id"]})
    second = boot(driver, {"id": image["id"]}, root_gb=2)
    assert glance.downloads(image["id"]) == 1
    bases = {rec["other_config"].get(image_cache.GROWN): rec
             for rec in cache_vdis(xapi).values()}
    # the image-sized base, and one grown to each root size, cloned from it
    assert set(bases) == {None, str(1 * GiB), str(2 * GiB)}
    for rec in bases.values():
        oc = rec["other_config"]
        assert oc[image_cache.STATE] == "ready" and oc[image_cache.KEY] == image["id"]
        assert oc[image_cache.VERSION] == hashlib.sha512(data).hexdigest()
    for size in (str(1 * GiB), str(2 * GiB)):
        assert bases[size]["other_config"][image_cache.BASE] == bases[None]["uuid"]
    for inst, size in ((first, 1 * GiB), (second, 2 * GiB)):
        vdi = root_vdi(xapi, inst)
        assert xapi.xenapi.VDI.get_other_config(vdi)[image_cache.BASE] == \
            bases[str(size)]["uuid"]
        assert disk_head(sim, xapi, vdi, len(data)) == data
    # a third build of a known size is one clone of its grown base
    third = boot(driver, {"id": image["id"]})
    assert len(cache_vdis(xapi)) == 3 and glance.downloads(image["id"]) == 1
    assert disk_head(sim, xapi, root_vdi(xapi, third), len(data)) == data
    assert int(xapi.xenapi.VDI.get_virtual_size(root_vdi(xapi, second))) == 2 * GiB


def test_concurrent_builds_of_a_new_image_download_it_once(
        sim, xapi, glance, images_driver):  # noqa: F811
    image = glance.create_image(image_bytes())
    driver = images_driver()
    with ThreadPoolExecutor(5) as pool:
        insts = list(pool.map(lambda _: boot(driver, {"id": image["id"]}), range(5)))
    assert glance.downloads(image["id"]) == 1
    assert len(cache_vdis(xapi)) == 2  # the image's base and the 1 GiB one
    assert len({root_vdi(xapi, i) for i in insts}) == 5


def test_boot_from_an_http_url(sim, xapi, images_driver):
    data = image_bytes(2 * MiB)
    driver = images_driver()
    with http_files() as (base, files):
        files["/disk.img"] = (data, {"Content-MD5": hashlib.md5(data).hexdigest()})
        inst = boot(driver, {"url": f"{base}/disk.img", "disk_format": "raw"})
        again = boot(driver, {"url": f"{base}/disk.img", "disk_format": "raw"})
    for i in (inst, again):
        assert disk_head(sim, xapi, root_vdi(xapi, i), len(data)) == data
    assert len(cache_vdis(xapi)) == 2


def _fails_clean(xapi, driver, image: dict, error: type, root_gb: int = 1):
    before_vdis, before_vms = set(vdis(xapi)), set(xapi.xenapi.VM.get_all())
    inst = make_instance(root_gb=root_gb)
    inst["image"] = {"id": None, "url": None, "disk_format": None, **image}
    with pytest.raises(error) as e:
        driver.spawn(op_for(inst, "spawn"), inst)
    assert set(vdis(xapi)) == before_vdis, "a VDI was left behind"
    assert set(xapi.xenapi.VM.get_all()) == before_vms, "a VM was left behind"
    return e.value


@pytest.mark.parametrize("cache", [True, False], ids=["cache", "nocache"])
def test_checksum_mismatch_leaves_nothing(xapi, glance, images_driver, cache):  # noqa: F811
    data = image_bytes()
    image = glance.create_image(data)
    glance.corrupt(image["id"])
    err = _fails_clean(xapi, images_driver(cache=cache), {"id": image["id"]},
                       exceptions.ImageChecksumMismatch)
    assert err.params[0] == image["id"]
    assert err.params[1] == f"sha512:{hashlib.sha512(data).hexdigest()}"


def test_missing_image_unsupported_format_and_small_flavor_leave_nothing(
        xapi, glance, images_driver):  # noqa: F811
    driver = images_driver()
    missing = str(uuidlib.uuid4())
    assert _fails_clean(xapi, driver, {"id": missing},
                        exceptions.ImageNotFound).params == [missing]
    iso = glance.create_image(bytes(4096), disk_format="iso")
    assert _fails_clean(xapi, driver, {"id": iso["id"]},
                        exceptions.ImageFormatUnsupported).params == [iso["id"], "iso"]
    assert glance.downloads(iso["id"]) == 0
    large = glance.create_image(dynamic_vhd(image_bytes(MiB), 2 * GiB), disk_format="vhd")
    err = _fails_clean(xapi, driver, {"id": large["id"]}, exceptions.FlavorDiskTooSmall)
    assert err.params == [large["id"], str(2 * GiB), str(1 * GiB)]


def test_dom0_import_failure_leaves_nothing(xapi, ctl, glance, images_driver):  # noqa: F811
    image = glance.create_image(image_bytes())
    ctl.fail("PUT /import_raw_vdi", ["SR_BACKEND_FAILURE_44", "", "injected"])
    err = _fails_clean(xapi, images_driver(), {"id": image["id"]}, exceptions.HypervisorError)
    assert err.code == "SR_BACKEND_FAILURE_44"


def test_cache_cleanup_keeps_used_bases_and_removes_unused_ones(
        xapi, glance, images_driver):  # noqa: F811
    image = glance.create_image(image_bytes())
    driver = images_driver()
    before = set(vdis(xapi))
    inst = boot(driver, {"id": image["id"]})
    op = Operation("image-cache", "image_cache_cleanup", "req-cleanup")
    assert driver.image_cache.cleanup(op, max_unused_age=0) == []  # a disk was cloned from it
    driver.destroy(op_for(inst, "destroy"), inst)
    assert driver.image_cache.cleanup(op, max_unused_age=3600) == []  # used too recently
    # the grown base goes first; then nothing is cloned from the image's base
    assert len(driver.image_cache.cleanup(op, max_unused_age=0)) == 1
    assert len(driver.image_cache.cleanup(op, max_unused_age=0)) == 1
    assert cache_vdis(xapi) == {} and set(vdis(xapi)) == before


def test_a_clone_the_agent_died_before_marking_is_cleaned_up(xapi, glance, images_driver):  # noqa: F811
    image = glance.create_image(image_bytes())
    driver = images_driver()
    boot(driver, {"id": image["id"]})
    x = xapi.xenapi
    base = next(r for r, rec in cache_vdis(xapi).items()
                if image_cache.GROWN not in rec["other_config"])
    orphan = x.VDI.clone(base, {})  # carries the base's marks, with the base's uuid
    op = Operation("image-cache", "image_cache_cleanup", "req-orphans")
    assert driver.image_cache.cleanup(op, max_unused_age=3600) == [orphan]
    assert orphan not in vdis(xapi) and base in vdis(xapi)


def test_half_imported_cache_vdi_is_removed_and_never_used(
        sim, xapi, glance, images_driver):  # noqa: F811
    data = image_bytes()
    image = glance.create_image(data)
    driver = images_driver()
    x = xapi.xenapi
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    half = x.VDI.create({
        "name_label": "half", "name_description": "", "SR": sr, "virtual_size": str(len(data)),
        "type": "user", "sharable": False, "read_only": False, "xenstore_data": {},
        "sm_config": {}, "tags": [], "other_config": {
            image_cache.KEY: image["id"], image_cache.VERSION: hashlib.sha512(data).hexdigest(),
            image_cache.STATE: "importing", "compute_agent_host": driver.host}})
    inst = boot(driver, {"id": image["id"]})
    assert x.VDI.get_other_config(root_vdi(xapi, inst))[image_cache.BASE] != x.VDI.get_uuid(half)
    assert glance.downloads(image["id"]) == 1
    op = Operation("image-cache", "image_cache_recover", "req-recover")
    assert driver.image_cache.remove_half_imported(op) == [half]
    assert half not in vdis(xapi)


def test_glance_killed_mid_import_leaves_nothing(xapi, ctl, glance, images_driver):  # noqa: F811
    image = glance.create_image(image_bytes(64 * MiB))
    driver = images_driver()
    before_vdis, before_vms = set(vdis(xapi)), set(xapi.xenapi.VM.get_all())
    # dom0 sits on the upload for a while: Glance dies with most of the
    # image still to send
    ctl.set_latency("PUT /import_raw_vdi", 1.5)
    inst = make_instance(root_gb=1)
    inst["image"] = {"id": image["id"], "url": None, "disk_format": None}
    with ThreadPoolExecutor(1) as pool:
        build = pool.submit(driver.spawn, op_for(inst, "spawn"), inst)
        wait = time.monotonic() + 20
        while not any(rec["other_config"].get(image_cache.STATE) == "importing"
                      for rec in vdis(xapi).values()):
            assert time.monotonic() < wait, "the import never started"
            time.sleep(0.02)
        glance.kill()
        try:
            with pytest.raises(exceptions.ImageUnavailable) as e:
                build.result(60)
        finally:
            ctl.set_latency("PUT /import_raw_vdi", 0.0)
            glance.restart()
    assert e.value.params[0] == image["id"]
    assert set(vdis(xapi)) == before_vdis and set(xapi.xenapi.VM.get_all()) == before_vms
