"""The libvirt driver on libvirt's own fake hypervisor, ``test:///default``
(in-process, no daemon), with the test holding a second connection to the
same in-process state: what the driver does is checked through libvirt, and
what the test does to a domain "outside the agent" reaches the driver's
power-state listener through libvirt's lifecycle events, and the database
through a real ComputeManager on a migrated SQLite database.
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET

import libvirt
import pytest

from compute_agent import exceptions
from compute_agent.compute import states
from compute_agent.context import get_admin_context
from compute_agent.driver import power_state
from compute_agent.manager import ComputeManager
from tests.functional.harness import wait_until
from tests.functional.libvirt_inprocess import (
    NS,
    POOL,
    has_domain,
    instance,
    op,
    state,
    volumes,
)

EVENT_LIMIT_S = 1.0  # the bound for an outside stop to be seen
GiB = 1024**3

pytestmark = pytest.mark.timeout(60)


def test_the_lifecycle_as_libvirt_sees_it(make_driver, outside):
    driver, recorder = make_driver()
    inst = instance("web 1")
    uuid = inst["uuid"]

    info = driver.spawn(op(inst, "spawn"), inst)
    assert info.power_state == power_state.RUNNING and info.vm_ref == uuid
    dom = outside.lookupByUUIDString(uuid)
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert dom.info()[1] == 384 * 1024 and dom.info()[3] == 2  # KiB, vCPUs
    meta = ET.fromstring(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS))
    assert (meta.findtext("uuid"), meta.findtext("name"), meta.findtext("host")) == (
        uuid, "web 1", driver.host)
    xml = ET.fromstring(dom.XMLDesc())
    # PV by default ('linux' is libvirt's old name for Xen PV, kept when it
    # formats a xen domain).
    assert xml.get("type") == "xen" and xml.findtext("os/type") in ("xen", "linux")
    target = xml.find("devices/disk/target")
    assert (target.get("dev"), target.get("bus")) == ("xvda", "xen")
    assert [m.get("type") for m in xml.findall("devices/interface/model")] == ["netfront"]
    assert xml.find("devices/disk/source").attrib == {
        "pool": POOL, "volume": f"instance-{uuid}-root"}
    assert volumes(outside, uuid) == [(f"instance-{uuid}-root", 2 * GiB)]
    assert driver.list_instance_uuids() == [uuid]

    driver.power_off(op(inst, "power_off"), inst, clean=True, timeout=5)
    assert state(outside, uuid) == libvirt.VIR_DOMAIN_SHUTOFF
    assert driver.get_info(inst).power_state == power_state.SHUTDOWN
    driver.power_off(op(inst, "power_off"), inst, clean=False, timeout=5)  # halted: no error
    driver.power_on(op(inst, "power_on"), inst)
    assert state(outside, uuid) == libvirt.VIR_DOMAIN_RUNNING
    for kind in ("SOFT", "HARD"):
        driver.reboot(op(inst, "reboot"), inst, kind)
        assert state(outside, uuid) == libvirt.VIR_DOMAIN_RUNNING

    driver.pause(op(inst, "pause"), inst)
    assert state(outside, uuid) == libvirt.VIR_DOMAIN_PAUSED
    assert driver.get_info(inst).power_state == power_state.PAUSED
    driver.unpause(op(inst, "unpause"), inst)
    assert state(outside, uuid) == libvirt.VIR_DOMAIN_RUNNING

    driver.suspend(op(inst, "suspend"), inst)  # managed save
    dom = outside.lookupByUUIDString(uuid)
    assert dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF and dom.hasManagedSaveImage(0)
    assert driver.get_info(inst).power_state == power_state.SUSPENDED
    driver.resume(op(inst, "resume"), inst)
    assert state(outside, uuid) == libvirt.VIR_DOMAIN_RUNNING
    assert not outside.lookupByUUIDString(uuid).hasManagedSaveImage(0)
    with pytest.raises(exceptions.InstanceInvalidState):
        driver.resume(op(inst, "resume"), inst)  # not suspended

    driver.destroy(op(inst, "destroy"), inst)
    assert not has_domain(outside, uuid) and volumes(outside, uuid) == []
    assert driver.list_instance_uuids() == []
    driver.destroy(op(inst, "destroy"), inst)  # idempotent
    with pytest.raises(exceptions.InstanceNotFound) as err:
        driver.get_info(inst)
    assert err.value.params == [uuid]
    with pytest.raises(exceptions.InstanceNotFound):
        driver.power_on(op(inst, "power_on"), inst)

    # Every libvirt call was reported as a step, before it ran, and ended.
    assert recorder.started and set(recorder.started) == set(recorder.finished)
    assert {s for s, _ in recorder.finished.values()} == {"success"}


def test_a_suspended_domain_survives_a_hard_destroy_of_its_instance(make_driver, outside):
    driver, _ = make_driver()
    inst = instance()
    driver.spawn(op(inst, "spawn"), inst)
    driver.suspend(op(inst, "suspend"), inst)
    driver.destroy(op(inst, "destroy"), inst)  # managed save image removed with it
    assert not has_domain(outside, inst["uuid"]) and volumes(outside, inst["uuid"]) == []


@pytest.mark.parametrize(("options", "metadata", "domain_type", "os_type", "bus", "nic"), [
    ({"virt_type": "kvm"}, {}, "kvm", "hvm", "virtio", "virtio"),
    ({"virt_type": "xen", "xen_hvm": True}, {}, "xen", "hvm", "xen", "netfront"),
    ({"virt_type": "xen"}, {"vm_mode": "hvm"}, "xen", "hvm", "xen", "netfront"),
], ids=["kvm", "xen-hvm-option", "xen-hvm-metadata"])
def test_the_device_family_follows_the_hypervisor_and_mode(make_driver, outside, options,
                                                           metadata, domain_type, os_type,
                                                           bus, nic):
    driver, _ = make_driver(**options)
    inst = instance(**metadata)
    driver.spawn(op(inst, "spawn"), inst)
    xml = ET.fromstring(outside.lookupByUUIDString(inst["uuid"]).XMLDesc())
    assert (xml.get("type"), xml.findtext("os/type")) == (domain_type, os_type)
    assert xml.find("devices/disk/target").get("bus") == bus
    assert [m.get("type") for m in xml.findall("devices/interface/model")] == [nic]
    assert driver.capabilities()["virt_type"] == options["virt_type"]
    driver.destroy(op(inst, "destroy"), inst)


def test_a_retried_build_reuses_the_domain_and_a_failed_one_leaves_nothing(make_driver,
                                                                           outside):
    driver, _ = make_driver()
    inst = instance()
    first = driver.spawn(op(inst, "spawn"), inst)
    assert driver.spawn(op(inst, "spawn"), inst).vm_ref == first.vm_ref
    assert driver.list_instance_uuids() == [inst["uuid"]]
    driver.destroy(op(inst, "destroy"), inst)

    # Another domain already has the name the build needs: libvirt refuses
    # the definition, and the volume the build made is deleted again.
    doomed = instance()
    squatter = outside.defineXML(
        f"<domain type='xen'><name>instance-{doomed['uuid']}</name><memory>65536</memory>"
        "<os><type>xen</type></os></domain>")
    try:
        with pytest.raises(exceptions.HypervisorError) as err:
            driver.spawn(op(doomed, "spawn"), doomed)
        assert err.value.code.startswith("VIR_ERR_")
        assert volumes(outside, doomed["uuid"]) == []
        assert driver.list_instance_uuids() == []
        # A domain that is not the agent's is never touched, even by uuid.
        squat = {"uuid": squatter.UUIDString()}
        with pytest.raises(exceptions.InstanceNotFound):
            driver.get_info(squat)
        driver.destroy(op(squat, "destroy"), squat)
        assert has_domain(outside, squat["uuid"])
    finally:
        squatter.undefine()


def test_a_domain_stopped_outside_the_agent_reaches_the_listener(make_driver, outside):
    driver, _ = make_driver()
    seen: list[tuple[str, int, str | None, float]] = []
    arrived = threading.Event()

    def listener(uuid, info):
        seen.append((uuid, info.power_state, info.shutdown_reason, time.monotonic()))
        arrived.set()

    driver.set_power_state_listener(listener)
    inst = instance()
    driver.spawn(op(inst, "spawn"), inst)
    assert arrived.wait(EVENT_LIMIT_S)  # its own start is an event too
    seen.clear()
    arrived.clear()
    t0 = time.monotonic()
    outside.lookupByUUIDString(inst["uuid"]).destroy()  # as `virsh destroy` would
    assert arrived.wait(EVENT_LIMIT_S), "no event within a second"
    uuid, power, reason, at = seen[0]
    assert (uuid, power, reason) == (inst["uuid"], power_state.SHUTDOWN, "destroyed")
    print(f"\noutside stop seen by the listener after {1000 * (at - t0):.1f} ms")
    # Domains that are not the agent's raise no event for it.
    seen.clear()
    outside.lookupByName("test").suspend()
    outside.lookupByName("test").resume()
    time.sleep(0.2)
    assert seen == []
    driver.destroy(op(inst, "destroy"), inst)


def test_an_outside_stop_reaches_the_database_through_the_manager(make_driver, outside,
                                                                  database, conf):
    driver, _ = make_driver()
    host = driver.host
    mgr = ComputeManager(conf, database, driver=driver, host=host)
    mgr.init_host()
    try:
        inst = instance("managed")
        ctxt = get_admin_context()
        mgr.build_instance(ctxt, inst)
        assert mgr.wait_for_operations(30)
        row = database.get_instance(inst["uuid"], internal=True)
        assert (row["vm_state"], row["power_state"]) == (states.ACTIVE, power_state.RUNNING)

        t0 = time.monotonic()
        outside.lookupByUUIDString(inst["uuid"]).shutdown()  # the guest halts itself
        row = wait_until(lambda: (r := database.get_instance(inst["uuid"], internal=True))[
            "vm_state"] == states.STOPPED and r, EVENT_LIMIT_S, "the stop in the database",
            0.01)
        elapsed = time.monotonic() - t0
        assert row["power_state"] == power_state.SHUTDOWN
        assert row["shutdown_reason"] == "halted"
        print(f"\noutside stop in the database after {1000 * elapsed:.1f} ms")

        mgr.terminate_instance(ctxt, inst["uuid"])
        assert mgr.wait_for_operations(30)
        assert database.get_instance(inst["uuid"])["vm_state"] == states.DELETED
        assert not has_domain(outside, inst["uuid"]) and volumes(outside, inst["uuid"]) == []
    finally:
        mgr.shutdown(10)
