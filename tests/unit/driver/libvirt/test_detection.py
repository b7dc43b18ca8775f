"""Hypervisor detection for [libvirt] virt_type = auto, on prepared
directory trees standing in for a host's /sys, /dev and /proc."""

from __future__ import annotations

import pytest

from compute_agent import exceptions
from compute_agent.driver.libvirt import detection

KVM_MODULES = ("kvm_intel 380928 0 - Live 0x0000000000000000\n"
               "kvm 1142784 1 kvm_intel, Live 0x0000000000000000\n")


def host(tmp_path, hypervisor_type=None, dev_kvm=False, modules=""):
    if hypervisor_type is not None:
        (tmp_path / "sys/hypervisor").mkdir(parents=True)
        (tmp_path / "sys/hypervisor/type").write_text(hypervisor_type + "\n")
    if dev_kvm:
        (tmp_path / "dev").mkdir()
        (tmp_path / "dev/kvm").write_text("")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/modules").write_text(modules)
    return tmp_path


def test_xen_when_sys_hypervisor_type_reads_xen(tmp_path):
    assert detection.detect(host(tmp_path, "xen")) == "xen"


def test_xen_wins_over_a_kvm_module_built_into_dom0(tmp_path):
    assert detection.detect(host(tmp_path, "xen", dev_kvm=True, modules=KVM_MODULES)) == "xen"


def test_kvm_when_dev_kvm_exists(tmp_path):
    assert detection.detect(host(tmp_path, dev_kvm=True)) == "kvm"


def test_kvm_when_the_kvm_module_is_loaded(tmp_path):
    assert detection.detect(host(tmp_path, modules=KVM_MODULES)) == "kvm"


def test_a_vendor_module_name_alone_is_not_kvm(tmp_path):
    with pytest.raises(exceptions.HypervisorUnavailable):
        detection.detect(host(tmp_path, modules="kvmgt 1 0 - Live 0x0\n"))


def test_another_hypervisor_type_is_not_xen(tmp_path):
    # A guest of another hypervisor (sys/hypervisor/type reads e.g. 'kvm'
    # under some paravirt setups) with no KVM of its own: nothing to manage.
    with pytest.raises(exceptions.HypervisorUnavailable) as err:
        detection.detect(host(tmp_path, "hyperv"))
    assert err.value.params[0] == str(tmp_path)
    assert "no hypervisor found" in err.value.params[1]


def test_resolve_keeps_a_configured_type_and_checks_it(tmp_path):
    assert detection.resolve("kvm", host(tmp_path, "xen")) == "kvm"
    assert detection.resolve("auto", tmp_path) == "xen"
    with pytest.raises(exceptions.InvalidInput) as err:
        detection.resolve("lxc", tmp_path)
    assert err.value.params[0] == "libvirt.virt_type"


def test_the_detected_type_chooses_the_uri_unless_one_is_configured():
    assert detection.connection_uri("xen") == "xen:///system"
    assert detection.connection_uri("kvm") == "qemu:///system"
    assert detection.connection_uri("kvm", "test:///default") == "test:///default"
