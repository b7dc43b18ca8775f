"""Which hypervisor this host runs, for ``[libvirt] virt_type = auto``.

Xen when ``sys/hypervisor/type`` reads ``xen`` (the agent runs in dom0 or a
Xen guest that manages it through libxl); otherwise KVM when ``dev/kvm``
exists or ``proc/modules`` lists the ``kvm`` module. All paths are read under
a root directory so tests can point detection at a prepared tree. Xen is
checked first: a Xen dom0 may also have the kvm module built but never both
hypervisors in use, and the agent never mixes them on one host.
"""

from __future__ import annotations

from pathlib import Path

from compute_agent import exceptions

XEN = "xen"
KVM = "kvm"
VIRT_TYPES = (XEN, KVM)

# The connection each hypervisor is reached on when none is configured.
DEFAULT_URIS = {XEN: "xen:///system", KVM: "qemu:///system"}


def detect(root: str | Path = "/") -> str:
    """'xen' or 'kvm' for the host whose filesystem is at ``root``; raises
    HypervisorUnavailable when it shows neither."""
    base = Path(root)
    if _read(base / "sys/hypervisor/type").strip() == XEN:
        return XEN
    if (base / "dev/kvm").exists() or _kvm_module_loaded(_read(base / "proc/modules")):
        return KVM
    raise exceptions.HypervisorUnavailable(
        str(base), "no hypervisor found: sys/hypervisor/type is not 'xen', no dev/kvm "
        "and no kvm module loaded")


def resolve(virt_type: str, root: str | Path = "/") -> str:
    """The virt_type option resolved: 'auto' detected, otherwise as given."""
    if virt_type == "auto":
        return detect(root)
    if virt_type not in VIRT_TYPES:
        raise exceptions.InvalidInput("libvirt.virt_type", f"must be auto, xen or kvm, "
                                      f"not {virt_type!r}")
    return virt_type


def connection_uri(virt_type: str, configured: str = "") -> str:
    """The configured URI, or the detected hypervisor's default one."""
    return configured or DEFAULT_URIS[virt_type]


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _kvm_module_loaded(modules: str) -> bool:
    # /proc/modules: "name size refcount deps state address" per line; the
    # vendor modules (kvm_intel, kvm_amd) need "kvm" itself loaded.
    return any(line.split(" ", 1)[0] == "kvm" for line in modules.splitlines())
