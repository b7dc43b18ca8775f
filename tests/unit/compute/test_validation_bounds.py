"""Every bound of validation.BOUNDS is hit: the value at the bound passes,
one step past it is INVALID_INPUT naming the field; and the docs list
exactly the bounds the code enforces."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from compute_agent.compute import validation
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


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_every_bound_is_hit(name):
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
