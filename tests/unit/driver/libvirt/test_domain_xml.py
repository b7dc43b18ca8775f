"""Domain XML for Xen PV, Xen HVM and KVM: valid against libvirt's own
schema (``virt-xml-validate`` from libvirt-clients), with the device family
of its hypervisor and mode, and the agent's metadata."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET

import pytest

from compute_agent.driver.libvirt import domain_xml as dx

UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"
CASES = {
    "xen-pv": ("xen", "pv"),
    "xen-hvm": ("xen", "hvm"),
    "kvm": ("kvm", "hvm"),
}


def spec(virt_type, mode, **kw):
    values = dict(
        uuid=UUID, title="web\nserver 1", memory_mb=384, vcpus=2, virt_type=virt_type,
        mode=mode, disk=dx.Disk("images", f"instance-{UUID}-root", "qcow2"),
        agent_host="agent-7", nics=[dx.Nic(network="tenant", mac="52:54:00:12:34:56"),
                                    dx.Nic(bridge="br-ex")])
    values.update(kw)
    return dx.DomainSpec(**values)


def validate(tmp_path, xml: str) -> subprocess.CompletedProcess:
    path = tmp_path / "domain.xml"
    path.write_text(xml)
    return subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("case", CASES)
def test_the_domain_validates_against_libvirts_schema(tmp_path, case):
    xml = dx.build(spec(*CASES[case]))
    done = validate(tmp_path, xml)
    assert done.returncode == 0, f"{case}:\n{xml}\n{done.stdout}{done.stderr}"
    assert "validates" in done.stdout + done.stderr


def test_the_validator_rejects_what_libvirt_would(tmp_path):
    # The check above can fail: a disk bus libvirt does not know is refused.
    root = ET.fromstring(dx.build(spec("kvm", "hvm")))
    root.find("devices/disk/target").set("bus", "xenbus")
    assert validate(tmp_path, ET.tostring(root, encoding="unicode")).returncode != 0


def devices(xml: str) -> dict:
    root = ET.fromstring(xml)
    disk = root.find("devices/disk")
    return {
        "type": root.get("type"),
        "os_type": root.findtext("os/type"),
        "disk": (disk.find("target").get("dev"), disk.find("target").get("bus")),
        "disk_source": dict(disk.find("source").attrib),
        "disk_format": disk.find("driver").get("type"),
        "nics": [i.find("model").get("type") for i in root.findall("devices/interface")],
        "console": root.find("devices/console/target").get("type"),
        "serial": root.find("devices/serial") is not None,
        "bootloader": root.findtext("bootloader"),
        "kernel": root.findtext("os/kernel"),
        "boot": [b.get("dev") for b in root.findall("os/boot")],
        "features": [f.tag for f in root.find("features")] if root.find("features") is not None
        else [],
    }


def test_xen_pv_uses_the_xen_bus_netfront_and_the_pv_console():
    d = devices(dx.build(spec("xen", "pv")))
    assert d["type"] == "xen" and d["os_type"] == "xen"
    assert d["disk"] == ("xvda", "xen")
    assert d["nics"] == ["netfront", "netfront"]
    assert d["console"] == "xen" and not d["serial"]
    assert d["bootloader"] == "pygrub" and d["kernel"] is None
    assert d["features"] == [] and d["boot"] == []


def test_xen_pv_direct_kernel_boot():
    boot = dx.PVBoot(kernel="/var/lib/xen/vmlinuz", ramdisk="/var/lib/xen/initrd",
                     cmdline="root=/dev/xvda1 console=hvc0")
    root = ET.fromstring(dx.build(spec("xen", "pv", pv_boot=boot)))
    assert root.find("bootloader") is None
    assert (root.findtext("os/kernel"), root.findtext("os/initrd"),
            root.findtext("os/cmdline")) == (boot.kernel, boot.ramdisk, boot.cmdline)


def test_xen_hvm_keeps_the_xen_devices_and_boots_from_disk():
    d = devices(dx.build(spec("xen", "hvm")))
    assert d["type"] == "xen" and d["os_type"] == "hvm"
    assert d["disk"] == ("xvda", "xen") and d["nics"] == ["netfront", "netfront"]
    assert d["console"] == "serial" and d["serial"]
    assert d["bootloader"] is None and d["boot"] == ["hd"]
    assert d["features"] == ["acpi", "apic", "pae"]


def test_kvm_uses_virtio_everywhere():
    d = devices(dx.build(spec("kvm", "hvm")))
    assert d["type"] == "kvm" and d["os_type"] == "hvm"
    assert d["disk"] == ("vda", "virtio") and d["nics"] == ["virtio", "virtio"]
    assert d["console"] == "serial" and d["serial"]
    assert d["features"] == ["acpi", "apic"]


def test_kvm_is_hvm_even_when_pv_is_asked():
    assert dx.device_family("kvm", "pv") == dx.device_family("kvm", "hvm")


def test_the_root_disk_is_a_pool_volume_and_memory_vcpus_come_from_the_flavor():
    xml = dx.build(spec("xen", "pv"))
    root = ET.fromstring(xml)
    d = devices(xml)
    assert d["disk_source"] == {"pool": "images", "volume": f"instance-{UUID}-root"}
    assert d["disk_format"] == "qcow2"
    assert (root.findtext("memory"), root.find("memory").get("unit")) == ("384", "MiB")
    assert root.findtext("vcpu") == "2"
    assert root.findtext("uuid") == UUID and root.findtext("name") == f"instance-{UUID}"
    assert root.findtext("title") == "web server 1"  # libvirt takes no newline here
    nets = root.findall("devices/interface")
    assert [(n.get("type"), n.find("source").attrib) for n in nets] == [
        ("network", {"network": "tenant"}), ("bridge", {"bridge": "br-ex"})]
    assert nets[0].find("mac").get("address") == "52:54:00:12:34:56"


def test_the_metadata_names_the_instance_and_the_agent_host():
    xml = dx.build(spec("kvm", "hvm"))
    element = ET.fromstring(xml).find(f"metadata/{{{dx.METADATA_NS}}}instance")
    assert element is not None
    assert dx.parse_metadata(xml) == {"uuid": UUID, "name": "web\nserver 1",
                                      "host": "agent-7"}
    # libvirt hands back the element alone (virDomainGetMetadata).
    assert dx.parse_metadata(ET.tostring(element, encoding="unicode"))["host"] == "agent-7"
    assert dx.parse_metadata("<domain><name>x</name></domain>") == {}


@pytest.mark.parametrize(("virt", "xen_hvm", "image", "metadata", "mode"), [
    ("xen", False, {}, {}, "pv"),
    ("xen", True, {}, {}, "hvm"),
    ("xen", False, {"vm_mode": "hvm"}, {}, "hvm"),
    ("xen", False, {"properties": {"vm_mode": "HVM"}}, {}, "hvm"),
    ("xen", False, {}, {"vm_mode": "hvm"}, "hvm"),
    ("xen", False, {"vm_mode": "xen"}, {}, "pv"),
    ("kvm", False, {}, {}, "hvm"),
])
def test_boot_mode(virt, xen_hvm, image, metadata, mode):
    assert dx.boot_mode(virt, xen_hvm, image, metadata) == mode


def test_nics_from_the_instance_networks():
    assert dx.nics_for([], "default", "") == [dx.Nic(network="default")]
    assert dx.nics_for([], "", "") == []
    assert dx.nics_for([], "default", "br0") == [dx.Nic(bridge="br0")]
    assert dx.nics_for(["tenant", {"name": "ext", "mac": "52:54:00:00:00:02"},
                     {"bridge": "br9"}, {"nothing": 1}, 5], "default", "") == [
        dx.Nic(network="tenant"), dx.Nic(network="ext", mac="52:54:00:00:00:02"),
        dx.Nic(bridge="br9")]
