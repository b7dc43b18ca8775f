"""Validation of the RPC arguments: build_instance's ``instance``, a
flavor (resize_instance), a rescue image, list_instances' filters and paging.

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

    flavor = validate_flavor(instance["flavor"])
    image = validate_image(instance["image"])

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
        "flavor": flavor,
        "image": image,
        "networks": list(networks),
        "metadata": dict(metadata),
    }


def validate_flavor(flavor: Any, field: str = "flavor") -> dict[str, int]:
    """``{vcpus, memory_mb, root_gb}``, integers at least their minimum;
    returned with exactly those keys."""
    if not isinstance(flavor, dict):
        raise InvalidInput(field, "must be an object")
    for key in flavor:
        if key not in FLAVOR_FIELDS:
            raise InvalidInput(f"{field}.{key}", "is not a known field")
    for key, minimum in FLAVOR_FIELDS.items():
        if key not in flavor:
            raise InvalidInput(f"{field}.{key}", "is required")
        if not _is_int(flavor[key]):
            raise InvalidInput(f"{field}.{key}", "must be an integer")
        if flavor[key] < minimum:
            raise InvalidInput(f"{field}.{key}", f"must be at least {minimum}")
    return {k: flavor[k] for k in FLAVOR_FIELDS}


def validate_image(image: Any, field: str = "image") -> dict[str, str | None]:
    """``{id, url, disk_format}``, each a string or null."""
    if not isinstance(image, dict):
        raise InvalidInput(field, "must be an object")
    for key in IMAGE_FIELDS:
        _optional_str(image, key, f"{field}.{key}")
    return {k: image.get(k) for k in IMAGE_FIELDS}


def validate_rescue_image(image: Any) -> dict[str, str | None] | None:
    """rescue_instance's ``rescue_image``: null (a blank rescue disk) or an
    image object as in build_instance."""
    if image is None:
        return None
    return validate_image(image, "rescue_image")


# list_instances paging: the page a caller gets without asking, and the most
# it may ask for.
DEFAULT_PAGE = 100
MAX_PAGE = 1000


def validate_page(limit: Any, marker: Any) -> tuple[int, str | None]:
    """list_instances' ``limit`` (1..MAX_PAGE, default DEFAULT_PAGE) and
    ``marker`` (the uuid of the last instance of the previous page)."""
    if limit is None:
        limit = DEFAULT_PAGE
    if not _is_int(limit):
        raise InvalidInput("limit", "must be an integer")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput("limit", f"must be between 1 and {MAX_PAGE}")
    if marker is not None:
        marker = validate_uuid(marker, "marker")
    return limit, marker


def validate_filter(value: Any, field: str, choices: tuple[str, ...] | None = None,
                    max_len: int = MAX_NAME) -> str | None:
    """An optional string filter: null, or a string (one of ``choices``)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise InvalidInput(field, f"must be a string of 1 to {max_len} characters")
    if choices is not None and value not in choices:
        raise InvalidInput(field, f"must be one of {', '.join(choices)}")
    return value
