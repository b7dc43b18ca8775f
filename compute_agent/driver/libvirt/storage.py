"""Root volumes of instances in a libvirt storage pool.

A volume is the instance's by its name, ``instance-<uuid>-root``: pools keep
no metadata of ours, and the name is unique per pool. The root volume is
sized to the flavor's ``root_gb``, blank or in the format of the image
images.py writes into it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt

from compute_agent.driver.libvirt.domain_xml import DOMAIN_NAME_PREFIX

GiB = 1024**3
ROOT_SUFFIX = "-root"


def root_volume_name(uuid: str) -> str:
    return f"{DOMAIN_NAME_PREFIX}{uuid}{ROOT_SUFFIX}"


def owner_of(volume_name: str) -> str | None:
    """The instance uuid a volume name marks, or None for others' volumes."""
    if not volume_name.startswith(DOMAIN_NAME_PREFIX):
        return None
    rest = volume_name[len(DOMAIN_NAME_PREFIX):]
    if not rest.endswith(ROOT_SUFFIX):
        return None
    return rest[: -len(ROOT_SUFFIX)] or None


def volume_xml(name: str, size_bytes: int, fmt: str) -> str:
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = name
    ET.SubElement(vol, "capacity", unit="bytes").text = str(size_bytes)
    # Thin: nothing is allocated up front.
    ET.SubElement(vol, "allocation", unit="bytes").text = "0"
    target = ET.SubElement(vol, "target")
    ET.SubElement(target, "format", type=fmt)
    return ET.tostring(vol, encoding="unicode")


class Pool:
    """The configured storage pool on the current connection."""

    def __init__(self, name: str, volume_format: str):
        self.name = name
        self.volume_format = volume_format

    def lookup(self, conn: libvirt.virConnect) -> libvirt.virStoragePool:
        return conn.storagePoolLookupByName(self.name)

    def ensure_root(self, conn: libvirt.virConnect, uuid: str, root_gb: int,
                    fmt: str | None = None,
                    size_bytes: int | None = None) -> libvirt.virStorageVol:
        """The instance's root volume in ``fmt`` (the pool's volume_format
        unless told) of ``size_bytes`` (``root_gb`` GiB, at least one,
        unless told), created blank (or the one a retried build made
        already)."""
        pool = self.lookup(conn)
        name = root_volume_name(uuid)
        try:
            return pool.storageVolLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise
        size = size_bytes if size_bytes else max(1, int(root_gb)) * GiB
        return pool.createXML(volume_xml(name, size, fmt or self.volume_format), 0)

    def delete_instance_volumes(self, conn: libvirt.virConnect, uuid: str) -> int:
        """Delete every volume of the instance; returns how many."""
        deleted = 0
        for vol in self.lookup(conn).listAllVolumes():
            if owner_of(vol.name()) == uuid:
                vol.delete(0)
                deleted += 1
        return deleted

    def instance_volumes(self, conn: libvirt.virConnect) -> dict[str, list[str]]:
        """instance uuid -> names of its volumes in the pool."""
        found: dict[str, list[str]] = {}
        for vol in self.lookup(conn).listAllVolumes():
            uuid = owner_of(vol.name())
            if uuid is not None:
                found.setdefault(uuid, []).append(vol.name())
        return found

    def usage_gb(self, conn: libvirt.virConnect) -> tuple[int, int]:
        """(capacity, allocation) of the pool in GiB."""
        _state, capacity, allocation, _available = self.lookup(conn).info()
        return capacity // GiB, allocation // GiB
