"""Building blocks for the lifecycle, storage and network tests: make VMs,
disks and VIFs through the SDK the way a client would, and catch XenAPI
failures as data."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import XenAPI

GiB = 1024**3
MiB = 1024**2


def failure(fn: Callable[..., Any], *args: Any) -> list[str]:
    """Call ``fn`` and return the XenAPI error description it must raise."""
    try:
        fn(*args)
    except XenAPI.Failure as e:
        return list(e.details)
    raise AssertionError(f"{fn} did not fail")


def vm_record(name: str = "vm", memory: int = 1 * GiB, vcpus: int = 2, **extra: Any) -> dict:
    """A minimal VM.create record with every field xapi requires."""
    rec = {
        "name_label": name, "name_description": "", "user_version": "1",
        "is_a_template": False, "affinity": "OpaqueRef:NULL",
        "memory_static_max": str(memory), "memory_dynamic_max": str(memory),
        "memory_dynamic_min": str(memory), "memory_static_min": str(memory),
        "VCPUs_params": {}, "VCPUs_max": str(vcpus), "VCPUs_at_startup": str(vcpus),
        "actions_after_shutdown": "destroy", "actions_after_reboot": "restart",
        "actions_after_crash": "restart", "PV_bootloader": "pygrub", "PV_kernel": "",
        "PV_ramdisk": "", "PV_args": "", "PV_bootloader_args": "", "PV_legacy_args": "",
        "HVM_boot_policy": "", "HVM_boot_params": {}, "platform": {}, "PCI_bus": "",
        "other_config": {}, "recommendations": "", "domain_type": "pv",
    }
    rec.update(extra)
    return rec


def default_sr(x) -> str:
    return x.pool.get_default_SR(x.pool.get_all()[0])


def management_network(x) -> str:
    return x.PIF.get_network(x.PIF.get_all_records_where('field "management"="true"').popitem()[0])


def make_disk(x, vm: str, size: int = GiB, sr: str | None = None, userdevice: str = "0",
              mode: str = "RW") -> tuple[str, str]:
    vdi = x.VDI.create({
        "name_label": f"disk {userdevice}", "name_description": "", "SR": sr or default_sr(x),
        "virtual_size": str(size), "type": "user", "sharable": False, "read_only": False,
        "other_config": {},
    })
    vbd = x.VBD.create(vbd_record(vm, vdi, userdevice=userdevice, mode=mode))
    return vdi, vbd


def vbd_record(vm: str, vdi: str, userdevice: str = "0", mode: str = "RW", vbd_type: str = "Disk",
               empty: bool = False, **extra: Any) -> dict:
    rec = {
        "VM": vm, "VDI": vdi, "userdevice": userdevice, "bootable": userdevice == "0",
        "mode": mode, "type": vbd_type, "empty": empty, "other_config": {},
        "qos_algorithm_type": "", "qos_algorithm_params": {},
    }
    rec.update(extra)
    return rec


def vif_record(vm: str, network: str, device: str = "0", mac: str = "") -> dict:
    return {
        "VM": vm, "network": network, "device": device, "MAC": mac, "MTU": "1500",
        "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {},
    }


def make_vm(x, name: str = "vm", memory: int = 1 * GiB, disk: bool = True, vif: bool = True,
            **extra: Any) -> str:
    vm = x.VM.create(vm_record(name, memory, **extra))
    if disk:
        make_disk(x, vm)
    if vif:
        x.VIF.create(vif_record(vm, management_network(x)))
    return vm


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, step: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(step)


def wait_task(x, task: str, timeout: float = 10.0) -> str:
    wait_for(lambda: x.task.get_status(task) not in ("pending", "cancelling"), timeout)
    return x.task.get_status(task)
