"""Validation of build_instance's ``instance`` argument.

Shared by the client API (so a caller gets INVALID_INPUT before anything is
sent) and the manager (so a caller in another language gets the same
answer). Every failure is ``InvalidInput(field, reason)`` naming the first
bad field by its dotted path inside ``instance``.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from compute_agent.exceptions import InvalidInput

REQUIRED = ("uuid", "name", "flavor", "image")
OPTIONAL = ("networks", "metadata")
FLAVOR_FIELDS = {"vcpus": 1, "memory_mb": 16, "root_gb": 0}  # field -> minimum
IMAGE_FIELDS = ("id", "url", "disk_format")
MAX_NAME = 255


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_str(obj: dict, key: str, path: str) -> None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(path, "must be a string or null")


def validate_uuid(value: Any, field: str = "instance_uuid") -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a UUID string")
    try:
        uuidlib.UUID(value)
    except ValueError:
        raise InvalidInput(field, "must be a UUID string") from None
    return value


def validate_instance(instance: Any) -> dict[str, Any]:
    """Check a build request and return it normalised: ``networks`` and
    ``metadata`` present, flavor and image with exactly their fields."""
    if not isinstance(instance, dict):
        raise InvalidInput("instance", "must be an object")
    for key in REQUIRED:
        if key not in instance:
            raise InvalidInput(key, "is required")
    for key in instance:
        if key not in REQUIRED and key not in OPTIONAL:
            raise InvalidInput(str(key), "is not a known field")

    uuid = validate_uuid(instance["uuid"], "uuid")
    name = instance["name"]
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("name", "must be a non-empty string")
    if len(name) > MAX_NAME:
        raise InvalidInput("name", f"must be at most {MAX_NAME} characters")

    flavor = instance["flavor"]
    if not isinstance(flavor, dict):
        raise InvalidInput("flavor", "must be an object")
    for key, minimum in FLAVOR_FIELDS.items():
        if key not in flavor:
            raise InvalidInput(f"flavor.{key}", "is required")
        if not _is_int(flavor[key]):
            raise InvalidInput(f"flavor.{key}", "must be an integer")
        if flavor[key] < minimum:
            raise InvalidInput(f"flavor.{key}", f"must be at least {minimum}")

    image = instance["image"]
    if not isinstance(image, dict):
        raise InvalidInput("image", "must be an object")
    for key in IMAGE_FIELDS:
        _optional_str(image, key, f"image.{key}")

    networks = instance.get("networks", [])
    if networks is None:
        networks = []
    if not isinstance(networks, list):
        raise InvalidInput("networks", "must be a list")
    for i, net in enumerate(networks):
        if not isinstance(net, dict | str):
            raise InvalidInput(f"networks.{i}", "must be an object or a string")

    metadata = instance.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise InvalidInput("metadata", "must be an object")
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise InvalidInput("metadata", "keys must be strings")
        if not isinstance(value, str | int | float | bool) and value is not None:
            raise InvalidInput(f"metadata.{key}", "must be a string, number, boolean or null")

    return {
        "uuid": uuid,
        "name": name,
        "flavor": {k: flavor[k] for k in FLAVOR_FIELDS},
        "image": {k: image.get(k) for k in IMAGE_FIELDS},
        "networks": list(networks),
        "metadata": dict(metadata),
    }
