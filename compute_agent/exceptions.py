"""Structured errors: a code plus a list of parameters, as XenAPI does.

Every error the agent reports, to an RPC caller, into an instance fault or a
notification, is one of these, so that a caller in any language can act on
``code`` and ``params`` without parsing prose.
"""

from __future__ import annotations

from typing import Any

_BY_CODE: dict[str, type[ComputeAgentError]] = {}


class ComputeAgentError(Exception):
    """Base class: ``code`` is a stable upper-case identifier, ``params`` a
    list of strings, ``message`` a human-readable sentence."""

    code = "INTERNAL_ERROR"
    msg_fmt = "An internal error occurred"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Every subclass, wherever it is defined, is what from_dict() gives
        # back for its code, so RPC callers get typed errors.
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:
            _BY_CODE.setdefault(cls.code, cls)

    def __init__(self, *params: Any, message: str | None = None, code: str | None = None):
        if code is not None:
            self.code = code
        self.params = [str(p) for p in params]
        self.message = message or self._format()
        super().__init__(self.message)

    def _format(self) -> str:
        try:
            return self.msg_fmt.format(*self.params)
        except (IndexError, KeyError):
            return f"{self.msg_fmt} {self.params}"

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "params": list(self.params), "message": self.message}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ComputeAgentError:
        sub = _BY_CODE.get(data.get("code", ""), ComputeAgentError)
        err = sub.__new__(sub)
        ComputeAgentError.__init__(
            err, *data.get("params", []), message=data.get("message"), code=data.get("code")
        )
        return err

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.params!r})"




class InvalidInput(ComputeAgentError):
    code = "INVALID_INPUT"
    msg_fmt = "Invalid input for field {0}: {1}"


class InstanceNotFound(ComputeAgentError):
    code = "INSTANCE_NOT_FOUND"
    msg_fmt = "Instance {0} could not be found"


class InstanceExists(ComputeAgentError):
    code = "INSTANCE_EXISTS"
    msg_fmt = "Instance {0} already exists"


class InstanceBusy(ComputeAgentError):
    code = "INSTANCE_BUSY"
    msg_fmt = "Instance {0} is busy with task {1}"


class InstanceInvalidState(ComputeAgentError):
    """params: uuid, attribute (vm_state/power_state), actual, expected."""

    code = "INSTANCE_INVALID_STATE"
    msg_fmt = "Instance {0} has {1} {2}; this operation needs {3}"


class UnexpectedTaskState(ComputeAgentError):
    """A guarded (compare-and-set) update lost the race. params: uuid,
    expected task_state(s), actual task_state."""

    code = "UNEXPECTED_TASK_STATE"
    msg_fmt = "Instance {0}: expected task_state {1}, found {2}"


class DatabaseNotMigrated(ComputeAgentError):
    code = "DATABASE_NOT_MIGRATED"
    msg_fmt = (
        "Database is at revision {0} but the code needs {1}; "
        "run 'compute-agent-manage db sync'"
    )


class HypervisorError(ComputeAgentError):
    """An error from dom0, carried over unchanged: code is XenAPI's code
    (e.g. VM_BAD_POWER_STATE) and params XenAPI's parameters."""

    code = "HYPERVISOR_ERROR"
    msg_fmt = "Hypervisor error {0}"

    def _format(self) -> str:
        return f"dom0 reported {self.code} {self.params}"


class HypervisorUnavailable(ComputeAgentError):
    code = "HYPERVISOR_UNAVAILABLE"
    msg_fmt = "dom0 at {0} is unreachable: {1}"


class OperationTimedOut(ComputeAgentError):
    code = "OPERATION_TIMED_OUT"
    msg_fmt = "Operation {0} on instance {1} did not finish within {2} s"


class OperationCancelled(ComputeAgentError):
    code = "OPERATION_CANCELLED"
    msg_fmt = "Operation {0} on instance {1} was cancelled"


class TaskNotRecorded(ComputeAgentError):
    """A dom0 task could not be written to the database, so it is not
    started (or, if it was, cancelled): nothing is waited on untracked.
    params: operation, instance uuid."""

    code = "TASK_NOT_RECORDED"
    msg_fmt = "Operation {0} on instance {1} stopped: its dom0 task could not be recorded"


class OperationNotSupported(ComputeAgentError):
    """The driver (or its connection) cannot do the operation. params:
    operation, driver."""

    code = "OPERATION_NOT_SUPPORTED"
    msg_fmt = "{0} is not supported by the {1} driver"


class NoValidHost(ComputeAgentError):
    code = "NO_VALID_HOST"
    msg_fmt = "No live compute host can take the request: {0}"


class InternalError(ComputeAgentError):
    """An unexpected exception, reported without its text (which may hold
    SQL, paths or secrets). params: the request id to find it in the log."""

    code = "INTERNAL_ERROR"
    msg_fmt = "Internal error; the agent's log has the details under request {0}"


def internal_error(request_id: str | None) -> InternalError:
    return InternalError(request_id or "-")


class ImageNotFound(ComputeAgentError):
    """params: image id (or URL)."""

    code = "IMAGE_NOT_FOUND"
    msg_fmt = "Image {0} could not be found"


class ImageChecksumMismatch(ComputeAgentError):
    """The data did not match the image's record. params: image id,
    expected, actual (``<algo>:<hex>``, or ``size:<bytes>``)."""

    code = "IMAGE_CHECKSUM_MISMATCH"
    msg_fmt = "Image {0}: expected {1}, got {2}"


class ImageUnavailable(ComputeAgentError):
    """The image service or URL could not deliver (unreachable, refused,
    cut off mid-stream). params: image id (or URL), reason."""

    code = "IMAGE_UNAVAILABLE"
    msg_fmt = "Image {0} is unavailable: {1}"


class ImageFormatUnsupported(ComputeAgentError):
    """params: image id, disk_format. The XenAPI driver boots raw and vhd,
    the libvirt driver raw and qcow2."""

    code = "IMAGE_FORMAT_UNSUPPORTED"
    msg_fmt = "Image {0} has disk format {1}, which this driver cannot boot"


class FlavorDiskTooSmall(ComputeAgentError):
    """params: image id, the image's virtual size and the flavor's root
    disk, in bytes."""

    code = "FLAVOR_DISK_TOO_SMALL"
    msg_fmt = "Image {0} needs {1} bytes; the flavor's root disk has {2}"


class ResizeDiskTooSmall(ComputeAgentError):
    """A resize may only grow the root disk. params: uuid, current root_gb,
    requested root_gb."""

    code = "RESIZE_DISK_TOO_SMALL"
    msg_fmt = "Instance {0}: the root disk ({1} GB) cannot shrink to {2} GB"


class FlavorUnchanged(ComputeAgentError):
    """A resize to the flavor the instance has. params: uuid."""

    code = "FLAVOR_UNCHANGED"
    msg_fmt = "Instance {0} already has this flavor"
class ConsoleNotAvailable(ComputeAgentError):
    """params: instance uuid, its power state (or why)."""

    code = "CONSOLE_NOT_AVAILABLE"
    msg_fmt = "Instance {0} has no console now ({1})"


class InstanceNotRunning(ComputeAgentError):
    """params: instance uuid, its power state."""

    code = "INSTANCE_NOT_RUNNING"
    msg_fmt = "Instance {0} is not running ({1})"


def hypervisor_error(details: list[Any]) -> HypervisorError:
    """Build the structured error for a XenAPI ``ErrorDescription``."""
    code = str(details[0]) if details else "UNKNOWN_XENAPI_ERROR"
    return HypervisorError(*details[1:], code=code)
