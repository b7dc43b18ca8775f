"""How the agent marks what it creates in dom0, so that it can tell its own
VMs and disks from everyone else's (and find them again after a crash)."""

from __future__ import annotations

from typing import Any

# Keys in the other_config of VMs and VDIs the agent creates.
INSTANCE_KEY = "compute_agent_instance_uuid"
HOST_KEY = "compute_agent_host"
# On VDIs: which disk of the instance it is ("root", "rescue",
# "resize-backup", ...).
DISK_KEY = "compute_agent_disk"
ROOT_DISK, RESCUE_DISK, RESIZE_BACKUP = "root", "rescue", "resize-backup"
# On a rescue VM (marked as the instance's too): "true".
RESCUE_KEY = "compute_agent_rescue"


def marks(instance_uuid: str, agent_host: str, **extra: str) -> dict[str, str]:
    return {INSTANCE_KEY: instance_uuid, HOST_KEY: agent_host, **extra}


def instance_of(record: dict[str, Any]) -> str | None:
    """The instance uuid an object was created for, or None."""
    value = (record.get("other_config") or {}).get(INSTANCE_KEY)
    return value or None


def owned_by(record: dict[str, Any], agent_host: str) -> bool:
    return (record.get("other_config") or {}).get(HOST_KEY) == agent_host


def disk_of(record: dict[str, Any]) -> str | None:
    """Which of its instance's disks a VDI is (DISK_KEY), or None."""
    return (record.get("other_config") or {}).get(DISK_KEY) or None


def is_rescue(record: dict[str, Any]) -> bool:
    """Whether a VM is the rescue VM of its instance, not the instance's own."""
    return (record.get("other_config") or {}).get(RESCUE_KEY) == "true"
