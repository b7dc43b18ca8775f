"""libvirt's errors as the agent's structured errors.

``libvirtError`` carries a numeric code (``VIR_ERR_*``); the agent reports
it as a HypervisorError whose code is the constant's name and whose params
are libvirt's message, except for the codes that mean something the manager
acts on: no such domain (InstanceNotFound), no support in this connection's
driver (OperationNotSupported) and a connection that is gone
(HypervisorUnavailable).
"""

from __future__ import annotations

import libvirt

from compute_agent import exceptions

DRIVER_NAME = "libvirt"

_NAMES = {
    getattr(libvirt, name): name for name in dir(libvirt)
    if name.startswith("VIR_ERR_") and isinstance(getattr(libvirt, name), int)
    and name not in ("VIR_ERR_NONE", "VIR_ERR_WARNING", "VIR_ERR_ERROR")
}

# The connection itself failed: the caller may retry once it is re-opened.
CONNECTION_CODES = frozenset({
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_INVALID_CONN,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_AUTH_FAILED,
    libvirt.VIR_ERR_AUTH_UNAVAILABLE,
    libvirt.VIR_ERR_AUTH_CANCELLED,
})
# A system error is a connection failure when it comes from the transport.
_TRANSPORT_DOMAINS = frozenset({libvirt.VIR_FROM_RPC, libvirt.VIR_FROM_REMOTE})

NOT_FOUND_CODES = frozenset({libvirt.VIR_ERR_NO_DOMAIN})


def code_name(code: int | None) -> str:
    return _NAMES.get(code or 0, f"VIR_ERR_{code}")


def is_connection_error(exc: libvirt.libvirtError) -> bool:
    code = exc.get_error_code()
    return code in CONNECTION_CODES or (
        code == libvirt.VIR_ERR_SYSTEM_ERROR and exc.get_error_domain() in _TRANSPORT_DOMAINS)


def translate(exc: libvirt.libvirtError, *, uri: str, operation: str,
              instance_uuid: str | None = None) -> exceptions.ComputeAgentError:
    """The structured error for ``exc`` raised during ``operation``."""
    code = exc.get_error_code()
    message = exc.get_error_message() or str(exc)
    if code in NOT_FOUND_CODES and instance_uuid is not None:
        return exceptions.InstanceNotFound(instance_uuid)
    if code == libvirt.VIR_ERR_NO_SUPPORT:
        return exceptions.OperationNotSupported(operation, DRIVER_NAME)
    if is_connection_error(exc):
        return exceptions.HypervisorUnavailable(uri, message)
    return exceptions.HypervisorError(message, code=code_name(code))
