"""Validation of the RPC 1.4 arguments (volumes, ports, the guest agent, a
build's block devices and config drive) against validation.BOUNDS.

Every check here is a bound of BOUNDS (documented in docs/rpc-api.md 3.3);
the meaning of the values (an iSCSI target, a MAC address, a device name)
is checked by the driver that uses them. Errors name the field and the
bound, never the value: ``connection_info`` holds CHAP credentials and
``password``/``contents``/``user_data`` are the caller's secrets.
"""

from __future__ import annotations

from typing import Any

from compute_agent.compute.validation import (
    BOUNDS,
    check_bool,
    check_int,
    check_list,
    check_map,
    check_scalar,
    check_string,
    safe_text,
)
from compute_agent.exceptions import InvalidInput

PORT_FIELDS = ("id", "mac_address", "network")


def validate_item_id(value: Any, field: str, bound: str) -> str:
    """A volume or port id (``volume_id``/``port_id``/``port.id``), stripped."""
    check_string(value, field, bound)
    if not value.strip():  # type: ignore[union-attr]
        raise InvalidInput(field, "must be a non-empty string")
    return value.strip()  # type: ignore[union-attr]


def validate_device(value: Any, field: str = "device") -> Any:
    """attach_volume's (and a block device mapping's) ``device``: null, a
    name like ``xvdb``/``/dev/xvdb`` or a device number."""
    if value is None or isinstance(value, str):
        return check_string(value, field, "device", nullable=True)
    if isinstance(value, int) and not isinstance(value, bool):
        return check_int(value, field, "device.number")
    raise InvalidInput(field, "must be a device name like xvdb")


def _data_value(value: Any, field: str) -> Any:
    """A value of connection_info's ``data``: a scalar, or a list or object
    of at most BOUNDS['connection_info.data.entries'] scalars (Cinder's
    multipath lists, qos_specs)."""
    if isinstance(value, list):
        check_list(value, field, "connection_info.data.entries", nullable=False)
        return [check_scalar(v, f"{field}.{i}", "connection_info.<value>")
                for i, v in enumerate(value)]
    if isinstance(value, dict):
        check_map(value, field, "connection_info.data.entries", nullable=False)
        out = {}
        for key, item in value.items():
            check_string(key, field, "connection_info.<key>", label=f"{field} keys")
            out[key] = check_scalar(item, f"{field}.{key}", "connection_info.<value>")
        return out
    return check_scalar(value, field, "connection_info.<value>")


def validate_connection_info(info: Any, field: str = "connection_info") -> dict[str, Any]:
    """Cinder's connection_info, every key and value bounded (CHAP fields
    are ``data`` values like the others, and never echoed)."""
    check_map(info, field, "connection_info", nullable=False)
    out: dict[str, Any] = {}
    for key, value in info.items():
        check_string(key, field, "connection_info.<key>", label=f"{field} keys")
        if key == "data":
            data_field = f"{field}.data"
            check_map(value, data_field, "connection_info.data", nullable=False)
            data = {}
            for dkey, dvalue in value.items():
                check_string(dkey, data_field, "connection_info.<key>",
                             label=f"{data_field} keys")
                data[dkey] = _data_value(dvalue, f"{data_field}.{dkey}")
            out[key] = data
        else:
            out[key] = check_scalar(value, f"{field}.{key}", "connection_info.<value>")
    return out


def validate_port(port: Any, field: str = "port") -> dict[str, Any]:
    """``{id, mac_address?, network?}`` (attach_interface, a build's port)."""
    if not isinstance(port, dict):
        raise InvalidInput(field, "must be an object")
    for key in port:
        if key not in PORT_FIELDS:
            raise InvalidInput(f"{field}.{safe_text(key)}", "is not a known field")
    out: dict[str, Any] = {"id": validate_item_id(port.get("id"), f"{field}.id", "port.id")}
    for key in ("mac_address", "network"):
        if key in port:
            out[key] = check_string(port[key], f"{field}.{key}", f"port.{key}",
                                    nullable=True)
    return out



def validate_block_device_mapping(bdm: Any) -> list[dict[str, Any]]:
    field = "block_device_mapping"
    out = []
    for i, entry in enumerate(check_list(bdm, field, field)):
        path = f"{field}.{i}"
        if not isinstance(entry, dict):
            raise InvalidInput(path, "must be an object")
        for key in entry:
            if key not in ("volume_id", "connection_info", "device"):
                raise InvalidInput(f"{path}.{safe_text(key)}", "is not a known field")
        item = {"volume_id": validate_item_id(entry.get("volume_id"), f"{path}.volume_id",
                                                "volume_id"),
                "connection_info": validate_connection_info(entry.get("connection_info"),
                                                            f"{path}.connection_info")}
        if entry.get("device") is not None:
            item["device"] = validate_device(entry["device"], f"{path}.device")
        out.append(item)
    return out


def validate_user_data(value: Any) -> str:
    """A string of at most BOUNDS['user_data'] bytes as UTF-8 (it may hold
    newlines and tabs: it is a script or cloud-config, never logged)."""
    limit = BOUNDS["user_data"].maximum
    if not isinstance(value, str):
        raise InvalidInput("user_data", "must be a string")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput("user_data", "must not contain lone surrogates") from None
    if size > limit:
        raise InvalidInput("user_data", f"must be at most {limit} bytes")
    return value


def validate_public_keys(value: Any) -> dict[str, str]:
    keys = check_map(value, "public_keys", "public_keys", nullable=False)
    out = {}
    for name, key in keys.items():
        check_string(name, "public_keys", "public_keys.<key>", label="public_keys keys")
        out[name] = check_string(key, f"public_keys.{name}", "public_keys.<value>")
    return out


def validate_build_devices(instance: dict[str, Any]) -> dict[str, Any]:
    """A build's 1.4 fields, those given: block_device_mapping (when not
    empty), config_drive, user_data, public_keys."""
    out: dict[str, Any] = {}
    bdm = validate_block_device_mapping(instance.get("block_device_mapping"))
    if bdm:
        out["block_device_mapping"] = bdm
    if instance.get("config_drive") is not None:
        out["config_drive"] = check_bool(instance["config_drive"], "config_drive")
    if instance.get("user_data") is not None:
        out["user_data"] = validate_user_data(instance["user_data"])
    if instance.get("public_keys") is not None:
        out["public_keys"] = validate_public_keys(instance["public_keys"])
    return out


def validate_password(value: Any) -> str:
    return check_string(value, "password", "password")  # type: ignore[return-value]


def validate_path(value: Any) -> str:
    path = check_string(value, "path", "path")
    if not path.startswith("/"):  # type: ignore[union-attr]
        raise InvalidInput("path", "must be an absolute path")
    return path  # type: ignore[return-value]


def validate_contents(value: Any) -> bytes:
    """inject_file's ``contents``: a string of at most BOUNDS['contents']
    bytes as UTF-8 (any characters: it is a file)."""
    limit = BOUNDS["contents"].maximum
    if not isinstance(value, str):
        raise InvalidInput("contents", "must be a string")
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("contents", "must not contain lone surrogates") from None
    if len(data) > limit:
        raise InvalidInput("contents", f"must be at most {limit} bytes")
    return data
