"""The lifecycle part of ``make demo``: the 1.2 and 1.5 RPC methods on
running instances.

Through the same ComputeAPI the rest of the demo uses, one instance is
paused and unpaused, suspended and resumed, rescued and unrescued; another
is resized and the resize confirmed, then resized again and reverted. Then
one instance's action history (get_instance_actions), another's console
output and diagnostics are shown, and a port is attached to it and
detached. Every step waits until the instances settled, printing their
state changes; ``check_dom0`` compares the
simulator with the database once nothing is half-way (a rescue or an
unconfirmed resize keeps a second VM on purpose).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from compute_agent import exceptions

RESIZED_FLAVOR = {"vcpus": 3, "memory_mb": 1536, "root_gb": 3}
REVERTED_FLAVOR = {"vcpus": 4, "memory_mb": 2048, "root_gb": 4}


def lifecycle_steps(api: Any, host: str, printer: Any, settle: Callable[[dict], None],
                    check: Callable[[], bool], a: str, b: str) -> bool:
    """Walk instance ``a`` through pause, suspend and rescue and instance
    ``b`` through resize + confirm and resize + revert; both end active.
    ``settle(targets)`` waits until the instances reach the wanted
    vm_states; ``check()`` is the dom0-against-database check."""
    steps = [
        ("pause demo-1", lambda: api.pause_instance(host, a), {a: "paused"}),
        ("unpause demo-1", lambda: api.unpause_instance(host, a), {a: "active"}),
        ("suspend demo-1", lambda: api.suspend_instance(host, a), {a: "suspended"}),
        ("resume demo-1", lambda: api.resume_instance(host, a), {a: "active"}),
        ("rescue demo-1 (a blank rescue disk)",
         lambda: api.rescue_instance(host, a), {a: "rescued"}),
        ("unrescue demo-1", lambda: api.unrescue_instance(host, a), {a: "active"}),
        (f"resize demo-2 to {RESIZED_FLAVOR}",
         lambda: api.resize_instance(host, b, RESIZED_FLAVOR), {b: "resized"}),
        ("confirm the resize of demo-2", lambda: api.confirm_resize(host, b), {b: "active"}),
        (f"resize demo-2 to {REVERTED_FLAVOR}",
         lambda: api.resize_instance(host, b, REVERTED_FLAVOR), {b: "resized"}),
        ("revert the resize of demo-2", lambda: api.revert_resize(host, b), {b: "active"}),
    ]
    ok = True
    for title, call, targets in steps:
        printer.step(title)
        call()
        settle(targets)
        if title.startswith("unrescue"):
            ok &= check()
    inst = api.get_instance(host, b)
    printer.note(f"demo-2 after the revert: {inst['flavor']}")
    ok &= inst["flavor"] == RESIZED_FLAVOR
    ok &= check()
    return ok


def show_actions(api: Any, host: str, printer: Any, uuid: str, name: str) -> bool:
    """A short summary of one instance's action history. The reboot refused
    while the instance was building is on record as an error (INSTANCE_BUSY);
    every lifecycle action of this part must have succeeded."""
    printer.step(f"get_instance_actions for {name}")
    actions = api.get_instance_actions(host, uuid)
    results = Counter(a["result"] for a in actions)
    printer.note(f"{len(actions)} actions ({dict(results)}): "
                 + ", ".join(a["action"] for a in actions))
    for action in actions:
        if action["result"] != "success":
            printer.note(f"  {action['action']}: {action['result']} {action['fault']}")
    lifecycle = {"pause", "unpause", "suspend", "resume", "rescue", "unrescue"}
    done = [a for a in actions if a["action"] in lifecycle]
    return len(done) == len(lifecycle) and all(a["result"] == "success" for a in done)


def show_console_and_diagnostics(api: Any, host: str, printer: Any, uuid: str,
                                 name: str) -> None:
    """get_console_output and get_diagnostics, where the driver has them."""
    printer.step(f"console output and diagnostics of {name}")
    try:
        console = api.get_console_output(host, uuid, tail_length=3)
        lines = console["output"].splitlines()
        printer.note(f"console: {len(lines)} lines (truncated: {console['truncated']})")
        for line in lines[-3:]:
            printer.note(f"  | {line[:100]}")
    except exceptions.ComputeAgentError as exc:
        printer.note(f"console output: {exc.code} {exc.params}")
    try:
        diag = api.get_diagnostics(host, uuid)
        printer.note("diagnostics: " + ", ".join(
            f"{k}={v}" for k, v in diag.items() if not isinstance(v, (dict, list)))[:300])
    except exceptions.ComputeAgentError as exc:
        printer.note(f"diagnostics: {exc.code} {exc.params}")


def show_port(api: Any, host: str, printer: Any, uuid: str, name: str) -> bool:
    """attach_interface then detach_interface of one port on the simulator's
    management bridge, xenbr0 (the configured integration bridge, br-int,
    does not exist in a bare simulator)."""
    printer.step(f"attach a port to {name}, then detach it")
    port = {"id": "demo-port-1", "mac_address": "fa:16:3e:00:00:01", "network": "xenbr0"}
    try:
        attached = api.attach_interface(host, uuid, port)
        printer.note("attached: " + ", ".join(
            f"{k}={attached.get(k)}" for k in ("port_id", "status", "device", "vif_uuid")))
        detached = api.detach_interface(host, uuid, port["id"])
        printer.note(f"detached: {detached.get('detached')}")
    except exceptions.ComputeAgentError as exc:
        printer.note(f"attach_interface: {exc.code} {exc.params}")
        return False
    return attached.get("status") == "attached" and detached.get("detached") is True
