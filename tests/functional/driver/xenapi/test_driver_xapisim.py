"""The XenAPI driver against a real simulator over HTTP, through the
official SDK: lifecycle, nothing leaked, fallbacks, sessions, TLS, host
figures."""

from __future__ import annotations

import threading
import time

import pytest
from xenapi_fixtures import PASSWORD, make_instance, no_tasks_left, op_for

from compute_agent import exceptions
from compute_agent.driver import power_state
from compute_agent.driver.base import HOST_RESOURCE_KEYS
from compute_agent.driver.xenapi import ownership
from xapisim.server import Simulator, free_port

GiB = 1024**3
MiB = 1024**2


def counts(xapi) -> dict[str, int]:
    x = xapi.xenapi
    return {"VM": len(x.VM.get_all()), "VDI": len(x.VDI.get_all()),
            "VBD": len(x.VBD.get_all()), "VIF": len(x.VIF.get_all())}


def vm_of(xapi, instance) -> tuple[str, dict]:
    recs = xapi.xenapi.VM.get_all_records()
    found = [(r, v) for r, v in recs.items() if ownership.instance_of(v) == instance["uuid"]]
    assert len(found) == 1, found
    return found[0]


def test_spawn_power_cycle_destroy_leaves_nothing(driver, xapi, listener, sim):
    before = counts(xapi)
    inst = make_instance(vcpus=2, memory_mb=768, root_gb=7)

    info = driver.spawn(op_for(inst, "spawn"), inst)
    assert info.power_state == power_state.RUNNING
    ref, vm = vm_of(xapi, inst)
    assert info.vm_ref == ref
    assert vm["name_label"] == inst["name"]
    assert vm["power_state"] == "Running"
    assert int(vm["memory_static_max"]) == 768 * MiB
    assert int(vm["VCPUs_at_startup"]) == 2
    assert vm["other_config"][ownership.INSTANCE_KEY] == inst["uuid"]
    assert vm["other_config"][ownership.HOST_KEY] == driver.host
    # Root disk: 7 GiB on the default SR, bootable userdevice 0.
    vbds = [xapi.xenapi.VBD.get_record(b) for b in vm["VBDs"]]
    root = [b for b in vbds if b["userdevice"] == "0"]
    assert len(root) == 1 and root[0]["bootable"] and root[0]["type"] == "Disk"
    vdi = xapi.xenapi.VDI.get_record(root[0]["VDI"])
    assert int(vdi["virtual_size"]) == 7 * GiB
    pool = xapi.xenapi.pool.get_all()[0]
    assert vdi["SR"] == xapi.xenapi.pool.get_default_SR(pool)
    # VIF 0 on the management network.
    vifs = [xapi.xenapi.VIF.get_record(v) for v in vm["VIFs"]]
    assert [v["device"] for v in vifs] == ["0"]
    mgmt = [p for p in xapi.xenapi.PIF.get_all_records().values() if p["management"]]
    assert vifs[0]["network"] == mgmt[0]["network"]

    assert driver.get_info(inst).power_state == power_state.RUNNING
    assert inst["uuid"] in driver.list_instance_uuids()

    driver.power_off(op_for(inst, "power_off"), inst)
    assert driver.get_info(inst).power_state == power_state.SHUTDOWN
    driver.power_off(op_for(inst, "power_off"), inst)  # already off: fine
    driver.power_on(op_for(inst, "power_on"), inst)
    assert driver.get_info(inst).power_state == power_state.RUNNING
    driver.power_on(op_for(inst, "power_on"), inst)  # already on: fine

    for kind in ("SOFT", "HARD"):
        driver.reboot(op_for(inst, "reboot"), inst, kind)
        info = driver.get_info(inst)
        assert info.power_state == power_state.RUNNING
        assert info.shutdown_reason == "rebooted"

    driver.destroy(op_for(inst, "destroy"), inst)
    assert counts(xapi) == before
    with pytest.raises(exceptions.InstanceNotFound):
        driver.get_info(inst)
    driver.destroy(op_for(inst, "destroy"), inst)  # gone already: fine
    assert inst["uuid"] not in driver.list_instance_uuids()

    # Every task was reported before it was waited on, and then destroyed.
    started = listener.of("started")
    finished = listener.of("finished")
    assert started and len(started) == len(finished)
    assert {s[1] for s in started} == {f[1] for f in finished}
    assert all(s[3] == "127.0.0.1" for s in started)
    # Each task's intent was recorded before its call, and bound to its ref.
    intents = [i[1] for i in listener.of("intent")]
    assert [s[4] for s in started] == intents
    assert {u[1] for u in listener.of("uuid") if u[2]} == {s[1] for s in started}
    assert all(f[2] == "success" for f in finished)
    no_tasks_left(xapi)


def test_listener_order_and_results(driver, listener):
    inst = make_instance()
    driver.spawn(op_for(inst, "spawn"), inst)
    seen: dict[str, list[str]] = {}
    for name, args in listener.calls:
        if name != "intent":
            seen.setdefault(args[1], []).append(name)
    for ref, names in seen.items():
        assert names[0] == "started" and names[-1] == "finished", (ref, names)
        assert names.count("finished") == 1
    # VDI.create's task result is the new VDI's ref, decoded.
    results = [f[3] for f in listener.of("finished") if f[3]]
    assert any(r.startswith("OpaqueRef:") for r in results)


def test_spawn_from_template(sim, make_driver, xapi):
    driver = make_driver(sim.url, vm_template="Debian Bookworm 12")
    inst = make_instance(vcpus=3, memory_mb=1024, root_gb=4)
    before = counts(xapi)
    info = driver.spawn(op_for(inst, "spawn"), inst)
    assert info.power_state == power_state.RUNNING
    _, vm = vm_of(xapi, inst)
    assert not vm["is_a_template"]
    assert vm["name_label"] == inst["name"]
    assert int(vm["VCPUs_max"]) == 3 and int(vm["memory_dynamic_max"]) == 1024 * MiB
    driver.destroy(op_for(inst, "destroy"), inst)
    assert counts(xapi) == before


def test_spawn_is_reused_when_vm_exists(driver, xapi):
    inst = make_instance()
    driver.spawn(op_for(inst, "spawn"), inst)
    before = counts(xapi)
    info = driver.spawn(op_for(inst, "spawn"), inst)  # a retried build
    assert info.power_state == power_state.RUNNING
    assert counts(xapi) == before
    driver.destroy(op_for(inst, "destroy"), inst)


def test_named_network_is_used_when_it_exists(driver, xapi):
    net = xapi.xenapi.network.create({
        "name_label": "tenant-net", "name_description": "", "MTU": "1500",
        "other_config": {}, "bridge": "xenbr9", "managed": True, "tags": [],
    })
    inst = make_instance()
    inst["networks"] = [{"name": "tenant-net"}, "no-such-network"]
    driver.spawn(op_for(inst, "spawn"), inst)
    _, vm = vm_of(xapi, inst)
    vifs = [xapi.xenapi.VIF.get_record(v) for v in vm["VIFs"]]
    assert [(v["device"], v["network"]) for v in vifs] == [("0", net)]
    driver.destroy(op_for(inst, "destroy"), inst)


def test_failed_spawn_cleans_up(sim, driver, xapi):
    before = counts(xapi)
    inst = make_instance()
    # More memory than the host has: VM.start fails, the build is undone.
    inst["flavor"]["memory_mb"] = 10 * 1024 * 1024
    with pytest.raises(exceptions.HypervisorError) as exc:
        driver.spawn(op_for(inst, "spawn"), inst)
    assert exc.value.code in ("HOST_NOT_ENOUGH_FREE_MEMORY", "NO_HOSTS_AVAILABLE")
    assert counts(xapi) == before


def test_clean_shutdown_refused_then_hard(ctl, driver, xapi):
    inst = make_instance()
    driver.spawn(op_for(inst, "spawn"), inst)
    ref, _ = vm_of(xapi, inst)
    # A guest without PV drivers cannot shut down cleanly.
    ctl.fail("Async.VM.clean_shutdown", ["VM_LACKS_FEATURE_SHUTDOWN", ref])
    driver.power_off(op_for(inst, "power_off"), inst, clean=True)
    assert vm_of(xapi, inst)[1]["power_state"] == "Halted"
    assert driver.get_info(inst).power_state == power_state.SHUTDOWN
    driver.destroy(op_for(inst, "destroy"), inst)


def test_clean_shutdown_times_out_then_hard(ctl, driver, xapi):
    inst = make_instance()
    driver.spawn(op_for(inst, "spawn"), inst)
    ctl.set_duration("VM.clean_shutdown", 30.0)  # a guest that ignores ACPI
    t0 = time.monotonic()
    driver.power_off(op_for(inst, "power_off"), inst, clean=True, timeout=0.5)
    assert time.monotonic() - t0 < 10
    ref, vm = vm_of(xapi, inst)
    assert vm["power_state"] == "Halted"
    assert driver.get_info(inst).power_state == power_state.SHUTDOWN
    driver.destroy(op_for(inst, "destroy"), inst)


def test_session_invalid_after_xapi_restart_relogs_in(ctl, driver, xapi):
    inst = make_instance()
    driver.spawn(op_for(inst, "spawn"), inst)
    ctl.restart_xapi()
    # Every pooled session is now invalid; the driver logs in again unseen.
    assert driver.get_info(inst).power_state == power_state.RUNNING
    driver.power_off(op_for(inst, "power_off"), inst, clean=False)
    assert driver.get_info(inst).power_state == power_state.SHUTDOWN
    driver.destroy(op_for(inst, "destroy"), inst)


def test_host_is_slave_followed_to_coordinator(make_driver):
    sim = Simulator(hosts=2, task_duration=0.05).start()
    try:
        member_url = sim.urls[1]
        driver = make_driver(member_url)
        assert driver.pool.url == sim.master_url
        inst = make_instance()
        assert driver.spawn(op_for(inst, "spawn"), inst).power_state == power_state.RUNNING
        res = driver.get_host_resources()
        assert res["hypervisor_hostname"] == "host2"  # the host the URL names
        driver.destroy(op_for(inst, "destroy"), inst)
    finally:
        sim.stop()


def unavailable(driver) -> exceptions.HypervisorUnavailable:
    """A driver that could not connect at init_host (it keeps trying in the
    background): not available, and every dom0 call says why."""
    assert not driver.available
    with pytest.raises(exceptions.HypervisorUnavailable) as exc:
        driver.get_host_resources()
    return exc.value


def test_dom0_unreachable(make_driver):
    url = f"http://127.0.0.1:{free_port()}"
    err = unavailable(make_driver(url))
    assert err.params[0] == url
    assert PASSWORD not in err.message


def test_dom0_goes_away_mid_life(make_driver):
    sim = Simulator(task_duration=0.05).start()
    driver = make_driver(sim.url)
    inst = make_instance()
    driver.spawn(op_for(inst, "spawn"), inst)
    sim.stop()
    with pytest.raises(exceptions.HypervisorUnavailable) as exc:
        driver.get_info(inst)
    assert "OpaqueRef" not in exc.value.message and PASSWORD not in exc.value.message


def test_login_hang_times_out(sim, ctl, make_driver):
    ctl.hang("session.login_with_password", seconds=5.0)
    t0 = time.monotonic()
    err = unavailable(make_driver(sim.url, login_timeout=1))
    assert err.params[1] == "timed out"
    assert time.monotonic() - t0 < 4


def test_bad_password_is_a_structured_error_without_the_password(sim, make_driver, caplog):
    with pytest.raises(exceptions.HypervisorError) as exc:
        make_driver(sim.url, connection_password="wrong-secret")
    assert exc.value.code == "SESSION_AUTHENTICATION_FAILED"
    assert "wrong-secret" not in exc.value.message
    assert "wrong-secret" not in caplog.text


def test_tls_verified_with_ca_file(make_driver):
    sim = Simulator(tls=True, task_duration=0.05).start()
    try:
        # The system trust store does not know the sim's CA.
        assert "certificate" in unavailable(make_driver(sim.url)).params[1]
        driver = make_driver(sim.url, ca_file=sim.ca_file)
        inst = make_instance()
        assert driver.spawn(op_for(inst, "spawn"), inst).power_state == power_state.RUNNING
        driver.destroy(op_for(inst, "destroy"), inst)
        insecure = make_driver(sim.url, insecure=True)
        assert insecure.get_host_resources()["hypervisor_type"] == "xen"
    finally:
        sim.stop()


def test_host_resources(sim, driver):
    res = driver.get_host_resources()
    assert set(res) == set(HOST_RESOURCE_KEYS)
    assert res["vcpus"] == sim.host_cpus
    assert res["memory_mb"] == sim.host_memory_mb
    assert 0 < res["free_memory_mb"] < res["memory_mb"]
    assert res["memory_mb_used"] == res["memory_mb"] - res["free_memory_mb"]
    assert res["local_gb"] == sim.sr_size_gb
    assert res["hypervisor_type"] == "xen" and res["hypervisor_version"]
    assert res["hypervisor_hostname"] == "host1"
    assert res["running_vms"] == 0 and res["vcpus_used"] == 0
    inst = make_instance(vcpus=3, memory_mb=2048, root_gb=20)
    driver.spawn(op_for(inst, "spawn"), inst)
    after = driver.get_host_resources()
    assert after["running_vms"] == 1 and after["vcpus_used"] == 3
    assert after["free_memory_mb"] <= res["free_memory_mb"] - 2048
    assert after["local_gb_used"] >= res["local_gb_used"]
    driver.destroy(op_for(inst, "destroy"), inst)


def test_operation_timeout_cancels_the_task(ctl, driver, xapi, listener):
    inst = make_instance()
    driver.spawn(op_for(inst, "spawn"), inst)
    driver.power_off(op_for(inst, "power_off"), inst, clean=False)
    ctl.set_duration("VM.start_on", 30.0)
    with pytest.raises(exceptions.OperationTimedOut):
        driver.power_on(op_for(inst, "power_on", timeout=0.5), inst)
    assert vm_of(xapi, inst)[1]["power_state"] == "Halted"
    assert listener.of("finished")[-1][2] == "cancelled"
    ctl.set_duration("VM.start_on", 0.05)
    driver.destroy(op_for(inst, "destroy"), inst)


def test_cancel_in_flight_operation(ctl, driver, xapi):
    inst = make_instance()
    driver.spawn(op_for(inst, "spawn"), inst)
    driver.power_off(op_for(inst, "power_off"), inst, clean=False)
    ctl.set_duration("VM.start_on", 30.0)
    errors: list[BaseException] = []

    def power_on() -> None:
        try:
            driver.power_on(op_for(inst, "power_on"), inst)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            errors.append(e)

    t = threading.Thread(target=power_on)
    t.start()
    deadline = time.monotonic() + 5
    while not xapi.xenapi.task.get_all() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert driver.cancel(inst["uuid"]) is True
    t.join(10)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], exceptions.OperationCancelled)
    assert vm_of(xapi, inst)[1]["power_state"] == "Halted"
    assert driver.cancel(inst["uuid"]) is False
    ctl.set_duration("VM.start_on", 0.05)
    driver.destroy(op_for(inst, "destroy"), inst)


def _session_count(xapi) -> int:
    # xapi has no session.get_all; event.from counts the class's objects.
    answer = getattr(xapi.xenapi.event, "from")(["session"], "", 0.0)
    return int(answer["valid_ref_counts"]["session"])


def test_cleanup_host_logs_out(sim, make_driver, xapi):
    driver = make_driver(sim.url)
    driver.get_host_resources()
    with_driver = _session_count(xapi)
    driver.cleanup_host()
    driver.cleanup_host()  # twice is fine
    assert _session_count(xapi) < with_driver


def test_cancelled_or_timed_out_build_leaves_nothing(ctl, driver, xapi):
    before = counts(xapi)
    ctl.set_duration("VM.start_on", 30.0)
    inst = make_instance()
    errors: list[BaseException] = []

    def spawn() -> None:
        try:
            driver.spawn(op_for(inst, "spawn"), inst)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            errors.append(e)

    t = threading.Thread(target=spawn)
    t.start()
    deadline = time.monotonic() + 5
    while not any(r["name_label"] == "Async.VM.start_on"
                  for r in xapi.xenapi.task.get_all_records().values()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert driver.cancel(inst["uuid"])
    t.join(10)
    assert len(errors) == 1 and isinstance(errors[0], exceptions.OperationCancelled)
    assert counts(xapi) == before

    inst = make_instance()
    with pytest.raises(exceptions.OperationTimedOut):
        driver.spawn(op_for(inst, "spawn", timeout=1.0), inst)
    assert counts(xapi) == before
