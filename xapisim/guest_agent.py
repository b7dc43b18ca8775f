"""The simulated guest agent: some time after a domain boots it reports
the guest's OS, IP addresses and PV drivers as VM_guest_metrics, which go
away with the domain."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from xapisim.schema import NULL_REF
from xapisim.store import now_datetime

if TYPE_CHECKING:
    from xapisim.services import SimServices


def drop_guest_metrics(sim: SimServices, vm: str) -> None:
    store = sim.store
    gm = store.raw("VM", vm)["guest_metrics"]
    if gm != NULL_REF:
        store.update("VM", vm, guest_metrics=NULL_REF)
        if store.has("VM_guest_metrics", gm):
            store.destroy("VM_guest_metrics", gm)


def guest_agent_delay(sim: SimServices) -> float:
    """How long after boot the guest agent reports: the configured duration
    of the pseudo-message ``guest.agent`` (the task duration by default)."""
    return sim.faults.duration("guest.agent")


def schedule_guest_agent(sim: SimServices, vm: str, domid: int) -> None:
    def report() -> None:
        if sim.running:
            publish_guest_metrics(sim, vm, domid)

    delay = guest_agent_delay(sim)
    if delay <= 0:
        report()
        return
    t = threading.Timer(delay, report)
    t.daemon = True
    t.start()


def _guest_os(rec: dict[str, Any]) -> dict[str, str]:
    label = (rec["other_config"].get("base_template_name") or rec["name_label"]).lower()
    if "windows" in label:
        return {"name": "Microsoft Windows Server 2022 Standard|C:\\Windows|\\Device\\Harddisk0",
                "distro": "windows", "major": "10", "minor": "0"}
    if "ubuntu" in label:
        return {"name": "Ubuntu 22.04.4 LTS", "uname": "5.15.0-105-generic",
                "distro": "ubuntu", "major": "22", "minor": "04"}
    return {"name": "Debian GNU/Linux 12 (bookworm)", "uname": "6.1.0-21-amd64",
            "distro": "debian", "major": "12", "minor": "5"}


def publish_guest_metrics(sim: SimServices, vm: str, domid: int) -> None:
    """What a guest agent writes once the guest is up: OS, IPs of its VIFs,
    PV drivers. Skipped if the domain changed meanwhile."""
    store = sim.store
    with store.lock:
        if not store.has("VM", vm):
            return
        rec = store.raw("VM", vm)
        if rec["power_state"] != "Running" or rec["domid"] != domid or \
                rec["guest_metrics"] != NULL_REF:
            return
        networks: dict[str, str] = {}
        for vif in rec["VIFs"]:
            if not store.has("VIF", vif):
                continue
            v = store.raw("VIF", vif)
            device = v["device"] or "0"
            mac = v["MAC"] or "00:00:00:00:00:00"
            octets = [int(x, 16) for x in mac.split(":")[-2:]] if ":" in mac else [0, 1]
            networks[f"{device}/ip"] = f"10.{int(device) % 256 if device.isdigit() else 0}." \
                                       f"{octets[0]}.{max(octets[1], 2) % 254 + 1}"
            networks[f"{device}/ipv4/0"] = networks[f"{device}/ip"]
        gm = store.create("VM_guest_metrics", {
            "os_version": _guest_os(rec),
            "PV_drivers_version": {"major": "9", "minor": "3", "micro": "3", "build": "0"},
            "PV_drivers_up_to_date": True,
            "PV_drivers_detected": True,
            "networks": networks,
            "disks": {},
            "memory": {},
            "other": {"feature-shutdown": "1", "feature-poweroff": "1", "feature-reboot": "1",
                      "feature-suspend": "1", "feature-vcpu-hotplug": "1",
                      "has-vendor-device": "0", "platform-feature-multiprocessor-suspend": "1"},
            "live": True,
            "can_use_hotplug_vbd": "yes",
            "can_use_hotplug_vif": "yes",
            "last_updated": now_datetime(),
        })
        store.update("VM", vm, guest_metrics=gm)
        sim.refresh_allowed_operations("VM", vm)
