"""The libvirt domain definition of an instance: what domain the instance
gets on this host (:func:`instance_spec`: its flavor, boot mode and NICs
under the [libvirt] settings), built as an XML tree (:func:`build`).

One builder serves Xen and KVM; what differs is the device family, chosen
from the hypervisor and the boot mode (:func:`device_family`):

========  ======  ==========  ====================  ============  ==========
virt      mode    os type     disk (target, bus)    NIC model     console
========  ======  ==========  ====================  ============  ==========
xen       pv      xen         xvda, xen             netfront      xen (hvc0)
xen       hvm     hvm         xvda, xen             netfront      serial
kvm       hvm     hvm         vda, virtio           virtio        serial
========  ======  ==========  ====================  ============  ==========

A Xen PV guest boots through a bootloader run in dom0 (pygrub) or a kernel
given directly; HVM guests boot from their disk. Every domain carries the
agent's metadata element (instance uuid, instance name, agent host): it is how
the agent tells its domains from others and finds them after a restart. The
domain's own uuid is the instance's.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from compute_agent.driver.libvirt.detection import KVM, XEN

# The namespace of the agent's <metadata> element (libvirt keeps elements
# of foreign namespaces verbatim).
METADATA_NS = "http://compute-agent.invalid/xmlns/libvirt/instance/1.0"
METADATA_PREFIX = "agent"

PV, HVM = "pv", "hvm"
DOMAIN_NAME_PREFIX = "instance-"


@dataclass(frozen=True)
class DeviceFamily:
    os_type: str
    disk_target: str
    disk_bus: str
    nic_model: str
    console_target: str  # 'xen' (the PV console) or 'serial'


FAMILIES = {
    (XEN, PV): DeviceFamily("xen", "xvda", "xen", "netfront", "xen"),
    (XEN, HVM): DeviceFamily("hvm", "xvda", "xen", "netfront", "serial"),
    (KVM, HVM): DeviceFamily("hvm", "vda", "virtio", "virtio", "serial"),
}


def device_family(virt_type: str, mode: str) -> DeviceFamily:
    """The devices of a guest of ``virt_type`` booted in ``mode``; KVM only
    knows HVM."""
    return FAMILIES[(virt_type, HVM if virt_type == KVM else mode)]


def boot_mode(virt_type: str, xen_hvm: bool, image: dict | None, metadata: dict | None) -> str:
    """PV or HVM: KVM is always HVM; Xen is PV unless ``[libvirt] xen_hvm``,
    the image (``vm_mode``, also under ``properties``) or the instance's
    metadata (``vm_mode``) asks for HVM."""
    if virt_type == KVM:
        return HVM
    image = image or {}
    asked = [image.get("vm_mode"), (image.get("properties") or {}).get("vm_mode"),
             (metadata or {}).get("vm_mode")]
    if xen_hvm or any(str(v).lower() == HVM for v in asked if v):
        return HVM
    return PV


@dataclass(frozen=True)
class PVBoot:
    """How a Xen PV guest boots: a dom0 bootloader, or a kernel (with
    ramdisk and command line) given directly."""

    bootloader: str = "pygrub"
    kernel: str = ""
    ramdisk: str = ""
    cmdline: str = ""


@dataclass(frozen=True)
class Disk:
    pool: str
    volume: str
    format: str  # qcow2 or raw


@dataclass(frozen=True)
class Nic:
    network: str = ""  # a libvirt network, or
    bridge: str = ""  # a host bridge
    mac: str = ""


@dataclass
class DomainSpec:
    uuid: str
    title: str
    memory_mb: int
    vcpus: int
    virt_type: str
    mode: str
    disk: Disk
    agent_host: str
    nics: list[Nic] = field(default_factory=list)
    pv_boot: PVBoot = field(default_factory=PVBoot)

    @property
    def name(self) -> str:
        return domain_name(self.uuid)


def domain_name(uuid: str) -> str:
    """Domain names are unique per host, instance names are not: the
    instance's name goes into <title>."""
    return DOMAIN_NAME_PREFIX + uuid


@dataclass(frozen=True)
class DomainSettings:
    """What the [libvirt] options and detection decided."""

    virt_type: str
    xen_hvm: bool
    pv_boot: PVBoot
    default_network: str
    bridge: str
    agent_host: str


def instance_spec(instance: dict[str, Any], settings: DomainSettings, disk: Disk) -> DomainSpec:
    """The domain of ``instance`` (its flavor, image, metadata and
    networks) on this host, its root disk ``disk``."""
    flavor = instance.get("flavor") or {}
    uuid = instance["uuid"]
    return DomainSpec(
        uuid=uuid, title=str(instance.get("name") or uuid),
        memory_mb=int(flavor.get("memory_mb", 512)), vcpus=int(flavor.get("vcpus", 1)),
        virt_type=settings.virt_type,
        mode=boot_mode(settings.virt_type, settings.xen_hvm, instance.get("image"),
                       instance.get("metadata")),
        disk=disk,
        agent_host=settings.agent_host,
        nics=nics_for(instance.get("networks"), settings.default_network, settings.bridge),
        pv_boot=settings.pv_boot,
    )


def nics_for(networks: list[Any] | None, default_network: str, bridge: str) -> list[Nic]:
    """The instance's NICs: one per network entry (a name, or an object
    with ``network``/``name``/``bridge`` and optionally ``mac``); without
    entries, one on the default network (or the configured bridge)."""
    nics = []
    for item in networks or []:
        if isinstance(item, str):
            item = {"network": item}
        if not isinstance(item, dict):
            continue
        mac = str(item.get("mac") or "")
        if item.get("bridge"):
            nics.append(Nic(bridge=str(item["bridge"]), mac=mac))
            continue
        name = next((str(item[k]) for k in ("network", "name", "name_label", "id")
                     if item.get(k)), "")
        if name:
            nics.append(Nic(bridge=bridge, mac=mac) if bridge else Nic(network=name, mac=mac))
    if not nics and (bridge or default_network):
        nics.append(Nic(bridge=bridge) if bridge else Nic(network=default_network))
    return nics


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = text
    return el


def build(spec: DomainSpec) -> str:
    """The domain XML for ``spec`` (a string for virDomainDefineXML)."""
    fam = device_family(spec.virt_type, spec.mode)
    dom = ET.Element("domain", type=spec.virt_type)
    _sub(dom, "name", spec.name)
    _sub(dom, "uuid", spec.uuid)
    _sub(dom, "title", _one_line(spec.title))
    dom.append(metadata_element(spec.uuid, spec.title, spec.agent_host))
    _sub(dom, "memory", str(spec.memory_mb), unit="MiB")
    _sub(dom, "currentMemory", str(spec.memory_mb), unit="MiB")
    _sub(dom, "vcpu", str(spec.vcpus))
    _os(dom, spec, fam)
    if fam.os_type == "hvm":
        features = _sub(dom, "features")
        for feature in ("acpi", "apic", "pae") if spec.virt_type == XEN else ("acpi", "apic"):
            _sub(features, feature)
    _sub(dom, "clock", offset="utc")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")
    devices = _sub(dom, "devices")
    _disk(devices, spec.disk, fam)
    for nic in spec.nics:
        _nic(devices, nic, fam)
    _console(devices, fam)
    ET.indent(dom)
    return ET.tostring(dom, encoding="unicode")


def metadata_element(uuid: str, title: str, agent_host: str) -> ET.Element:
    meta = ET.Element("metadata")
    inst = ET.SubElement(meta, f"{{{METADATA_NS}}}instance")
    for tag, value in (("uuid", uuid), ("name", title), ("host", agent_host)):
        ET.SubElement(inst, f"{{{METADATA_NS}}}{tag}").text = value
    return meta


def parse_metadata(xml: str) -> dict[str, str]:
    """The agent's metadata as {uuid, name, host} from the <instance>
    element libvirt returns for METADATA_NS (or a whole domain XML)."""
    root = ET.fromstring(xml)
    inst = root if _local(root.tag) == "instance" else next(
        (el for el in root.iter() if el.tag == f"{{{METADATA_NS}}}instance"), None)
    if inst is None:
        return {}
    return {_local(child.tag): (child.text or "") for child in inst}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _one_line(text: str) -> str:
    # libvirt refuses a <title> with a newline.
    return " ".join(text.split())


def _os(dom: ET.Element, spec: DomainSpec, fam: DeviceFamily) -> None:
    if spec.mode == "pv" and not spec.pv_boot.kernel:
        _sub(dom, "bootloader", spec.pv_boot.bootloader)
    os_el = _sub(dom, "os")
    _sub(os_el, "type", fam.os_type)
    if spec.mode == "pv":
        if spec.pv_boot.kernel:
            _sub(os_el, "kernel", spec.pv_boot.kernel)
            if spec.pv_boot.ramdisk:
                _sub(os_el, "initrd", spec.pv_boot.ramdisk)
            if spec.pv_boot.cmdline:
                _sub(os_el, "cmdline", spec.pv_boot.cmdline)
    else:
        _sub(os_el, "boot", dev="hd")


def _disk(devices: ET.Element, disk: Disk, fam: DeviceFamily) -> None:
    el = _sub(devices, "disk", type="volume", device="disk")
    _sub(el, "driver", name="qemu", type=disk.format)
    _sub(el, "source", pool=disk.pool, volume=disk.volume)
    _sub(el, "target", dev=fam.disk_target, bus=fam.disk_bus)


def _nic(devices: ET.Element, nic: Nic, fam: DeviceFamily) -> None:
    if nic.bridge:
        el = _sub(devices, "interface", type="bridge")
        if nic.mac:
            _sub(el, "mac", address=nic.mac)
        _sub(el, "source", bridge=nic.bridge)
    else:
        el = _sub(devices, "interface", type="network")
        if nic.mac:
            _sub(el, "mac", address=nic.mac)
        _sub(el, "source", network=nic.network)
    _sub(el, "model", type=fam.nic_model)


def _console(devices: ET.Element, fam: DeviceFamily) -> None:
    if fam.console_target == "xen":
        console = _sub(devices, "console", type="pty")
        _sub(console, "target", type="xen", port="0")
        return
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")


ET.register_namespace(METADATA_PREFIX, METADATA_NS)
