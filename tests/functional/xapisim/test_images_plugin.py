"""The shipped dom0 plugin ``images`` through host.call_plugin on the
simulator (official SDK): strict argument checks (structured failures,
never a traceback), a download into a file-based SR's directory that
SR.scan introduces as a VDI holding exactly the image, and the failures of
a bad download, which leave nothing in the SR."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
import uuid as uuidlib

import pytest
from simvm import failure, wait_task

from tests.functional.image.test_image_sources_glance import http_files
from xapisim import sr_files

MiB = 1024 * 1024
TOKEN = "secret-token-123"


@pytest.fixture
def x(xapi):
    return xapi.xenapi


def _sr(x) -> str:
    return x.pool.get_default_SR(x.pool.get_all()[0])


def _args(x, source: str, data: bytes, **extra: str) -> dict[str, str]:
    args = {"url": source, "sr_uuid": x.SR.get_uuid(_sr(x)), "vdi_uuid": str(uuidlib.uuid4()),
            "disk_format": "raw", "size": str(len(data)), "hash_algo": "sha256",
            "hash_value": hashlib.sha256(data).hexdigest()}
    args.update(extra)
    return args


def call(x, args: dict[str, str]):
    return x.host.call_plugin(x.host.get_all()[0], "images", "download_image", args)


def export_head(sim, xapi, vdi: str, n: int) -> bytes:
    url = f"{sim.url}/export_raw_vdi?session_id={xapi._session}&vdi={vdi}&format=raw"
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read(n)


@pytest.mark.parametrize("change, expected", [
    ({"colour": "blue"}, ["colour", "unknown argument"]),
    ({"url": ""}, ["url", "missing"]),
    ({"url": "ftp://host/x"}, ["url", "must be an http or https URL"]),
    ({"sr_uuid": "../../etc"}, ["sr_uuid", "not a lower-case uuid"]),
    ({"vdi_uuid": "X"}, ["vdi_uuid", "not a lower-case uuid"]),
    ({"disk_format": "qcow2"}, ["disk_format", "must be raw or vhd"]),
    ({"size": "-5"}, ["size", "must be a positive number of bytes"]),
    ({"hash_algo": ""}, ["hash_algo", "give both or neither"]),
    ({"hash_algo": "rot13"}, ["hash_algo", "unknown hash algorithm"]),
    ({"hash_value": "XYZ"}, ["hash_value", "must be lower-case hex"]),
    ({"sr_uuid": str(uuidlib.UUID(int=7))}, ["sr_uuid", "no such SR"]),
    ({"name_label": "n" * 256}, ["name_label", "longer than 255 characters"]),
    ({"other_config": "{not json"}, ["other_config", "not JSON"]),
    ({"other_config": '["a"]'}, ["other_config", "must be an object of strings"]),
    ({"other_config": '{"a": 1}'}, ["other_config", "must be an object of strings"]),
    ({"other_config": json.dumps({str(i): "v" for i in range(65)})},
     ["other_config", "more than 64 keys"]),
    ({"other_config": json.dumps({"k": "v" * 4097})},
     ["other_config", "a key or a value is empty or too long"]),
])
def test_arguments_are_checked_strictly(x, change, expected):
    args = _args(x, "http://127.0.0.1:9/x", b"data", **change)
    assert failure(call, x, args) == ["IMAGE_PLUGIN_INVALID_ARGUMENT", *expected]


def test_unknown_function_and_non_file_sr(x):
    host = x.host.get_all()[0]
    assert failure(x.host.call_plugin, host, "images", "format_disk", {}) == [
        "UNKNOWN_XENAPI_PLUGIN_FUNCTION", "format_disk"]
    lvm = x.SR.create(host, {}, str(10 * 1024 * MiB), "lvm", "", "lvm", "user", False, {})
    args = _args(x, "http://127.0.0.1:9/x", b"d", sr_uuid=x.SR.get_uuid(lvm))
    assert failure(call, x, args) == ["SR_NOT_FILE_BASED", x.SR.get_uuid(lvm)]


@pytest.mark.parametrize("disk_format", ["raw", "vhd"])
def test_download_lands_as_a_vdi_with_exactly_the_image(sim, xapi, x, disk_format):
    data = os.urandom(MiB + 100)
    payload = data
    if disk_format == "vhd":
        from xapisim import vhd
        padded = data + bytes(-len(data) % 512)
        payload = padded + vhd.fixed_footer(len(padded))
    with http_files() as (base, files):
        files["/img"] = (payload, {})
        marks = {"compute_agent_image": "img-1", "compute_agent_image_state": "importing"}
        args = _args(x, f"{base}/img", payload, disk_format=disk_format,
                     name_label="image img-1 (cache)", other_config=json.dumps(marks))
        task = x.Async.host.call_plugin(x.host.get_all()[0], "images", "download_image", args)
        assert wait_task(x, task) == "success"
    uuid = args["vdi_uuid"]
    vdi = x.VDI.get_by_uuid(uuid)
    assert x.VDI.get_SR(vdi) == _sr(x)
    # named and marked before the call returned: never an unmarked VDI
    assert x.VDI.get_name_label(vdi) == "image img-1 (cache)"
    assert marks.items() <= x.VDI.get_other_config(vdi).items()
    assert int(x.VDI.get_virtual_size(vdi)) == len(data) + (-len(data) % 512)
    assert export_head(sim, xapi, vdi, len(data)) == data
    mount = sr_files.mount_dir(sim, _sr(x))
    assert list(mount.iterdir()) == []  # introduced, nothing partial left


def test_bad_downloads_fail_with_image_errors_and_leave_nothing(sim, x):
    data = os.urandom(MiB)
    before = set(x.VDI.get_all())
    with http_files() as (base, files):
        files["/img"] = (data, {})
        bad_hash = _args(x, f"{base}/img", data, hash_value="0" * 64, auth_token=TOKEN)
        err = failure(call, x, bad_hash)
        assert err[:2] == ["IMAGE_CHECKSUM_MISMATCH", f"{base}/img"]
        assert err[2] == "sha256:" + "0" * 64
        assert TOKEN not in " ".join(err)
        missing = _args(x, f"{base}/nothing", data)
        assert failure(call, x, missing) == ["IMAGE_NOT_FOUND", f"{base}/nothing"]
        short = _args(x, f"{base}/img", data, size=str(len(data) + 1), hash_algo="",
                      hash_value="")
        assert failure(call, x, short)[0] == "IMAGE_UNAVAILABLE"
    assert set(x.VDI.get_all()) == before
    assert list(sr_files.mount_dir(sim, _sr(x)).iterdir()) == []
