"""How the agent marks what it creates in dom0, so that it can tell its own
VMs and disks from everyone else's (and find them again after a crash)."""

from __future__ import annotations

from typing import Any

# Keys in the other_config of VMs and VDIs the agent creates.
INSTANCE_KEY = "compute_agent_instance_uuid"
HOST_KEY = "compute_agent_host"
# On VDIs: which disk of the instance it is ("root", ...).
DISK_KEY = "compute_agent_disk"


def marks(instance_uuid: str, agent_host: str, **extra: str) -> dict[str, str]:
    return {INSTANCE_KEY: instance_uuid, HOST_KEY: agent_host, **extra}


def instance_of(record: dict[str, Any]) -> str | None:
    """The instance uuid an object was created for, or None."""
    value = (record.get("other_config") or {}).get(INSTANCE_KEY)
    return value or None


def owned_by(record: dict[str, Any], agent_host: str) -> bool:
    return (record.get("other_config") or {}).get(HOST_KEY) == agent_host
