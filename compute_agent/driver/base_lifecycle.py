"""The part of the driver interface (driver/base.py) for pausing,
suspending, rescuing and resizing an instance (RPC 1.2). ComputeDriver
inherits it; every method's contract is in its docstring.

Drivers that cannot do one of these keep the default, which raises
OPERATION_NOT_SUPPORTED [operation, driver]; the request then fails with
that fault and the instance stays in the state it was in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from compute_agent import exceptions

if TYPE_CHECKING:
    from compute_agent.driver.base import Operation


class LifecycleOperations:

    def _unsupported(self, operation: str) -> exceptions.OperationNotSupported:
        """What the default of an operation a driver need not implement
        raises (base.py's snapshot uses it too)."""
        return exceptions.OperationNotSupported(operation, type(self).__name__)

    def pause(self, op: Operation, instance: dict[str, Any]) -> None:
        """Pause the running VM: its domain keeps its memory but gets no CPU
        (power state PAUSED). Raises InstanceNotFound if there is no VM; a VM
        that is not running fails with the hypervisor's error."""
        raise self._unsupported("pause")

    def unpause(self, op: Operation, instance: dict[str, Any]) -> None:
        """Let a paused VM run again (power state RUNNING)."""
        raise self._unsupported("unpause")

    def suspend(self, op: Operation, instance: dict[str, Any]) -> None:
        """Save the running VM's memory to disk and stop its domain (power
        state SUSPENDED); the hypervisor keeps the memory image."""
        raise self._unsupported("suspend")

    def resume(self, op: Operation, instance: dict[str, Any]) -> None:
        """Start a suspended VM from its memory image (power state RUNNING);
        the image is removed."""
        raise self._unsupported("resume")

    def rescue(self, op: Operation, instance: dict[str, Any],
               rescue_image: dict[str, Any] | None) -> None:
        """Halt the instance's VM (kept as it is) and boot a rescue VM for it:
        named after the instance, marked as this agent's and as the rescue
        of the instance, booting from a rescue disk made from
        ``rescue_image`` through the image path of a build (None, or an
        image with neither id nor url: a blank disk)
        with the instance's root disk attached as its second disk. On
        failure whatever the rescue created is removed and the VM is left
        as it was found. While a rescue VM exists, :meth:`get_info` of an
        instance whose ``vm_state`` is 'rescued' reports the rescue VM's
        power state (and its handle in ``extra['rescue_vm']``)."""
        raise self._unsupported("rescue")

    def unrescue(self, op: Operation, instance: dict[str, Any],
                 restore_power: bool = False) -> None:
        """Remove the rescue VM and only the disks the rescue created, then
        start the instance's VM (with ``restore_power``: only if it was
        running when the rescue began, which is how recovery rolls back an
        interrupted rescue). Idempotent: without a rescue VM it only
        starts the VM."""
        raise self._unsupported("unrescue")

    def resize(self, op: Operation, instance: dict[str, Any], flavor: dict[str, Any]) -> None:
        """Give the VM ``flavor``'s vCPUs and memory and grow its root disk to
        ``flavor['root_gb']``, halting a running VM first and starting it
        again after. Before anything changes, keep what
        :meth:`revert_resize` needs in the hypervisor (a copy of the root
        disk, the old flavor, whether the VM ran) until
        :meth:`confirm_resize` or :meth:`revert_resize`. A smaller root disk
        is refused with the hypervisor's error (VDI_TOO_SMALL) before
        anything changes; any other failure reverts what was done."""
        raise self._unsupported("resize")

    def confirm_resize(self, op: Operation, instance: dict[str, Any]) -> None:
        """Make a resize final: remove what :meth:`resize` kept for a
        revert. Idempotent."""
        raise self._unsupported("confirm_resize")

    def revert_resize(self, op: Operation, instance: dict[str, Any]) -> dict[str, Any] | None:
        """Undo a resize: the old root disk (its contents and size) back in
        place of the grown one, the old vCPUs and memory, the power state
        the VM had before the resize. Idempotent; also undoes a resize that
        was interrupted half way, and does nothing when there is nothing to
        revert. Returns ``{"flavor": {vcpus, memory_mb, root_gb}}`` as the VM
        has it afterwards (what the instance record must say)."""
        raise self._unsupported("revert_resize")
