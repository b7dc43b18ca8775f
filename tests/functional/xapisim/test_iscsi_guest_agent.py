"""iSCSI SRs over targets defined through the control API, and the guest
agent over xenstore reached through the shipped guest_agent plugin, on
xapisim through the official SDK over HTTP."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import uuid

import pytest
from simvm import failure, make_vm, vbd_record

from xapisim.control_client import ControlError, SimControl

IQN = "iqn.2026-11.org.example:vol-a"
PORTAL = "192.0.2.10"
DH_PRIME = 162259276829213363391578010288127  # the guest agent protocol's group


@pytest.fixture
def x(xapi):
    return xapi.xenapi


@pytest.fixture
def ctl(sim):
    return SimControl(sim.url)


def introduce(x, host: str, device_config: dict[str, str]) -> tuple[str, str]:
    sr = x.SR.introduce(str(uuid.uuid4()), "volume SR", "", "iscsi", "", False, {})
    pbd = x.PBD.create({"host": host, "SR": sr, "device_config": device_config})
    return sr, pbd


def config(**over: str) -> dict[str, str]:
    base = {"target": PORTAL, "port": "3260", "targetIQN": IQN}
    base.update(over)
    return base


def test_scan_makes_one_vdi_per_lun_with_stable_uuids(x, ctl):
    ctl.define_target(IQN, PORTAL, {0: 2 * 1024**3, 1: 1024**3})
    host = x.host.get_all()[0]
    sr, pbd = introduce(x, host, config())
    x.PBD.plug(pbd)
    x.SR.scan(sr)
    vdis = {x.VDI.get_sm_config(v)["LUNid"]: v for v in x.SR.get_VDIs(sr)}
    assert sorted(vdis) == ["0", "1"]
    assert x.VDI.get_virtual_size(vdis["0"]) == str(2 * 1024**3)
    uuids = {k: x.VDI.get_uuid(v) for k, v in vdis.items()}
    # forget and introduce again: the LUNs come back as the same VDIs
    x.PBD.unplug(pbd)
    x.SR.forget(sr)
    sr, pbd = introduce(x, host, config())
    x.PBD.plug(pbd)
    x.SR.scan(sr)
    again = {x.VDI.get_sm_config(v)["LUNid"]: x.VDI.get_uuid(v)
             for v in x.SR.get_VDIs(sr)}
    assert again == uuids


def test_plug_refusals_are_xapis_backend_failures(x, ctl):
    ctl.define_target(IQN, PORTAL, {0: 1024**3}, chap_user="alice", chap_secret="s3cret")
    host = x.host.get_all()[0]
    cases = {
        "SR_BACKEND_FAILURE_68": config(chapuser="alice", chappassword="wrong"),
        "SR_BACKEND_FAILURE_141": config(target="192.0.2.99"),
        "SR_BACKEND_FAILURE_83": config(targetIQN="iqn.2026-11.org.example:nope"),
        "SR_BACKEND_FAILURE_96": {"target": PORTAL},
    }
    for code, dc in cases.items():
        sr, pbd = introduce(x, host, dc)
        err = failure(x.PBD.plug, pbd)
        assert err[0] == code and err[1] == "" and err[2], err
        assert x.PBD.get_currently_attached(pbd) is False
        x.SR.forget(sr)
    # no CHAP at all against a target that demands it
    sr, pbd = introduce(x, host, config())
    assert failure(x.PBD.plug, pbd)[0] == "SR_BACKEND_FAILURE_68"
    x.PBD.destroy(pbd)
    pbd = x.PBD.create({"host": host, "SR": sr,
                           "device_config": config(chapuser="alice", chappassword="s3cret")})
    x.PBD.plug(pbd)
    # the control API never shows the secret
    targets = ctl.post("storage/targets")["targets"]
    assert "s3cret" not in json.dumps(targets) and targets[0]["chap"] is True


def test_lun_hot_plugs_into_a_running_vm_and_sr_needs_unplugged_vbds(x, ctl):
    ctl.define_target(IQN, PORTAL, {0: 1024**3})
    host = x.host.get_all()[0]
    sr, pbd = introduce(x, host, config())
    x.PBD.plug(pbd)
    x.SR.scan(sr)
    vdi = x.SR.get_VDIs(sr)[0]
    vm = make_vm(x)
    x.VM.start(vm, False, False)
    device = x.VM.get_allowed_VBD_devices(vm)[0]
    vbd = x.VBD.create(vbd_record(vm, vdi, userdevice=device))
    x.VBD.plug(vbd)
    assert x.VBD.get_currently_attached(vbd) is True
    assert x.VBD.get_device(vbd) == "xvdb"
    assert failure(x.PBD.unplug, pbd)[0] == "VDI_IN_USE"
    x.VBD.unplug(vbd)
    x.VBD.destroy(vbd)
    x.PBD.unplug(pbd)
    x.SR.forget(sr)


def test_hvm_guests_hot_plug_only_with_pv_drivers_and_never_cds(sim, x, ctl):
    ctl.set_duration("guest.agent", 30.0)  # the PV drivers come up late
    vm = make_vm(x, domain_type="hvm", HVM_boot_policy="BIOS order")
    x.VM.start(vm, False, False)
    disk = x.VDI.create({"name_label": "d", "name_description": "",
                         "SR": x.pool.get_default_SR(x.pool.get_all()[0]),
                         "virtual_size": str(1024**2), "type": "user", "sharable": False,
                         "read_only": False, "other_config": {}})
    vbd = x.VBD.create(vbd_record(vm, disk, userdevice="1"))
    assert failure(x.VBD.plug, vbd) == ["VM_MISSING_PV_DRIVERS", vm]
    assert "plug" not in x.VBD.get_allowed_operations(vbd)
    cd = x.VBD.create(vbd_record(vm, "OpaqueRef:NULL", userdevice="3", vbd_type="CD",
                                 mode="RO", empty=True))
    # the guest agent reports PV drivers: disks hot-plug, CDs still do not
    from xapisim.guest_agent import publish_guest_metrics

    publish_guest_metrics(sim, vm, int(x.VM.get_domid(vm)))
    assert "plug" in x.VBD.get_allowed_operations(vbd)
    x.VBD.plug(vbd)
    assert failure(x.VBD.plug, cd)[0] == "OPERATION_NOT_ALLOWED"


def test_bad_target_definitions_are_refused(ctl):
    with pytest.raises(ControlError) as e:
        ctl.post("storage/target", iqn=IQN, portal=PORTAL, luns={"x": 1})
    assert e.value.status == 400


# -- the guest agent -------------------------------------------------------------------

def running_vm(x) -> tuple[str, str, str]:
    vm = make_vm(x)
    x.VM.start(vm, False, False)
    return vm, x.VM.get_domid(vm), x.VM.get_resident_on(vm)


def agent(x, host: str, fn: str, **args: str) -> dict:
    return json.loads(x.host.call_plugin(host, "guest_agent", fn, args))


def openssl_encrypt(secret: int, text: str) -> str:
    """The host side as nova did it: the openssl command line, not our code."""
    out = subprocess.run(
        ["openssl", "enc", "-aes-128-cbc", "-a", "-A", "-nosalt", "-md", "md5",
         "-pass", f"pass:{secret}"], input=text.encode(), capture_output=True, check=True)
    return out.stdout.decode().strip()


def test_guest_agent_key_exchange_and_password(x, ctl):
    vm, domid, host = running_vm(x)
    private = secrets.randbelow(DH_PRIME - 2) + 1
    reply = agent(x, host, "key_init", dom_id=domid, id=str(uuid.uuid4()), timeout="10",
                  pub=str(pow(5, private, DH_PRIME)))
    assert reply["returncode"] == "D0"
    enc = openssl_encrypt(pow(int(reply["message"]), private, DH_PRIME), "correct horse")
    assert "correct horse" not in enc
    reply = agent(x, host, "password", dom_id=domid, id=str(uuid.uuid4()), timeout="10",
                  enc_pass=enc)
    assert reply == {"returncode": "0", "message": ""}
    assert ctl.inspect_guest(x.VM.get_uuid(vm))["password"] == "correct horse"
    # the request and reply do not stay in xenstore
    hu = x.host.get_uuid(host)
    assert ctl.xenstore(hu, "ls", f"/local/domain/{domid}/data/guest")["entries"] == []


def test_guest_agent_file_inject_resetnetwork_and_failure_modes(x, ctl):
    vm, domid, host = running_vm(x)
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    reply = agent(x, host, "inject_file", dom_id=domid, id=str(uuid.uuid4()), timeout="10",
                  b64_path=b64("/etc/motd"), b64_contents=b64("hello"))
    assert reply["returncode"] == "0"
    agent_args = {"dom_id": domid, "mac": "02:00:00:00:00:01",
                  "value": json.dumps({"mac": "02:00:00:00:00:01", "ips": []})}
    x.host.call_plugin(host, "guest_agent", "write_networking", agent_args)
    agent(x, host, "resetnetwork", dom_id=domid, id=str(uuid.uuid4()), timeout="10")
    seen = ctl.inspect_guest(vm)
    assert seen["files"] == {"/etc/motd": "hello"}
    assert seen["network"] == {"020000000001": {"mac": "02:00:00:00:00:01", "ips": []}}

    ctl.set_guest_agent("failing", vm=vm, error=["500", "no can do"])
    reply = agent(x, host, "resetnetwork", dom_id=domid, id=str(uuid.uuid4()), timeout="10")
    assert reply == {"returncode": "500", "message": "no can do"}
    ctl.set_guest_agent("slow", vm=vm, delay=0.6)
    assert agent(x, host, "version", dom_id=domid, id=str(uuid.uuid4()),
                 timeout="10")["returncode"] == "0"
    err = failure(x.host.call_plugin, host, "guest_agent", "version",
                  {"dom_id": domid, "id": str(uuid.uuid4()), "timeout": "0.2"})
    assert err == ["AGENT_TIMEOUT", "version", "0.2"]
    ctl.set_guest_agent("absent", vm=vm)
    err = failure(x.host.call_plugin, host, "guest_agent", "version",
                  {"dom_id": domid, "id": str(uuid.uuid4()), "timeout": "0.5"})
    assert err == ["AGENT_TIMEOUT", "version", "0.5"]


def test_guest_agent_plugin_checks_its_arguments(x):
    vm, domid, host = running_vm(x)
    good = {"dom_id": domid, "id": str(uuid.uuid4()), "timeout": "5"}
    bad = [
        ({**good, "dom_id": "0"}, "dom_id"),
        ({**good, "id": "../../etc"}, "id"),
        ({**good, "timeout": "9999"}, "timeout"),
        ({**good, "extra": "x"}, "extra"),
        ({"id": good["id"], "timeout": "5"}, "dom_id"),
    ]
    for args, field in bad:
        err = failure(x.host.call_plugin, host, "guest_agent", "version", args)
        assert err[:2] == ["INVALID_ARGUMENT", field], err
    err = failure(x.host.call_plugin, host, "guest_agent", "password",
                  {**good, "enc_pass": "not base64!"})
    assert err[:2] == ["INVALID_ARGUMENT", "enc_pass"]
