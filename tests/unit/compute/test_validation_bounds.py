"""Every bound of validation.BOUNDS is hit: the value at the bound passes,
one step past it is INVALID_INPUT naming the field; and the docs list
exactly the bounds the code enforces."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from compute_agent.compute import validation, validation_devices
from compute_agent.compute.validation import BOUNDS, check_arguments_size, validate_instance
from compute_agent.exceptions import InvalidInput

UUID = "0b6c2f3e-0a46-4c55-9c8e-3d0c5f1e2a10"
DOC = Path(__file__).resolve().parents[3] / "docs" / "rpc-api.md"


def body(**kw):
    out = {"uuid": UUID, "name": "vm", "flavor": {"vcpus": 2, "memory_mb": 512, "root_gb": 5},
           "image": {"id": "i", "url": None, "disk_format": "vhd"}}
    out.update(kw)
    return out


def flavor(**kw):
    return {"vcpus": 2, "memory_mb": 512, "root_gb": 5, **kw}


def s(n):
    return "x" * n


B = {k: v for k, v in BOUNDS.items()}
LIMIT = B["integer"].maximum

# bound name -> (request at the bound, request past it, field in the error)
CASES = {
    "name": [(body(name=s(255)), body(name=s(256)), "name")],
    "flavor.vcpus": [(body(flavor=flavor(vcpus=256)), body(flavor=flavor(vcpus=257)),
                      "flavor.vcpus"),
                     (body(flavor=flavor(vcpus=1)), body(flavor=flavor(vcpus=0)),
                      "flavor.vcpus")],
    "flavor.memory_mb": [(body(flavor=flavor(memory_mb=4194304)),
                          body(flavor=flavor(memory_mb=4194305)), "flavor.memory_mb"),
                         (body(flavor=flavor(memory_mb=16)), body(flavor=flavor(memory_mb=15)),
                          "flavor.memory_mb")],
    "flavor.root_gb": [(body(flavor=flavor(root_gb=16384)), body(flavor=flavor(root_gb=16385)),
                        "flavor.root_gb"),
                       (body(flavor=flavor(root_gb=0)), body(flavor=flavor(root_gb=-1)),
                        "flavor.root_gb")],
    "image.id": [(body(image={"id": s(255)}), body(image={"id": s(256)}), "image.id")],
    "image.url": [(body(image={"url": s(2048)}), body(image={"url": s(2049)}), "image.url")],
    "image.disk_format": [(body(image={"disk_format": s(32)}),
                           body(image={"disk_format": s(33)}), "image.disk_format")],
    "networks": [(body(networks=["n"] * 16), body(networks=["n"] * 17), "networks")],
    "networks.<i>": [(body(networks=[s(255)]), body(networks=[s(256)]), "networks.0"),
                     (body(networks=["n"]), body(networks=[""]), "networks.0")],
    "networks.<i>.<key>": [(body(networks=[{s(64): "n"}]), body(networks=[{s(65): "n"}]),
                            "networks.0 keys")],
    "networks.<i>.<value>": [(body(networks=[{"name": s(255)}]),
                              body(networks=[{"name": s(256)}]), "networks.0.name")],
    "networks.<i>.entries": [(body(networks=[{f"k{i}": "v" for i in range(8)}]),
                              body(networks=[{f"k{i}": "v" for i in range(9)}]), "networks.0")],
    "metadata": [(body(metadata={f"k{i}": "v" for i in range(128)}),
                  body(metadata={f"k{i}": "v" for i in range(129)}), "metadata")],
    "metadata.<key>": [(body(metadata={s(255): "v"}), body(metadata={s(256): "v"}),
                        "metadata keys"),
                       (body(metadata={"k": "v"}), body(metadata={"": "v"}), "metadata keys")],
    "metadata.<value>": [(body(metadata={"k": s(255)}), body(metadata={"k": s(256)}),
                          "metadata.k")],
    "integer": [(body(metadata={"k": LIMIT}), body(metadata={"k": LIMIT + 1}), "metadata.k"),
                (body(metadata={"k": -LIMIT}), body(metadata={"k": -LIMIT - 1}), "metadata.k"),
                (body(networks=[{"vlan": LIMIT}]), body(networks=[{"vlan": LIMIT + 1}]),
                 "networks.0.vlan")],
    "uuid": [(body(uuid=UUID), body(uuid=UUID + "0"), "uuid"),
             (body(uuid=UUID), body(uuid=UUID[:-1]), "uuid")],
}

# 1.4 arguments: bound name -> (check, argument at the bound, past it, field)
VOL = {"driver_volume_type": "iscsi", "data": {"target_portal": "10.0.0.1",
                                                 "target_iqn": "iqn.x", "target_lun": 0}}


def bdm(n=1, **kw):
    return [{"volume_id": f"v{i}", "connection_info": VOL, **kw} for i in range(n)]


def conn(**data):
    return {**VOL, "data": {**VOL["data"], **data}}


def build(instance):
    return validate_instance(instance)


vd = validation_devices
DEVICE_CASES = {
    "block_device_mapping": [(build, body(block_device_mapping=bdm(14)),
                              body(block_device_mapping=bdm(15)), "block_device_mapping")],
    "volume_id": [
        (build, body(block_device_mapping=[{"volume_id": s(255), "connection_info": VOL}]),
         body(block_device_mapping=[{"volume_id": s(256), "connection_info": VOL}]),
         "block_device_mapping.0.volume_id"),
        (lambda v: vd.validate_item_id(v, "volume_id", "volume_id"), "v", "", "volume_id"),
        (lambda v: vd.validate_item_id(v, "volume_id", "volume_id"), s(255), s(256),
         "volume_id")],
    "device": [(build, body(block_device_mapping=bdm(device=s(16))),
                body(block_device_mapping=bdm(device=s(17))), "block_device_mapping.0.device"),
               (vd.validate_device, "/dev/xvdc", s(17), "device")],
    "device.number": [(vd.validate_device, 15, 16, "device"),
                      (vd.validate_device, 0, -1, "device")],
    "connection_info": [(vd.validate_connection_info, {**VOL, **{f"k{i}": 1 for i in range(14)}},
                         {**VOL, **{f"k{i}": 1 for i in range(15)}}, "connection_info")],
    "connection_info.<key>": [
        (vd.validate_connection_info, {**VOL, s(64): 1}, {**VOL, s(65): 1},
         "connection_info keys"),
        (vd.validate_connection_info, conn(**{s(64): 1}), conn(**{s(65): 1}),
         "connection_info.data keys")],
    "connection_info.<value>": [
        (vd.validate_connection_info, conn(auth_password=s(1024)),
         conn(auth_password=s(1025)), "connection_info.data.auth_password"),
        (build, body(block_device_mapping=[{"volume_id": "v",
                                            "connection_info": conn(auth_username=s(1024))}]),
         body(block_device_mapping=[{"volume_id": "v",
                                     "connection_info": conn(auth_username=s(1025))}]),
         "block_device_mapping.0.connection_info.data.auth_username")],
    "connection_info.data": [
        (vd.validate_connection_info, conn(**{f"k{i}": 1 for i in range(29)}),
         conn(**{f"k{i}": 1 for i in range(30)}), "connection_info.data")],
    "connection_info.data.entries": [
        (vd.validate_connection_info, conn(target_portals=["a"] * 16),
         conn(target_portals=["a"] * 17), "connection_info.data.target_portals"),
        (vd.validate_connection_info, conn(qos_specs={f"k{i}": 1 for i in range(16)}),
         conn(qos_specs={f"k{i}": 1 for i in range(17)}), "connection_info.data.qos_specs")],
    "port.id": [(vd.validate_port, {"id": s(255)}, {"id": s(256)}, "port.id"),
                (vd.validate_port, {"id": "p"}, {"id": ""}, "port.id")],
    "port.mac_address": [
        (vd.validate_port, {"id": "p", "mac_address": "02:00:00:00:00:01"},
         {"id": "p", "mac_address": "02:00:00:00:00:01:"}, "port.mac_address"),
        (build, body(networks=[{"id": "p", "mac_address": s(17)}]),
         body(networks=[{"id": "p", "mac_address": s(18)}]), "networks.0.mac_address")],
    "port.network": [(vd.validate_port, {"id": "p", "network": s(255)},
                      {"id": "p", "network": s(256)}, "port.network")],
    "port_id": [(lambda v: vd.validate_item_id(v, "port_id", "port_id"), s(255), s(256),
                 "port_id"),
                (lambda v: vd.validate_item_id(v, "port_id", "port_id"), "p", "", "port_id")],
    "config_drive": [(build, body(config_drive=True), body(config_drive=1), "config_drive"),
                     (build, body(config_drive=False), body(config_drive="yes"),
                      "config_drive")],
    "user_data": [(build, body(user_data=s(65535)), body(user_data=s(65536)), "user_data"),
                  (build, body(user_data="\u00e9" * 32767 + "x"),
                   body(user_data="\u00e9" * 32768), "user_data")],
    "public_keys": [(build, body(public_keys={f"k{i}": "ssh-rsa A" for i in range(32)}),
                     body(public_keys={f"k{i}": "ssh-rsa A" for i in range(33)}),
                     "public_keys")],
    "public_keys.<key>": [(build, body(public_keys={s(255): "k"}),
                           body(public_keys={s(256): "k"}), "public_keys keys")],
    "public_keys.<value>": [(build, body(public_keys={"k": s(8192)}),
                             body(public_keys={"k": s(8193)}), "public_keys.k")],
    "password": [(vd.validate_password, s(255), s(256), "password"),
                 (vd.validate_password, "p", "", "password")],
    "path": [(vd.validate_path, "/" + s(254), "/" + s(255), "path"),
             (vd.validate_path, "/", "", "path"),
             (vd.validate_path, "/etc/motd", "etc/motd", "path")],
    "contents": [(vd.validate_contents, s(2048), s(2049), "contents"),
                 (vd.validate_contents, "\u00e9" * 1024, "\u00e9" * 1024 + "x", "contents")],
}


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_every_bound_is_hit(name):
    if name in DEVICE_CASES:
        for check, ok, bad, field in DEVICE_CASES[name]:
            check(ok)
            with pytest.raises(InvalidInput) as info:
                check(bad)
            assert info.value.params[0] == field, info.value.params
        return
    if name == "instance_uuid":
        assert validation.validate_uuid(UUID) == UUID
        for bad in (UUID + "0", UUID[:-1]):
            with pytest.raises(InvalidInput) as info:
                validation.validate_uuid(bad)
            assert info.value.params == ["instance_uuid", "must be a UUID string"]
        return
    if name == "limit":
        assert validation.validate_page(1000, None) == (1000, None)
        assert validation.validate_page(1, None) == (1, None)
        for bad in (0, 1001):
            with pytest.raises(InvalidInput) as info:
                validation.validate_page(bad, None)
            assert info.value.params[0] == "limit"
        return
    if name == "host":
        assert validation.validate_filter(s(255), "host") == s(255)
        for bad in ("", s(256), "h\nforged"):
            with pytest.raises(InvalidInput) as info:
                validation.validate_filter(bad, "host")
            assert info.value.params[0] == "host"
        return
    if name.startswith("snapshot.image"):
        from compute_agent.compute.snapshots import image_properties

        ok, bad, field = {
            "snapshot.image": ({"name": "n", **{f"k{i}": "v" for i in range(31)}},
                               {"name": "n", **{f"k{i}": "v" for i in range(32)}}, "image"),
            "snapshot.image.<key>": ({"name": "n", s(255): "v"}, {"name": "n", s(256): "v"},
                                     "image keys"),
            "snapshot.image.<value>": ({"name": "n", "k": s(255)}, {"name": "n", "k": s(256)},
                                       "image.k"),
        }[name]
        image_properties(ok, UUID)
        with pytest.raises(InvalidInput) as info:
            image_properties(bad, UUID)
        assert info.value.params[0] == field
        with pytest.raises(InvalidInput) as info:
            image_properties({"name": "n", "k\nforged": "v"}, UUID)
        assert "\n" not in info.value.params[0]
        return
    if name == "arguments":
        limit = BOUNDS["arguments"].maximum
        # {"a": "xxx..."} is 9 bytes of JSON around the string.
        check_arguments_size({"a": s(limit - 9)})
        with pytest.raises(InvalidInput) as info:
            check_arguments_size({"a": s(limit - 8)})
        assert info.value.params[0] == "arguments"
        return
    assert name in CASES, f"bound {name} has no test case"
    for ok, bad, field in CASES[name]:
        validate_instance(ok)
        with pytest.raises(InvalidInput) as info:
            validate_instance(bad)
        assert info.value.params[0] == field, info.value.params


@pytest.mark.parametrize("form", [
    UUID.upper(), "{" + UUID + "}", "urn:uuid:" + UUID, UUID.replace("-", ""),
    " " + UUID, UUID + "\n", UUID[:8] + "_" + UUID[9:],
])
def test_non_canonical_uuid_forms_are_refused(form):
    with pytest.raises(InvalidInput) as info:
        validate_instance(body(uuid=form))
    assert info.value.params == ["uuid", "must be a UUID string"]
    with pytest.raises(InvalidInput):
        validation.validate_uuid(form)


@pytest.mark.parametrize("bad, field", [
    (body(name="a\x00b"), "name"),
    (body(name="a\nb"), "name"),
    (body(name="a\x85b"), "name"),
    (body(name="a\ud800b"), "name"),
    (body(image={"url": "http://x/\r\nInjected"}), "image.url"),
    (body(metadata={"k": "v\x1b[31m"}), "metadata.k"),
    (body(metadata={"k\n": "v"}), "metadata keys"),
    (body(networks=["net\x00"]), "networks.0"),
])
def test_control_characters_and_lone_surrogates_are_refused(bad, field):
    with pytest.raises(InvalidInput) as info:
        validate_instance(bad)
    assert info.value.params == [field, "must not contain control characters or lone "
                                        "surrogates"]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinities_are_refused(value):
    with pytest.raises(InvalidInput) as info:
        validate_instance(body(metadata={"k": value}))
    assert info.value.params == ["metadata.k", "must be a finite number"]


def test_unknown_field_names_are_escaped_and_cut():
    with pytest.raises(InvalidInput) as info:
        validate_instance(body(**{"evil\nINFO forged line" + "y" * 10_000: 1}))
    field = info.value.params[0]
    assert "\n" not in field and len(field) <= validation.SAFE_TEXT_MAX
    assert field.startswith("evil\\x{a}INFO")


def test_extra_image_keys_are_not_kept_and_extra_flavor_keys_refused():
    spec = validate_instance(body(image={"id": "i", "checksum": "c"}))
    assert spec["image"] == {"id": "i", "url": None, "disk_format": None}
    with pytest.raises(InvalidInput) as info:
        validate_instance(body(flavor=flavor(**{"extra\n" + "x" * 500: 1})))
    assert info.value.params[1] == "is not a known field"
    assert "\n" not in info.value.params[0] and len(info.value.params[0]) < 80


def test_docs_list_every_bound_exactly():
    text = DOC.read_text()
    rows = {}
    for m in re.finditer(r"^\| `([^`]+)` \|\s*(-?\d*)\s*\|\s*(-?\d+)\s*\|\s*(\w+)", text, re.M):
        rows[m.group(1)] = (int(m.group(2)) if m.group(2) else None, int(m.group(3)),
                            m.group(4))
    documented = {k: v for k, v in rows.items() if k in BOUNDS or "<" in k
                  or k.startswith(("flavor.", "image."))}
    assert set(documented) == set(BOUNDS)
    for key, bound in BOUNDS.items():
        assert documented[key] == (bound.minimum, bound.maximum, bound.unit), key


def test_chap_credentials_are_never_in_an_error():
    secret = "S3cr3t-CHAP"
    for bad in (conn(auth_password=secret * 100), conn(auth_password=secret + "\n"),
                conn(auth_username=secret * 100, auth_password=[secret] * 17)):
        for check in (vd.validate_connection_info,
                      lambda c: validate_instance(body(block_device_mapping=[
                          {"volume_id": "v", "connection_info": c}]))):
            with pytest.raises(InvalidInput) as info:
                check(bad)
            assert secret not in repr(info.value.params)


def test_device_arguments_are_checked_for_control_characters():
    for check, bad, field in (
            (vd.validate_password, "pass\nword", "password"),
            (vd.validate_path, "/etc/\x00motd", "path"),
            (vd.validate_port, {"id": "p\x1b"}, "port.id"),
            (lambda v: vd.validate_item_id(v, "volume_id", "volume_id"), "v\ud800",
             "volume_id")):
        with pytest.raises(InvalidInput) as info:
            check(bad)
        assert info.value.params == [field, "must not contain control characters or lone "
                                            "surrogates"]


def test_build_keeps_the_device_fields_it_was_given():
    spec = validate_instance(body(block_device_mapping=bdm(1, device="xvdc"),
                                  config_drive=True, user_data="#!/bin/sh\n",
                                  public_keys={"k": "ssh-ed25519 AAA"}))
    assert spec["block_device_mapping"] == [{"volume_id": "v0", "connection_info": VOL,
                                             "device": "xvdc"}]
    assert spec["config_drive"] is True and spec["user_data"] == "#!/bin/sh\n"
    assert spec["public_keys"] == {"k": "ssh-ed25519 AAA"}
    assert "block_device_mapping" not in validate_instance(body(block_device_mapping=[]))
