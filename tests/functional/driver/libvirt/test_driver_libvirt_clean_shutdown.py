"""A guest that ignores a clean shutdown, in-process on ``test:///default``,
through a real ComputeManager on a migrated SQLite database: the stop falls
back to destroying the domain after ``[tasks] clean_shutdown_timeout``, and
a cancel ends the wait with the guest left running.

How the guest comes to ignore it is libvirt's own: ``test:///default``
applies the domain's ``<on_poweroff>`` action when asked to shut it down
(libvirt's test driver, ``testDomainShutdownFlags``); with ``restart`` the
domain stays running (state running, reason booted) and no STOPPED event is
sent, as a guest that reboots instead of powering off. A definition changed
while the domain runs takes effect at its next boot, as on a real host.
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET

import libvirt
import pytest

from compute_agent.compute import states
from compute_agent.context import get_admin_context
from compute_agent.driver import power_state
from compute_agent.manager import ComputeManager
from tests.functional.harness import wait_until
from tests.functional.libvirt_inprocess import instance

pytestmark = pytest.mark.timeout(60)

TIMEOUT_S = 1  # [tasks] clean_shutdown_timeout: whole seconds, at least 1


def ignore_clean_shutdown(conn: libvirt.virConnect, uuid: str) -> None:
    """Redefine the domain to restart on power-off (from its next boot)."""
    dom = conn.lookupByUUIDString(uuid)
    xml = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    node = xml.find("on_poweroff")
    if node is None:
        node = ET.SubElement(xml, "on_poweroff")
    node.text = "restart"
    conn.defineXML(ET.tostring(xml, encoding="unicode"))


@pytest.fixture
def manager(make_driver, database, conf):
    conf.set_override("clean_shutdown_timeout", TIMEOUT_S, "tasks")
    driver, _ = make_driver()
    mgr = ComputeManager(conf, database, driver=driver, host=driver.host)
    mgr.init_host()
    yield mgr
    mgr.shutdown(10)
    conf.clear_override("clean_shutdown_timeout", "tasks")


def stubborn_guest(mgr: ComputeManager, outside: libvirt.virConnect) -> str:
    """A running instance whose guest restarts instead of powering off."""
    ctxt = get_admin_context()
    inst = instance("stubborn")
    uuid = inst["uuid"]
    mgr.build_instance(ctxt, inst)
    assert mgr.wait_for_operations(30)
    ignore_clean_shutdown(outside, uuid)
    # Still the old definition: this clean stop is honoured at once...
    t0 = time.monotonic()
    mgr.stop_instance(ctxt, uuid)
    assert mgr.wait_for_operations(30)
    assert time.monotonic() - t0 < TIMEOUT_S
    assert outside.lookupByUUIDString(uuid).state() == [
        libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN]
    # ...and the next boot runs the new one.
    mgr.start_instance(ctxt, uuid)
    assert mgr.wait_for_operations(30)
    assert mgr.db.get_instance(uuid, internal=True)["vm_state"] == states.ACTIVE
    return uuid


def test_a_guest_ignoring_the_clean_shutdown_is_destroyed_after_the_timeout(manager,
                                                                            outside):
    mgr, ctxt = manager, get_admin_context()
    uuid = stubborn_guest(mgr, outside)
    dom = outside.lookupByUUIDString(uuid)
    # What the guest does with a clean shutdown on its own: nothing visible.
    dom.shutdown()
    assert dom.state() == [libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_BOOTED]

    t0 = time.monotonic()
    mgr.stop_instance(ctxt, uuid)  # clean, the default
    assert mgr.wait_for_operations(30)
    elapsed = time.monotonic() - t0
    assert elapsed >= TIMEOUT_S
    assert dom.state() == [libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED]
    row = mgr.db.get_instance(uuid, internal=True)
    assert (row["vm_state"], row["task_state"], row["power_state"], row["fault"]) == (
        states.STOPPED, None, power_state.SHUTDOWN, None)
    assert row["shutdown_reason"] == "destroyed"
    print(f"\nclean stop ignored: destroyed after {elapsed:.2f} s (timeout {TIMEOUT_S} s)")
    # A hard stop does not ask the guest at all.
    mgr.start_instance(ctxt, uuid)
    assert mgr.wait_for_operations(30)
    t0 = time.monotonic()
    mgr.stop_instance(ctxt, uuid, clean=False)
    assert mgr.wait_for_operations(30)
    assert time.monotonic() - t0 < TIMEOUT_S
    assert dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    mgr.terminate_instance(ctxt, uuid)
    assert mgr.wait_for_operations(30)


def test_a_cancel_ends_the_wait_for_the_clean_shutdown(manager, outside, conf):
    mgr, ctxt = manager, get_admin_context()
    uuid = stubborn_guest(mgr, outside)
    conf.set_override("clean_shutdown_timeout", 30, "tasks")
    nothing = mgr.cancel_operation(ctxt, uuid)
    assert nothing == {"instance_uuid": uuid, "task_state": None, "cancelled": False}

    mgr.stop_instance(ctxt, uuid)
    # The driver is waiting for the guest to stop (the shutdown was asked).
    wait_until(lambda: uuid in mgr.driver.ops._cancels, 10, "the clean-shutdown wait", 0.01)
    done = threading.Event()
    threading.Thread(target=lambda: (mgr.wait_for_operations(30), done.set()),
                     daemon=True).start()
    assert not done.wait(0.3)  # still waiting
    t0 = time.monotonic()
    result = mgr.cancel_operation(ctxt, uuid)
    assert result == {"instance_uuid": uuid, "task_state": "powering_off", "cancelled": True}
    assert done.wait(5)
    print(f"\ncancel ended the wait after {1000 * (time.monotonic() - t0):.1f} ms")
    # The guest was not destroyed: the instance settles from libvirt.
    assert outside.lookupByUUIDString(uuid).state()[0] == libvirt.VIR_DOMAIN_RUNNING
    row = mgr.db.get_instance(uuid, internal=True)
    assert (row["vm_state"], row["task_state"], row["power_state"]) == (
        states.ACTIVE, None, power_state.RUNNING)
    assert row["fault"]["code"] == "OPERATION_CANCELLED"
    assert [(a["action"], a["result"]) for a in mgr.db.list_actions(uuid)][-1] == (
        "stop", "error")
    mgr.terminate_instance(ctxt, uuid)
    assert mgr.wait_for_operations(30)
