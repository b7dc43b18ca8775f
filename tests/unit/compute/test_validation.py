"""Validation of build requests (shared by the client API and the manager)."""

from __future__ import annotations

import pytest

from compute_agent.compute.validation import validate_instance, validate_uuid
from compute_agent.exceptions import InvalidInput

UUID = "0b6c2f3e-0a46-4c55-9c8e-3d0c5f1e2a10"


def body(**kw):
    out = {"uuid": UUID, "name": "vm", "flavor": {"vcpus": 2, "memory_mb": 512, "root_gb": 5},
           "image": {"id": "i", "url": None, "disk_format": "vhd"}}
    out.update(kw)
    return out


def test_valid_request_is_normalised():
    result = validate_instance(body(flavor={"vcpus": 2, "memory_mb": 512, "root_gb": 5},
                                    image={"id": "i"}))
    assert result == {
        "uuid": UUID, "name": "vm", "flavor": {"vcpus": 2, "memory_mb": 512, "root_gb": 5},
        "image": {"id": "i", "url": None, "disk_format": None}, "networks": [], "metadata": {},
    }


def test_networks_and_metadata_pass_through():
    result = validate_instance(body(networks=[{"id": "net"}, "mgmt"],
                                    metadata={"a": "b", "n": 1, "f": None}))
    assert result["networks"] == [{"id": "net"}, "mgmt"]
    assert result["metadata"] == {"a": "b", "n": 1, "f": None}


@pytest.mark.parametrize("request_body, field, reason", [
    ([], "instance", "must be an object"),
    ({k: v for k, v in body().items() if k != "uuid"}, "uuid", "is required"),
    (body(uuid="123"), "uuid", "must be a UUID string"),
    (body(uuid=123), "uuid", "must be a UUID string"),
    (body(name=None), "name", "must be a non-empty string"),
    (body(name="   "), "name", "must be a non-empty string"),
    (body(name="x" * 256), "name", "must be at most 255 characters"),
    (body(flavor=[]), "flavor", "must be an object"),
    (body(flavor={"vcpus": 1, "memory_mb": 512}), "flavor.root_gb", "is required"),
    (body(flavor={"vcpus": True, "memory_mb": 512, "root_gb": 1}), "flavor.vcpus",
     "must be an integer"),
    (body(flavor={"vcpus": 1.5, "memory_mb": 512, "root_gb": 1}), "flavor.vcpus",
     "must be an integer"),
    (body(flavor={"vcpus": 0, "memory_mb": 512, "root_gb": 1}), "flavor.vcpus",
     "must be at least 1"),
    (body(flavor={"vcpus": 1, "memory_mb": 512, "root_gb": -1}), "flavor.root_gb",
     "must be at least 0"),
    (body(image=None), "image", "must be an object"),
    (body(image={"url": 5}), "image.url", "must be a string or null"),
    (body(networks="net"), "networks", "must be a list"),
    (body(networks=[1]), "networks.0", "must be an object or a string"),
    (body(metadata=[]), "metadata", "must be an object"),
    (body(metadata={"k": {"nested": 1}}), "metadata.k",
     "must be a string, number, boolean or null"),
    (body(colour="red"), "colour", "is not a known field"),
])
def test_invalid_requests_name_the_field(request_body, field, reason):
    with pytest.raises(InvalidInput) as info:
        validate_instance(request_body)
    assert info.value.code == "INVALID_INPUT"
    assert info.value.params == [field, reason]


def test_validate_uuid():
    assert validate_uuid(UUID) == UUID
    with pytest.raises(InvalidInput) as info:
        validate_uuid("x", "instance_uuid")
    assert info.value.params == ["instance_uuid", "must be a UUID string"]
