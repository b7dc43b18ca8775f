"""libvirt errors as structured errors: the codes the manager acts on and
the rest carried over by name."""

from __future__ import annotations

import libvirt
import pytest

from compute_agent import exceptions
from compute_agent.driver.libvirt.errors import translate

URI = "xen:///system"


def error(code: int, domain: int = libvirt.VIR_FROM_DOM, message: str = "it failed"):
    exc = libvirt.libvirtError(message)
    exc.err = (code, domain, message, 2, None, None, None, 0, 0)
    return exc


def test_no_support_is_operation_not_supported_with_operation_and_driver():
    err = translate(error(libvirt.VIR_ERR_NO_SUPPORT), uri=URI, operation="suspend")
    assert type(err) is exceptions.OperationNotSupported
    assert (err.code, err.params) == ("OPERATION_NOT_SUPPORTED", ["suspend", "libvirt"])


def test_no_domain_is_instance_not_found():
    err = translate(error(libvirt.VIR_ERR_NO_DOMAIN), uri=URI, operation="power_on",
                    instance_uuid="u-1")
    assert (err.code, err.params) == ("INSTANCE_NOT_FOUND", ["u-1"])


@pytest.mark.parametrize(("code", "domain"), [
    (libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_FROM_REMOTE),
    (libvirt.VIR_ERR_INVALID_CONN, libvirt.VIR_FROM_NONE),
    (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_RPC),
])
def test_a_lost_connection_is_hypervisor_unavailable(code, domain):
    err = translate(error(code, domain, "End of file while reading data"), uri=URI,
                    operation="reboot")
    assert (err.code, err.params) == ("HYPERVISOR_UNAVAILABLE",
                                      [URI, "End of file while reading data"])


def test_other_errors_keep_libvirts_code_name_and_message():
    err = translate(error(libvirt.VIR_ERR_OPERATION_INVALID, message="domain is not running"),
                    uri=URI, operation="pause")
    assert type(err) is exceptions.HypervisorError
    assert (err.code, err.params) == ("VIR_ERR_OPERATION_INVALID", ["domain is not running"])
    # A system error that is not the transport's is the hypervisor's.
    err = translate(error(libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_STORAGE, "disk full"),
                    uri=URI, operation="spawn")
    assert (err.code, err.params) == ("VIR_ERR_SYSTEM_ERROR", ["disk full"])
