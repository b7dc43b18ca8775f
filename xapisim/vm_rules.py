"""Which operations a VM allows in which state: xapi's allowed power
states per operation, the operations that may run side by side, and the
checks, in xapi's order (xapi_vm_lifecycle.ml), that give the first reason
an operation is refused. Every VM handler's precondition and the VM's
allowed_operations come from here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xapisim.errors import XenAPIError

if TYPE_CHECKING:
    from xapisim.store import Store

# xapi's allowed_power_states, in xapi's order (the order shows in the
# "expected" parameter of VM_BAD_POWER_STATE).
_ALL = ("Halted", "Paused", "Suspended", "Running")
POWER_STATES_FOR_OP: dict[str, tuple[str, ...]] = {
    "import": (),
    "changing_VCPUs": ("Halted",),
    "changing_static_range": ("Halted",),
    "changing_memory_limits": ("Halted",),
    "changing_shadow_memory": ("Halted",),
    "changing_NVRAM": ("Halted",),
    "make_into_template": ("Halted",),
    "provision": ("Halted",),
    "start": ("Halted",),
    "start_on": ("Halted",),
    "create_vtpm": ("Halted",),
    "unpause": ("Paused",),
    "csvm": ("Suspended",),
    "resume": ("Suspended",),
    "resume_on": ("Suspended",),
    "changing_dynamic_range": ("Halted", "Running"),
    "clone": ("Halted",),
    "copy": ("Halted",),
    "create_template": ("Halted", "Suspended"),
    "destroy": ("Halted", "Suspended"),
    "export": ("Halted", "Suspended"),
    "hard_reboot": ("Paused", "Running"),
    "checkpoint": ("Paused", "Suspended", "Running"),
    "get_boot_record": ("Paused", "Suspended", "Running"),
    "shutdown": ("Paused", "Suspended", "Running"),
    "hard_shutdown": ("Paused", "Suspended", "Running"),
    "migrate_send": ("Halted", "Suspended", "Running"),
}
for _op in ("awaiting_memory_live", "call_plugin", "clean_reboot", "clean_shutdown",
            "changing_memory_live", "changing_shadow_memory_live", "changing_VCPUs_live",
            "data_source_op", "pause", "pool_migrate", "send_sysrq", "send_trigger",
            "snapshot_with_quiesce", "suspend"):
    POWER_STATES_FOR_OP[_op] = ("Running",)
for _op in ("assert_operation_valid", "metadata_export", "power_state_reset", "revert",
            "reverting", "snapshot", "update_allowed_operations", "query_services"):
    POWER_STATES_FOR_OP[_op] = _ALL

# Operations xapi never lists in allowed_operations.
IGNORED_OPS = {
    "create_template", "power_state_reset", "csvm", "get_boot_record", "send_sysrq",
    "send_trigger", "query_services", "shutdown", "call_plugin", "changing_memory_live",
    "awaiting_memory_live", "changing_memory_limits", "changing_shadow_memory_live",
    "changing_VCPUs", "assert_operation_valid", "data_source_op",
    "update_allowed_operations", "import", "reverting",
}
TEMPLATE_OPS = {
    "changing_dynamic_range", "changing_static_range", "changing_memory_limits",
    "changing_shadow_memory", "changing_VCPUs", "changing_NVRAM", "clone", "copy", "export",
    "metadata_export", "provision",
}
SNAPSHOT_OPS = {"revert", "clone", "copy", "export", "destroy", "hard_shutdown",
                "metadata_export"}
CONTROL_DOMAIN_OPS = {
    "data_source_op", "changing_memory_live", "awaiting_memory_live", "metadata_export",
    "changing_dynamic_range", "changing_memory_limits", "changing_static_range", "start",
    "start_on", "changing_VCPUs", "destroy",
}
# Operations that may run beside others (xapi's is_allowed_concurrently).
_LONG_COPIES = {"clone", "copy", "export"}
_SNAPSHOTS = {"snapshot", "checkpoint"}
_PAIRS = {(("snapshot_with_quiesce",), "snapshot"), (("migrate_send",), "metadata_export"),
          (("migrate_send",), "clean_shutdown"), (("migrate_send",), "clean_reboot")}


def power_states_for(rec: dict[str, Any], op: str) -> tuple[str, ...]:
    states = POWER_STATES_FOR_OP.get(op, _ALL)
    if op in ("clone", "copy") and rec.get("is_a_snapshot"):
        states = ("Halted", "Suspended")
    if op in ("changing_VCPUs", "changing_static_range", "changing_memory_limits") and \
            rec.get("is_control_domain"):
        states = ("Halted", "Running")
    return states


def bad_power_state(vm: str, expected: tuple[str, ...] | list[str], actual: str) -> XenAPIError:
    return XenAPIError("VM_BAD_POWER_STATE", vm, ", ".join(s.lower() for s in expected),
                       actual.lower())


def concurrent_ok(op: str, current: list[str]) -> bool:
    if not current:
        return True
    if op == "hard_shutdown":
        return op not in current
    if op == "hard_reboot":
        return not any(o in ("hard_shutdown", "hard_reboot") for o in current)
    if (tuple(current), op) in _PAIRS:
        return True
    for group in (_LONG_COPIES, _SNAPSHOTS, {"get_boot_record"}):
        if op in group and all(o in group for o in current):
            return True
    return False


def vm_op_error(store: Store, vm: str, op: str) -> XenAPIError | None:
    """The first reason ``op`` is refused on ``vm`` now, in xapi's order of
    checks, or None."""
    rec = store.raw("VM", vm)
    blocked = rec.get("blocked_operations", {})
    if op in blocked:
        return XenAPIError("OPERATION_BLOCKED", vm, blocked[op])
    states = power_states_for(rec, op)
    if rec["power_state"] not in states:
        return bad_power_state(vm, states, rec["power_state"])
    current = rec.get("current_operations", {})
    if current and not concurrent_ok(op, list(current.values())):
        task, cur = next(iter(current.items()))
        return XenAPIError("OTHER_OPERATION_IN_PROGRESS", "VM", vm, cur, task)
    if rec["is_a_template"] and not rec.get("is_a_snapshot"):
        default = rec.get("is_default_template") or \
            rec["other_config"].get("default_template") in ("true", "1")
        if op not in TEMPLATE_OPS and not (op in ("destroy", "migrate_send") and not default):
            return XenAPIError("VM_IS_TEMPLATE", vm)
    if rec.get("is_a_snapshot") and op not in SNAPSHOT_OPS:
        return XenAPIError("OPERATION_NOT_ALLOWED", f"VM {vm} is a snapshot")
    if op == "provision" and not rec["is_a_template"]:
        return XenAPIError("OPERATION_NOT_ALLOWED", "Only templates can be provisioned")
    if op == "revert" and not rec.get("is_a_snapshot"):
        return XenAPIError("OPERATION_NOT_ALLOWED", "Only snapshots can be reverted")
    if rec["is_control_domain"]:
        if op in ("changing_VCPUs", "destroy") and rec["domid"] == 0:
            return XenAPIError("OPERATION_NOT_ALLOWED", "This operation is not allowed on dom0")
        if op not in CONTROL_DOMAIN_OPS:
            return XenAPIError("OPERATION_NOT_ALLOWED",
                               "This operation is not allowed on a control domain")
    if op == "snapshot_with_quiesce":
        return XenAPIError("VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED", vm, "VSS support removed")
    if op in ("suspend", "checkpoint", "pool_migrate", "migrate_send"):
        if rec["platform"].get("nomigrate") in ("true", "1") and rec["power_state"] != "Halted":
            return XenAPIError("VM_IS_IMMOBILE", vm)
    return None


def vm_allowed_operations(store: Store, vm: str) -> list[str]:
    ops = store.model.enums["vm_operations"]
    return [op for op in ops if op not in IGNORED_OPS and vm_op_error(store, vm, op) is None]


def assert_vm_op(store: Store, vm: str, op: str) -> None:
    err = vm_op_error(store, vm, op)
    if err is not None:
        raise err
