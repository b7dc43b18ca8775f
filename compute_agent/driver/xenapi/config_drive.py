"""The OpenStack config drive: an ISO 9660 image labelled ``config-2`` with
``openstack/latest/meta_data.json``, ``network_data.json`` and
``user_data``, for guests that configure themselves with cloud-init
instead of a guest agent.

The image is written with pycdlib (Rock Ridge and Joliet names, as
cloud-init and Windows' cloudbase-init read them) to a temporary file,
imported into a new VDI through ``PUT /import_raw_vdi`` (a tracked task,
vdi_upload.py, on the image import's transfer path), made read-only and
attached as a read-only CD before the first boot. The VDI is marked as the
instance's (``compute_agent_disk: config-drive``), so it is destroyed with
the instance like its other disks.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from compute_agent.driver.base import Operation
from compute_agent.driver.xenapi import ownership
from compute_agent.driver.xenapi.session import SessionPool
from compute_agent.driver.xenapi.storage import Storage
from compute_agent.driver.xenapi.tasks import TaskRunner
from compute_agent.driver.xenapi.vdi_upload import upload_raw

LOG = logging.getLogger(__name__)

LABEL = "config-2"
MiB = 1024**2
# ISO 9660 names (upper case, level 3) -> the Rock Ridge / Joliet names.
FILES = (("META_DATA.JSON", "meta_data.json"), ("NETWORK_DATA.JSON", "network_data.json"),
         ("USER_DATA", "user_data"))


def meta_data(instance: dict[str, Any]) -> dict[str, Any]:
    keys = instance.get("public_keys") or {}
    return {
        "uuid": instance["uuid"],
        "name": instance["name"],
        "hostname": instance["name"],
        "launch_index": 0,
        "availability_zone": None,
        "project_id": None,
        "meta": {k: str(v) for k, v in (instance.get("metadata") or {}).items()},
        "public_keys": dict(keys),
        "keys": [{"name": k, "type": "ssh", "data": v} for k, v in sorted(keys.items())],
    }


def network_data(ports: list[dict[str, Any]]) -> dict[str, Any]:
    """OpenStack network_data.json for the instance's ports (DHCP on each)."""
    links, networks = [], []
    for i, port in enumerate(ports):
        link = f"tap{port['id'][:11]}"
        links.append({"id": link, "type": "ovs", "vif_id": port["id"],
                      "ethernet_mac_address": port.get("mac_address") or None, "mtu": None})
        networks.append({"id": f"network{i}", "link": link, "type": "ipv4_dhcp",
                         "network_id": port.get("network") or None})
    return {"links": links, "networks": networks, "services": []}


def build_iso(instance: dict[str, Any], ports: list[dict[str, Any]], out: Path) -> int:
    """Write the config drive image to ``out``; returns its size in bytes."""
    contents = {
        "meta_data.json": json.dumps(meta_data(instance), sort_keys=True).encode(),
        "network_data.json": json.dumps(network_data(ports), sort_keys=True).encode(),
    }
    user_data = instance.get("user_data")
    if user_data:
        contents["user_data"] = user_data.encode()
    # Imported here: pycdlib costs ~1.5 MB in every agent that loads it,
    # and only instances with a config drive need it.
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=LABEL, joliet=3, rock_ridge="1.09")
    try:
        for iso_dir, name in (("/OPENSTACK", "openstack"), ("/OPENSTACK/LATEST", "latest")):
            joliet = "/openstack" if name == "openstack" else "/openstack/latest"
            iso.add_directory(iso_dir, rr_name=name, joliet_path=joliet)
        for iso_name, name in FILES:
            if name not in contents:
                continue
            data = contents[name]
            iso.add_fp(io.BytesIO(data), len(data), f"/OPENSTACK/LATEST/{iso_name};1",
                       rr_name=name, joliet_path=f"/openstack/latest/{name}")
        iso.write(str(out))
    finally:
        iso.close()
    return out.stat().st_size


class ConfigDrive:
    def __init__(self, pool: SessionPool, runner: TaskRunner, storage: Storage,
                 agent_host: str):
        self.pool = pool
        self.runner = runner
        self.storage = storage
        self.agent_host = agent_host

    def attach(self, op: Operation, instance: dict[str, Any], vm: str,
               ports: list[dict[str, Any]]) -> str:
        """Build, import and attach the config drive of a halted VM; returns
        the VDI ref."""
        with tempfile.TemporaryDirectory(prefix="config-drive-") as tmp:
            path = Path(tmp) / "config-2.iso"
            size = build_iso(instance, ports, path)
            virtual = max(MiB, (size + MiB - 1) // MiB * MiB)
            sr = self.storage.find_sr()
            vdi = self.pool.call("VDI.create", {
                "name_label": f"{instance['name']} config drive",
                "name_description": f"config drive of instance {instance['uuid']}",
                "SR": sr, "virtual_size": str(virtual), "type": "user", "sharable": False,
                "read_only": False,
                "other_config": ownership.marks(instance["uuid"], self.agent_host,
                                                **{ownership.DISK_KEY: "config-drive"}),
                "xenstore_data": {}, "sm_config": {}, "tags": [],
            })
            upload_raw(self.pool, self.runner, op, vdi, path, "Import config drive")
        self.pool.call("VDI.set_read_only", vdi, True)
        device = sorted((d for d in self.pool.call("VM.get_allowed_VBD_devices", vm)
                         if d != "0"), key=int)[0]
        self.pool.call("VBD.create", {
            "VM": vm, "VDI": vdi, "userdevice": device, "bootable": False, "mode": "RO",
            "type": "CD", "empty": False, "unpluggable": True,
            "other_config": ownership.marks(instance["uuid"], self.agent_host),
            "qos_algorithm_type": "", "qos_algorithm_params": {},
        })
        LOG.info("Config drive of %s attached (%d bytes)", instance["uuid"], size)
        return vdi
