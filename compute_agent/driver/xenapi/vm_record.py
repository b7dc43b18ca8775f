"""The VM record the agent creates for an instance without a template
(VM.create): every field VM.create requires, for an HVM guest booting from
disk, marked as the instance's and this agent's."""

from __future__ import annotations

from typing import Any

from compute_agent.driver.xenapi import ownership

MiB = 1024**2
NULL_REF = "OpaqueRef:NULL"


def scratch_vm_record(instance: dict[str, Any], agent_host: str) -> dict[str, Any]:
    """Every field VM.create requires, for an HVM guest booting from disk."""
    flavor = instance["flavor"]
    memory = str(int(flavor["memory_mb"]) * MiB)  # int64 as string on XML-RPC
    vcpus = str(int(flavor["vcpus"]))
    return {
        "name_label": instance["name"],
        "name_description": f"instance {instance['uuid']}",
        "user_version": "1",
        "is_a_template": False,
        "affinity": NULL_REF,
        "memory_static_max": memory,
        "memory_dynamic_max": memory,
        "memory_dynamic_min": memory,
        "memory_static_min": memory,
        "VCPUs_params": {},
        "VCPUs_max": vcpus,
        "VCPUs_at_startup": vcpus,
        "actions_after_shutdown": "destroy",
        "actions_after_reboot": "restart",
        # Halt on crash so the crash is seen (last_shutdown_reason) and
        # reported, not hidden by an automatic restart.
        "actions_after_crash": "destroy",
        "PV_bootloader": "",
        "PV_kernel": "",
        "PV_ramdisk": "",
        "PV_args": "",
        "PV_bootloader_args": "",
        "PV_legacy_args": "",
        "HVM_boot_policy": "BIOS order",
        "HVM_boot_params": {"order": "dc"},
        "platform": {"acpi": "1", "apic": "true", "pae": "true", "viridian": "false",
                     "nx": "true"},
        "PCI_bus": "",
        "other_config": ownership.marks(instance["uuid"], agent_host),
        "recommendations": "",
        "domain_type": "hvm",
    }
