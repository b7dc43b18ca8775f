"""Guest console logs: what a simulated guest prints on its serial console
as it boots, reboots, shuts down and crashes.

On a XenServer dom0 with guest console logging on, xenconsoled appends
each domain's console output to ``/var/log/xen/guest/console.<domid>``
(the name OpenStack's XenServer console plugin reads); here the file lives
under the host's scratch dom0 root (xapisim.plugins.dom0_root), so a dom0
plugin run by the simulator finds it at the same relative path.

A new domain (start, resume, reboot, migration target) gets a new file
named by its new domid; the old domain's file keeps its last lines, as
xenconsoled leaves them. ``MAX_LOG_BYTES`` caps a file: when a write
would pass it, the older half is dropped first (xenconsoled rotates the
same way in spirit), so a long-running simulation cannot fill the disk.
"""

from __future__ import annotations

import pathlib
import time
from typing import TYPE_CHECKING

from xapisim import plugins

if TYPE_CHECKING:
    from xapisim.services import SimServices

LOG_DIR = pathlib.PurePosixPath("var/log/xen/guest")
MAX_LOG_BYTES = 1024 * 1024

_BOOT = (
    "Linux version 6.1.0-xapisim (builder@xapi-sim) #1 SMP",
    "Command line: root=/dev/xvda1 ro console=hvc0",
    "Xen version: 4.17 (preserve-AD)",
    "Memory: {memory_kib}K available",
    "smp: Brought up 1 node, {vcpus} CPUs",
    "xen_netfront: Initialising Xen virtual ethernet driver",
    "blkfront: xvda: flush diskcache: enabled; persistent grants: enabled",
    "EXT4-fs (xvda1): mounted filesystem with ordered data mode",
    "systemd[1]: Reached target Multi-User System.",
    "{name} login:",
)
_ENDINGS = {
    "rebooted": ("systemd-shutdown[1]: Rebooting.", "reboot: Restarting system"),
    "halted": ("systemd-shutdown[1]: Powering off.", "reboot: Power down"),
    "crashed": (
        "Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b",
        "CPU: 0 PID: 1 Comm: init Not tainted 6.1.0-xapisim #1",
        "---[ end Kernel panic - not syncing: Attempted to kill init! ]---",
    ),
}


def log_path(sim: SimServices, host: str, domid: int) -> pathlib.Path:
    """The console log of domain ``domid`` on ``host``."""
    return plugins.dom0_root(sim, host) / LOG_DIR / f"console.{domid}"


def _stamp(start: float, lines: list[str]) -> bytes:
    elapsed = time.monotonic() - start
    out = []
    for i, line in enumerate(lines):
        out.append(f"[{elapsed + i * 0.137:12.6f}] {line}\n")
    return "".join(out).encode()


def _append(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = 0
    if size + len(data) > MAX_LOG_BYTES:
        with open(path, "rb") as f:
            f.seek(size - MAX_LOG_BYTES // 2)
            kept = f.read()
        path.write_bytes(kept)
    with open(path, "ab") as f:
        f.write(data)


def booted(sim: SimServices, host: str, domid: int, rec: dict, vcpus: int, memory: int) -> None:
    """A new domain of the VM ``rec`` started on ``host``."""
    if domid <= 0 or rec.get("is_control_domain"):
        return
    name = rec.get("name_label") or rec.get("uuid", "guest")
    lines = [line.format(name=name, vcpus=vcpus, memory_kib=memory // 1024) for line in _BOOT]
    _append(log_path(sim, host, domid), _stamp(time.monotonic(), lines))


def ended(sim: SimServices, host: str, domid: int, reason: str) -> None:
    """The guest's domain is going away: ``reason`` is halted, rebooted or
    crashed (xapi's last_shutdown_reason)."""
    lines = _ENDINGS.get(reason)
    if lines is None or domid <= 0 or not host:
        return
    _append(log_path(sim, host, domid), _stamp(time.monotonic(), list(lines)))
