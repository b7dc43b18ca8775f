"""What a freshly installed pool looks like: a pool, N hosts each with
metrics, CPUs, a control domain, a management PIF on the shared management
network and a local SR; the shared Tools ISO SR of an XCP-ng pool holding
guest-tools.iso; and a few templates, each with the disk plan
(other_config "disks") that VM.provision turns into disks."""

from __future__ import annotations

from dataclasses import dataclass

from xapisim.store import Store, now_datetime

MiB = 1024 * 1024
GiB = 1024 * MiB
DOM0_MEMORY = 4 * GiB

# name, domain type, other_config extras, root disk size (xapi's templates
# carry it as other_config "disks": <provision><disk .../></provision>)
TEMPLATES = [
    ("Other install media", "hvm", {}, 8 * GiB),
    ("Debian Bookworm 12", "pv", {"linux_template": "true"}, 10 * GiB),
    ("Ubuntu Jammy Jammy 22.04", "hvm", {"linux_template": "true"}, 10 * GiB),
    ("Windows Server 2022 (64-bit)", "hvm", {}, 32 * GiB),
]
# The Tools ISO SR as XCP-ng's xapi creates it (dbsync's create_tools_sr)
TOOLS_SR_NAME = "XCP-ng Tools"
TOOLS_ISO = "guest-tools.iso"
TOOLS_ISO_SIZE = 62_074_880
TOOLS_ISO_DIR = "/opt/xensource/packages/iso"


def disks_entry(size: int) -> str:
    """A template's other_config "disks": one bootable system disk of
    ``size`` bytes on the pool's default SR (sr="")."""
    return (f'<provision><disk device="0" size="{size}" sr="" bootable="true" '
            f'type="system"/></provision>')


@dataclass(frozen=True)
class PoolShape:
    """What the simulator was asked to build: one host per address."""

    addresses: list[str]
    host_memory_mb: int = 65536
    host_cpus: int = 8
    sr_size_gb: int = 2048
    pool_name: str = "xapi-sim pool"


def bootstrap(store: Store, shape: PoolShape) -> None:
    net = store.create(
        "network",
        {
            "name_label": "Pool-wide network associated with eth0",
            "bridge": "xenbr0",
            "MTU": 1500,
            "managed": True,
            "other_config": {"automatic": "true"},
        },
    )
    hosts = []
    for i, address in enumerate(shape.addresses):
        hosts.append(_make_host(store, shape, i, address, net))
    store.create(
        "pool",
        {
            "name_label": shape.pool_name,
            "master": hosts[0],
            "default_SR": store.field("PBD", store.field("host", hosts[0], "PBDs")[0], "SR"),
            "suspend_image_SR": store.field("PBD", store.field("host", hosts[0], "PBDs")[0], "SR"),
            "crash_dump_SR": store.field("PBD", store.field("host", hosts[0], "PBDs")[0], "SR"),
            "other_config": {},
            "ha_enabled": False,
            "restrictions": {},
        },
    )
    _make_tools_sr(store, hosts)
    for label, kind, extra, disk in TEMPLATES:
        _make_template(store, label, kind, {**extra, "disks": disks_entry(disk)})


def _make_host(store: Store, shape: PoolShape, index: int, address: str, net: str) -> str:
    mem_total = shape.host_memory_mb * MiB
    metrics = store.create(
        "host_metrics",
        {
            "memory_total": mem_total,
            "memory_free": mem_total - DOM0_MEMORY,
            "live": True,
            "last_updated": now_datetime(),
        },
    )
    host = store.create(
        "host",
        {
            "name_label": f"host{index + 1}",
            "name_description": "simulated by xapi-sim",
            "hostname": f"host{index + 1}",
            "address": address,
            "enabled": True,
            "metrics": metrics,
            "API_version_major": 2,
            "API_version_minor": 21,
            "API_version_vendor": "XenSource",
            "software_version": {
                "product_brand": "XCP-ng",
                "product_version": "8.3.0",
                "platform_name": "XCP",
                "platform_version": "3.4.0",
                "xapi": "24.19",
                "xen": "4.17.4",
                "hostname": f"host{index + 1}",
            },
            "cpu_info": {
                "cpu_count": str(shape.host_cpus),
                "socket_count": "1",
                "vendor": "GenuineIntel",
                "speed": "2400.000",
                "modelname": "Simulated CPU",
                "family": "6",
                "model": "85",
            },
            "capabilities": ["xen-3.0-x86_64", "hvm-3.0-x86_64"],
            "memory_overhead": 0,
            "other_config": {"agent_start_time": "0"},
            "sched_policy": "credit",
            "license_params": {},
            "edition": "xcp-ng",
        },
    )
    for n in range(shape.host_cpus):
        store.create(
            "host_cpu",
            {
                "host": host,
                "number": n,
                "vendor": "GenuineIntel",
                "speed": 2400,
                "modelname": "Simulated CPU",
                "family": 6,
                "model": 85,
                "utilisation": 0.0,
            },
        )
    store.create(
        "PIF",
        {
            "device": "eth0",
            "network": net,
            "host": host,
            "MAC": f"02:00:00:00:{index // 256:02x}:{index % 256:02x}",
            "MTU": 1500,
            "physical": True,
            "currently_attached": True,
            "ip_configuration_mode": "Static",
            "IP": address,
            "netmask": "255.0.0.0",
            "gateway": "",
            "DNS": "",
            "management": True,
            "primary_address_type": "IPv4",
        },
    )
    sr = store.create(
        "SR",
        {
            "name_label": f"Local storage on host{index + 1}",
            "type": "ext",
            "content_type": "user",
            "physical_size": shape.sr_size_gb * GiB,
            "physical_utilisation": 0,
            "virtual_allocation": 0,
            "shared": False,
            "other_config": {"i18n-key": "local-storage"},
            "sm_config": {"devserial": "scsi-simulated"},
            "allowed_operations": [
                "vdi_create", "vdi_destroy", "vdi_resize", "vdi_clone", "vdi_snapshot",
                "scan", "plug", "unplug", "update", "vdi_introduce",
            ],
        },
    )
    store.create(
        "PBD",
        {"host": host, "SR": sr, "device_config": {"device": "/dev/sdb"},
         "currently_attached": True},
    )
    dom0_metrics = store.create(
        "VM_metrics",
        {"memory_actual": DOM0_MEMORY, "VCPUs_number": shape.host_cpus,
         "start_time": now_datetime(), "state": [], "current_domain_type": "pv"},
    )
    dom0 = store.create(
        "VM",
        {
            "name_label": f"Control domain on host: host{index + 1}",
            "power_state": "Running",
            "is_control_domain": True,
            "resident_on": host,
            "domid": 0,
            "memory_static_max": DOM0_MEMORY,
            "memory_dynamic_max": DOM0_MEMORY,
            "memory_dynamic_min": DOM0_MEMORY,
            "memory_static_min": DOM0_MEMORY,
            "memory_target": DOM0_MEMORY,
            "VCPUs_max": shape.host_cpus,
            "VCPUs_at_startup": shape.host_cpus,
            "metrics": dom0_metrics,
            "domain_type": "pv",
            "affinity": host,
        },
    )
    store.create("console", {"VM": dom0, "protocol": "rfb",
                             "location": f"https://{address}/console?ref=" + dom0})
    store.update("host", host, control_domain=dom0)
    return host


def _make_tools_sr(store: Store, hosts: list[str]) -> str:
    """The shared ISO SR of the guest tools, plugged on every host."""
    sr = store.create("SR", {
        "name_label": TOOLS_SR_NAME,
        "name_description": f"{TOOLS_SR_NAME} ISOs",
        "type": "iso",
        "content_type": "iso",
        "shared": True,
        "is_tools_sr": True,
        "physical_size": TOOLS_ISO_SIZE,
        "physical_utilisation": TOOLS_ISO_SIZE,
        "virtual_allocation": TOOLS_ISO_SIZE,
        "sm_config": {},
        "other_config": {"xensource_internal": "true", "i18n-key": "xenserver-tools",
                         "i18n-original-value-name_label": TOOLS_SR_NAME,
                         "i18n-original-value-name_description": f"{TOOLS_SR_NAME} ISOs"},
    })
    for host in hosts:
        store.create("PBD", {"host": host, "SR": sr, "currently_attached": True,
                             "device_config": {"location": TOOLS_ISO_DIR,
                                               "legacy_mode": "true"}})
    store.create("VDI", {
        "name_label": TOOLS_ISO, "name_description": "", "SR": sr, "location": TOOLS_ISO,
        "virtual_size": TOOLS_ISO_SIZE, "physical_utilisation": TOOLS_ISO_SIZE,
        "type": "user", "sharable": False, "read_only": True, "managed": True,
        "is_tools_iso": True, "other_config": {}, "sm_config": {}, "xenstore_data": {},
    })
    return sr


def _make_template(store: Store, label: str, kind: str, extra: dict[str, str]) -> str:
    other = {"install-methods": "cdrom,nfs,http,ftp", "default_template": "true", **extra}
    metrics = store.create("VM_metrics", {"VCPUs_number": 0, "state": []})
    return store.create(
        "VM",
        {
            "name_label": label,
            "name_description": f"Template for {label}",
            "is_a_template": True,
            "is_default_template": True,
            "power_state": "Halted",
            "memory_static_max": 2 * GiB,
            "memory_dynamic_max": 2 * GiB,
            "memory_dynamic_min": 2 * GiB,
            "memory_static_min": 512 * MiB,
            "VCPUs_max": 2,
            "VCPUs_at_startup": 2,
            "HVM_boot_policy": "BIOS order" if kind == "hvm" else "",
            "HVM_boot_params": {"order": "cdn"} if kind == "hvm" else {},
            "PV_bootloader": "pygrub" if kind == "pv" else "",
            "domain_type": kind,
            "platform": {"acpi": "1", "apic": "true", "pae": "true", "viridian": "false"},
            "other_config": other,
            "actions_after_shutdown": "destroy",
            "actions_after_reboot": "restart",
            "actions_after_crash": "restart",
            "user_version": 1,
            "domid": -1,
            "metrics": metrics,
        },
    )
