"""The XenAPI driver's pause/suspend, rescue and resize methods (RPC 1.2):
each runs under the operation's scope and hands over to pause_suspend.py,
rescue.py or resize.py. XenAPIDriver inherits them (it provides ``_ops``,
``_timeout``, ``_part`` and the parts set up in ``_connect``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from compute_agent.driver.base import Operation

if TYPE_CHECKING:
    from compute_agent.driver.xenapi.tasks import TaskRunner


class LifecycleMethods:
    # Set up by XenAPIDriver._connect.
    pause_suspend: Any
    rescues: Any
    resizes: Any

    def _ops(self) -> tuple[TaskRunner, Any]:  # XenAPIDriver's
        raise NotImplementedError

    def _timeout(self, op: Operation) -> float:  # XenAPIDriver's
        raise NotImplementedError

    def _part(self, part: Any) -> Any:  # XenAPIDriver's
        raise NotImplementedError

    def _scoped(self, op: Operation, call: Any, *args: Any) -> Any:
        runner, _ = self._ops()
        with runner.operation(op, self._timeout(op)):
            return call(op, *args)

    def pause(self, op: Operation, instance: dict[str, Any]) -> None:
        self._scoped(op, self._part(self.pause_suspend).change, instance, "pause")

    def unpause(self, op: Operation, instance: dict[str, Any]) -> None:
        self._scoped(op, self._part(self.pause_suspend).change, instance, "unpause")

    def suspend(self, op: Operation, instance: dict[str, Any]) -> None:
        self._scoped(op, self._part(self.pause_suspend).change, instance, "suspend")

    def resume(self, op: Operation, instance: dict[str, Any]) -> None:
        self._scoped(op, self._part(self.pause_suspend).change, instance, "resume")

    def rescue(self, op: Operation, instance: dict[str, Any],
               rescue_image: dict[str, Any] | None) -> None:
        self._scoped(op, self._part(self.rescues).rescue, instance, rescue_image)

    def unrescue(self, op: Operation, instance: dict[str, Any],
                 restore_power: bool = False) -> None:
        self._scoped(op, self._part(self.rescues).unrescue, instance, restore_power)

    def resize(self, op: Operation, instance: dict[str, Any], flavor: dict[str, Any]) -> None:
        self._scoped(op, self._part(self.resizes).resize, instance, flavor)

    def confirm_resize(self, op: Operation, instance: dict[str, Any]) -> None:
        self._scoped(op, self._part(self.resizes).confirm, instance)

    def revert_resize(self, op: Operation, instance: dict[str, Any]) -> dict[str, Any] | None:
        return self._scoped(op, self._part(self.resizes).revert, instance)
