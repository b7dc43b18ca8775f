"""A dropped libvirt connection, in-process on ``test:///default``: the test
closes the driver's own connection under it (``virConnectClose`` on the
handle the driver holds: from then on every call on it fails with
``VIR_ERR_INVALID_CONN``, as after a lost transport). The driver, run by a
real ComputeManager on a migrated SQLite database, opens a new connection
on its next call, registers its lifecycle events on it and has the
manager's recovery run, which finds what changed in libvirt meanwhile.

libvirt keeps a closed connection's internals alive while callbacks are
registered on it and goes on delivering their events; the driver counts
only the current connection's, so the test can tell that events flow
through the new registration (exactly one listener call per change).
"""

from __future__ import annotations

import threading
import time
import uuid as uuidlib

import libvirt
import pytest

from compute_agent.compute import states
from compute_agent.context import get_admin_context
from compute_agent.driver import power_state
from compute_agent.manager import ComputeManager
from tests.functional.harness import wait_until
from tests.functional.libvirt_inprocess import NS, instance

pytestmark = pytest.mark.timeout(60)

EVENT_LIMIT_S = 1.0


def marked_domain_xml(uuid: str, host: str) -> str:
    """A domain marked as ``host``'s, the way the driver marks its own."""
    return (f"<domain type='xen'><name>instance-{uuid}</name><uuid>{uuid}</uuid>"
            f"<metadata><agent:instance xmlns:agent='{NS}'><agent:uuid>{uuid}</agent:uuid>"
            f"<agent:host>{host}</agent:host></agent:instance></metadata>"
            "<memory unit='MiB'>128</memory><os><type>xen</type></os></domain>")


def test_a_dropped_connection_is_reopened_with_events_and_recovery(make_driver, outside,
                                                                     database, conf):
    driver, _ = make_driver()
    mgr = ComputeManager(conf, database, driver=driver, host=driver.host)
    mgr.init_host()
    ctxt = get_admin_context()
    seen: list[tuple[str, int, str | None]] = []
    changed = threading.Event()
    to_manager = driver.power_state_listener

    def listener(uuid, info):
        seen.append((uuid, info.power_state, info.shutdown_reason))
        changed.set()
        to_manager(uuid, info)

    driver.set_power_state_listener(listener)
    stray = None
    try:
        inst = instance("kept")
        uuid = inst["uuid"]
        mgr.build_instance(ctxt, inst)
        assert mgr.wait_for_operations(30)
        assert database.get_instance(uuid, internal=True)["vm_state"] == states.ACTIVE
        first = driver.connection.get()
        assert (driver.connection.opened, driver.events.registrations) == (1, 1)

        first.close()  # the drop
        with pytest.raises(libvirt.libvirtError) as err:
            first.getHostname()
        assert err.value.get_error_code() == libvirt.VIR_ERR_INVALID_CONN
        # While it is down, a domain of this host appears that the
        # database does not know (a leftover the agent never saw built).
        stray = outside.defineXML(marked_domain_xml(str(uuidlib.uuid4()), driver.host))

        # A later operation works, on a new connection.
        mgr.stop_instance(ctxt, uuid)
        assert mgr.wait_for_operations(30)
        row = database.get_instance(uuid, internal=True)
        assert (row["vm_state"], row["power_state"], row["fault"]) == (
            states.STOPPED, power_state.SHUTDOWN, None)
        assert outside.lookupByUUIDString(uuid).state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
        assert driver.connection.opened == 2
        assert driver.connection.get() is not first
        assert driver.events.registrations == 2

        # The re-open ran the manager's recovery, which saw libvirt afresh.
        run = wait_until(lambda: (r := mgr.recovery.last_run) and r.reason == "reconnect"
                         and r, 10, "the recovery after the reconnect", 0.02)
        assert stray.UUIDString() in run.orphans
        assert uuid not in run.orphans

        # Events flow again, through the new registration only.
        mgr.start_instance(ctxt, uuid)
        assert mgr.wait_for_operations(30)
        time.sleep(0.2)  # the start's own events
        seen.clear()
        changed.clear()
        t0 = time.monotonic()
        outside.lookupByUUIDString(uuid).destroy()  # as `virsh destroy` would
        assert changed.wait(EVENT_LIMIT_S), "no event after the reconnect"
        row = wait_until(lambda: (r := database.get_instance(uuid, internal=True))[
            "vm_state"] == states.STOPPED and r, EVENT_LIMIT_S, "the stop in the database",
            0.01)
        elapsed = time.monotonic() - t0
        assert row["shutdown_reason"] == "destroyed"
        time.sleep(0.3)  # room for a duplicate from the old registration
        assert seen == [(uuid, power_state.SHUTDOWN, "destroyed")]
        print(f"\nafter the reconnect, an outside stop reached the database in "
              f"{1000 * elapsed:.1f} ms")

        mgr.terminate_instance(ctxt, uuid)
        assert mgr.wait_for_operations(30)
    finally:
        mgr.shutdown(10)
        if stray is not None:
            stray.undefine()
