"""Validation of RPC arguments, and the documented bound of every one:
build_instance's ``instance``, a flavor (resize_instance), a rescue image,
list_instances' filters and paging, uuids.

Shared by the client API (so a caller gets INVALID_INPUT before anything is
sent) and the manager (so a caller in another language gets the same
answer). Every failure is ``InvalidInput(field, reason)`` naming the first
bad field by its dotted path; nothing is written before validation passed.

``BOUNDS`` is the one table of limits: the checks below read it, the
"Bounds" table of docs/rpc-api.md lists every row (a unit test keeps the
two in step), and a new RPC method adds its rows here and checks its
arguments with the helpers (``check_string``, ``check_int``, ``check_list``,
``check_map``, ``check_choice``, ``check_bool``, ``validate_uuid``).

What every string must be, whatever its bound: valid Unicode without lone
surrogates and without control characters (C0, DEL, C1), so no argument can
break a log line, a database driver or a XenAPI call. Numbers are integers
or finite floats (no NaN or infinity, which JSON columns and xapi refuse).
There is one form of a uuid, the canonical lower-case 8-4-4-4-12 one; other
spellings of the same uuid (upper case, braces, ``urn:uuid:``, no dashes)
are refused rather than normalised, so the idempotency key, the database,
the logs and dom0's marks can never disagree about which instance is meant.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from compute_agent.exceptions import InvalidInput


@dataclass(frozen=True)
class Bound:
    """The limits of one argument: ``minimum`` and ``maximum`` are lengths
    (strings, in characters), sizes (lists and maps, in entries), values
    (numbers) or bytes (whole arguments), as ``unit`` says."""

    minimum: int | None
    maximum: int
    unit: str


CHARS, ENTRIES, VALUE, BYTES = "characters", "entries", "value", "bytes"

# The bounds of every RPC argument. Keys are the field names INVALID_INPUT
# reports; "<key>" stands for any key of a map.
BOUNDS: dict[str, Bound] = {
    "arguments": Bound(None, 256 * 1024, BYTES),  # all arguments of one call, as JSON
    "instance_uuid": Bound(36, 36, CHARS),
    "uuid": Bound(36, 36, CHARS),
    "name": Bound(1, 255, CHARS),
    "flavor.vcpus": Bound(1, 256, VALUE),
    "flavor.memory_mb": Bound(16, 4 * 1024 * 1024, VALUE),  # 4 TiB
    "flavor.root_gb": Bound(0, 16 * 1024, VALUE),  # 16 TiB
    "image.id": Bound(None, 255, CHARS),
    "image.url": Bound(None, 2048, CHARS),
    "image.disk_format": Bound(None, 32, CHARS),
    "networks": Bound(None, 16, ENTRIES),
    "networks.<i>": Bound(1, 255, CHARS),  # a network named by a string
    "networks.<i>.<key>": Bound(1, 64, CHARS),  # keys of a network object
    "networks.<i>.<value>": Bound(None, 255, CHARS),
    "networks.<i>.entries": Bound(None, 8, ENTRIES),
    "metadata": Bound(None, 128, ENTRIES),
    "metadata.<key>": Bound(1, 255, CHARS),
    "metadata.<value>": Bound(None, 255, CHARS),
    "integer": Bound(-(2**53), 2**53, VALUE),  # any integer or float, JSON-safe
    "limit": Bound(1, 1000, VALUE),  # list_instances' page
    "host": Bound(1, 255, CHARS),  # list_instances' filter
    "snapshot.image": Bound(None, 32, ENTRIES),  # snapshot_instance's image properties
    "snapshot.image.<key>": Bound(1, 255, CHARS),
    "snapshot.image.<value>": Bound(None, 255, CHARS),
}

# The old name, for callers that still use it.
MAX_NAME = BOUNDS["name"].maximum

# list_instances paging: the page a caller gets without asking, and the most
# it may ask for.
DEFAULT_PAGE = 100
MAX_PAGE = BOUNDS["limit"].maximum

REQUIRED = ("uuid", "name", "flavor", "image")
OPTIONAL = ("networks", "metadata")
FLAVOR_FIELDS = ("vcpus", "memory_mb", "root_gb")
IMAGE_FIELDS = ("id", "url", "disk_format")

_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# The characters no argument may hold: C0 and C1 controls, DEL, lone surrogates.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# How much of a caller's text may appear in an error (a field name).
SAFE_TEXT_MAX = 64


# --------------------------------------------------------------------------- helpers

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def safe_text(value: Any, limit: int = SAFE_TEXT_MAX) -> str:
    """``value`` as text fit for an error, a log line or a record: control
    characters and lone surrogates escaped, at most ``limit`` characters
    (cut with an ellipsis). For anything that comes from a caller and has
    not passed a check (an unknown field name)."""
    text = value if isinstance(value, str) else type(value).__name__
    if len(text) > limit * 8:
        text = text[: limit * 8]
    text = _FORBIDDEN.sub(lambda m: f"\\x{{{ord(m.group()):x}}}", text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _length_reason(bound: Bound, length: int) -> str:
    if length > bound.maximum:
        return f"must be at most {bound.maximum} {bound.unit}"
    return f"must be at least {bound.minimum} {bound.unit}"


def check_string(value: Any, field: str, bound: str | Bound, *, nullable: bool = False,
                 label: str | None = None) -> str | None:
    """A string within ``bound`` (a BOUNDS key or a Bound), without control
    characters or lone surrogates; None passes when ``nullable``.
    ``field`` is what the error names (``label`` overrides it)."""
    limits = BOUNDS[bound] if isinstance(bound, str) else bound
    name = label or field
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise InvalidInput(name, "must be a string or null" if nullable else "must be a string")
    if not (limits.minimum or 0) <= len(value) <= limits.maximum:
        raise InvalidInput(name, _length_reason(limits, len(value)))
    if _FORBIDDEN.search(value):
        raise InvalidInput(name, "must not contain control characters or lone surrogates")
    return value


def check_int(value: Any, field: str, bound: str | Bound) -> int:
    """An integer (not a boolean, not a float) within ``bound``."""
    limits = BOUNDS[bound] if isinstance(bound, str) else bound
    if not _is_int(value):
        raise InvalidInput(field, "must be an integer")
    if limits.minimum is not None and value < limits.minimum:
        raise InvalidInput(field, f"must be at least {limits.minimum}")
    if value > limits.maximum:
        raise InvalidInput(field, f"must be at most {limits.maximum}")
    return value


def check_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(field, "must be a boolean")
    return value


def check_choice(value: Any, field: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (strings; compared exactly)."""
    if not isinstance(value, str) or value not in choices:
        raise InvalidInput(field, "must be one of " + ", ".join(choices))
    return value


def check_list(value: Any, field: str, bound: str | Bound, *, nullable: bool = True) -> list:
    """A list of at most ``bound`` entries (None is an empty list when
    ``nullable``)."""
    limits = BOUNDS[bound] if isinstance(bound, str) else bound
    if value is None and nullable:
        return []
    if not isinstance(value, list):
        raise InvalidInput(field, "must be a list")
    if len(value) > limits.maximum:
        raise InvalidInput(field, f"must have at most {limits.maximum} entries")
    return value


def check_map(value: Any, field: str, bound: str | Bound, *, nullable: bool = True) -> dict:
    """An object of at most ``bound`` entries (None is empty when ``nullable``)."""
    limits = BOUNDS[bound] if isinstance(bound, str) else bound
    if value is None and nullable:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(field, "must be an object")
    if len(value) > limits.maximum:
        raise InvalidInput(field, f"must have at most {limits.maximum} entries")
    return value


def check_scalar(value: Any, field: str, string_bound: str | Bound) -> Any:
    """A JSON scalar: a string within ``string_bound``, a JSON-safe integer,
    a finite float, a boolean or null."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return check_string(value, field, string_bound)
    limits = BOUNDS["integer"]
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(field, "must be a finite number")
        if not limits.minimum <= value <= limits.maximum:  # type: ignore[operator]
            raise InvalidInput(field, f"must be between {limits.minimum} and {limits.maximum}")
        return value
    raise InvalidInput(field, "must be a string, number, boolean or null")


def validate_uuid(value: Any, field: str = "instance_uuid") -> str:
    """A uuid in its one canonical form (lower-case, 8-4-4-4-12)."""
    if not isinstance(value, str) or len(value) != 36 or not _CANONICAL_UUID.fullmatch(value):
        # The reason is part of the wire contract (docs/rpc-api.md): a
        # "UUID string" is the canonical form only.
        raise InvalidInput(field, "must be a UUID string")
    return value


def is_uuid(value: Any) -> bool:
    """Whether ``value`` is a canonical uuid (safe for log lines and keys)."""
    return isinstance(value, str) and len(value) == 36 and bool(
        _CANONICAL_UUID.fullmatch(value))


def check_arguments_size(kwargs: dict[str, Any]) -> None:
    """All arguments of one call together, as JSON, within BOUNDS['arguments'],
    so no single call can make the agent hold or store megabytes."""
    limit = BOUNDS["arguments"].maximum
    try:
        size = len(json.dumps(kwargs, ensure_ascii=False, allow_nan=True,
                              check_circular=False, default=repr).encode("utf-8",
                                                                         "surrogatepass"))
    except (ValueError, TypeError, RecursionError):
        raise InvalidInput("arguments", "must be JSON values") from None
    if size > limit:
        raise InvalidInput("arguments", f"must be at most {limit} bytes as JSON")


# --------------------------------------------------------------------------- build

def validate_flavor(flavor: Any, field: str = "flavor") -> dict[str, int]:
    """``{vcpus, memory_mb, root_gb}``, integers within their bounds;
    returned with exactly those keys (others are refused)."""
    if not isinstance(flavor, dict):
        raise InvalidInput(field, "must be an object")
    for key in flavor:
        if key not in FLAVOR_FIELDS:
            raise InvalidInput(f"{field}.{safe_text(key)}", "is not a known field")
    out = {}
    for key in FLAVOR_FIELDS:
        if key not in flavor:
            raise InvalidInput(f"{field}.{key}", "is required")
        out[key] = check_int(flavor[key], f"{field}.{key}", f"flavor.{key}")
    return out


def validate_image(image: Any, field: str = "image") -> dict[str, str | None]:
    """``{id, url, disk_format}``, each a bounded string or null (other keys
    are dropped, never stored)."""
    if not isinstance(image, dict):
        raise InvalidInput(field, "must be an object")
    return {k: check_string(image.get(k), f"{field}.{k}", f"image.{k}", nullable=True)
            for k in IMAGE_FIELDS}


def validate_rescue_image(image: Any) -> dict[str, str | None] | None:
    """rescue_instance's ``rescue_image``: null (a blank rescue disk) or an
    image object as in build_instance."""
    if image is None:
        return None
    return validate_image(image, "rescue_image")


def validate_page(limit: Any, marker: Any) -> tuple[int, str | None]:
    """list_instances' ``limit`` (BOUNDS['limit'], default DEFAULT_PAGE) and
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
    check_string(value, field, Bound(1, max_len, CHARS))
    if choices is not None and value not in choices:
        raise InvalidInput(field, f"must be one of {', '.join(choices)}")
    return value


def _validate_networks(networks: Any) -> list[Any]:
    networks = check_list(networks, "networks", "networks")
    out: list[Any] = []
    for i, net in enumerate(networks):
        path = f"networks.{i}"
        if isinstance(net, str):
            out.append(check_string(net, path, "networks.<i>"))
        elif isinstance(net, dict):
            check_map(net, path, "networks.<i>.entries", nullable=False)
            entry = {}
            for key, value in net.items():
                check_string(key, path, "networks.<i>.<key>", label=f"{path} keys")
                entry[key] = check_scalar(value, f"{path}.{key}", "networks.<i>.<value>")
            out.append(entry)
        else:
            raise InvalidInput(path, "must be an object or a string")
    return out


def _validate_metadata(metadata: Any) -> dict[str, Any]:
    metadata = check_map(metadata, "metadata", "metadata")
    out = {}
    for key, value in metadata.items():
        check_string(key, "metadata", "metadata.<key>", label="metadata keys")
        out[key] = check_scalar(value, f"metadata.{key}", "metadata.<value>")
    return out


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
            raise InvalidInput(safe_text(key), "is not a known field")

    uuid = validate_uuid(instance["uuid"], "uuid")
    name = instance["name"]
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("name", "must be a non-empty string")
    check_string(name, "name", "name")
    return {
        "uuid": uuid,
        "name": name,
        "flavor": validate_flavor(instance["flavor"]),
        "image": validate_image(instance["image"]),
        "networks": _validate_networks(instance.get("networks")),
        "metadata": _validate_metadata(instance.get("metadata")),
    }


def valid_name_or_empty(name: Any) -> str:
    """``name`` if it passes the name check, else "" (what a refused build
    may record: nothing of a bad value)."""
    try:
        value = check_string(name, "name", "name")
    except InvalidInput:
        return ""
    return value if value and value.strip() else ""
