"""What a real XCP-ng dom0 has that clients use, on xapisim over real HTTP
(official SDK, plain JSON-RPC) and over xapi's local Unix socket (the
SDK's local transport): the Tools ISO SR, the local socket with its
trusted root login, default templates with a disk plan that VM.provision
honours, VM.checkpoint and SR.probe in its NFS and iSCSI forms."""

from __future__ import annotations

import json
import xml.dom.minidom

import pytest
import XenAPI
from simvm import GiB, failure, vbd_record

from tests.functional.harness import running_simulator
from xapisim import storage_network

TEMPLATE = "Debian Bookworm 12"


@pytest.fixture
def x(xapi):
    return xapi.xenapi


def local_session(path) -> XenAPI.Session:
    """The SDK's own local transport (what XenAPI.xapi_local() builds),
    pointed at ``path`` instead of /var/lib/xcp/xapi."""
    assert "_" not in str(path)  # the SDK spells "/" as "_" in the host part
    return XenAPI.Session("http://" + str(path).replace("/", "_") + "/",
                          transport=XenAPI.UDSTransport())


def new_vm(x, name: str = "vm") -> str:
    vm = x.VM.clone(x.VM.get_by_name_label(TEMPLATE)[0], name)
    x.VM.provision(vm)
    x.VM.set_is_a_template(vm, False)
    return vm


# -- the Tools ISO SR ---------------------------------------------------------------------
def test_tools_iso_sr_is_shared_and_holds_guest_tools(sim, x):
    srs = x.SR.get_all_records_where('field "is_tools_sr" = "true"')
    assert len(srs) == 1
    sr, rec = srs.popitem()
    assert (rec["type"], rec["content_type"], rec["shared"]) == ("iso", "iso", True)
    assert rec["name_label"] == "XCP-ng Tools"
    assert {x.PBD.get_host(p) for p in rec["PBDs"]} == set(x.host.get_all())
    assert all(x.PBD.get_currently_attached(p) for p in rec["PBDs"])
    (iso,) = rec["VDIs"]
    vdi = x.VDI.get_record(iso)
    assert vdi["name_label"] == "guest-tools.iso" and vdi["is_tools_iso"] is True
    assert vdi["read_only"] is True
    assert x.VDI.get_by_name_label("guest-tools.iso") == [iso]
    # clients insert it into a VM's CD drive
    vm = new_vm(x)
    cd = x.VBD.create(vbd_record(vm, "OpaqueRef:NULL", userdevice="3", mode="RO",
                                 vbd_type="CD", empty=True))
    x.VBD.insert(cd, iso)
    assert x.VBD.get_VDI(cd) == iso and x.VBD.get_empty(cd) is False
    x.VM.start(vm, False, False)
    assert x.VBD.get_currently_attached(cd) is True
    x.VBD.eject(cd)
    assert x.VBD.get_empty(cd) is True


def test_tools_sr_is_plugged_on_every_member():
    with running_simulator(hosts=3) as sim:
        s = XenAPI.Session(sim.url)
        s.xenapi.login_with_password("root", "password", "2.0", "tools")
        (sr,) = s.xenapi.SR.get_all_records_where('field "is_tools_sr" = "true"')
        assert len(s.xenapi.SR.get_PBDs(sr)) == 3
        s.xenapi.session.logout()


# -- xapi's local Unix socket ------------------------------------------------------------
def test_local_socket_trusts_root_with_empty_credentials(sim, x):
    path = sim.local_socket_path(sim.master_ref)
    assert str(path).endswith("/var/lib/xcp/xapi")
    assert str(path).startswith(str(sim.state_dir / "dom0root"))
    local = local_session(path)
    local.xenapi.login_with_password("root", "", "2.0", "dom0 tool")
    try:
        assert local.xenapi.session.get_this_host(local._session) == sim.master_ref
        assert set(local.xenapi.VM.get_all()) == set(x.VM.get_all())
        rec = local.xenapi.session.get_record(local._session)
        assert rec["auth_user_name"] == "root" and rec["is_local_superuser"] is True
        # the same protocols: JSON-RPC and XML-RPC both answer there
        conn = XenAPI.UDSHTTPConnection(str(path).replace("/", "_"))
        conn.request("POST", "/jsonrpc", json.dumps(
            {"jsonrpc": "2.0", "method": "pool.get_all", "params": [local._session],
             "id": 7}), {"Content-Type": "application/json"})
        answer = json.loads(conn.getresponse().read())
        conn.close()
        assert answer["id"] == 7 and answer["result"] == x.pool.get_all()
    finally:
        local.xenapi.session.logout()
    # over TCP the same empty credentials are refused
    tcp = XenAPI.Session(sim.url)
    with pytest.raises(XenAPI.Failure) as e:
        tcp.xenapi.login_with_password("root", "", "2.0", "remote")
    assert e.value.details == ["SESSION_AUTHENTICATION_FAILED", "root",
                               "Authentication failure"]


def test_member_local_socket_forwards_to_the_coordinator():
    with running_simulator(hosts=2) as sim:
        member = next(h for h in sim.store.refs("host") if h != sim.master_ref)
        local = local_session(sim.local_socket_path(member))
        local.xenapi.login_with_password("root", "", "2.0", "member tool")
        # over TCP a member answers HOST_IS_SLAVE; its local socket forwards
        assert len(local.xenapi.host.get_all()) == 2
        local.xenapi.session.logout()
        raw = XenAPI.Session(sim.urls[1])
        with pytest.raises(XenAPI.Failure) as e:
            raw.xenapi.login_with_password("root", "password", "2.0", "remote")
        assert e.value.details[0] == "HOST_IS_SLAVE"


def test_local_socket_goes_with_the_simulator():
    with running_simulator() as sim:
        path = sim.local_socket_path(sim.master_ref)
        assert path.is_socket()
    assert not path.exists()


# -- templates and VM.provision ---------------------------------------------------------
def test_default_templates_carry_a_disk_plan_provision_honours(sim, x):
    default_sr = x.pool.get_default_SR(x.pool.get_all()[0])
    templates = x.VM.get_all_records_where('field "is_default_template" = "true"')
    assert len(templates) >= 4
    for rec in templates.values():
        plan = xml.dom.minidom.parseString(rec["other_config"]["disks"])
        (disk,) = plan.getElementsByTagName("disk")
        assert disk.getAttribute("bootable") == "true" and disk.getAttribute("sr") == ""
        assert int(disk.getAttribute("size")) >= 8 * GiB
    tpl = x.VM.get_by_name_label(TEMPLATE)[0]
    vm = x.VM.clone(tpl, "installed")
    assert x.VM.get_VBDs(vm) == []
    x.VM.provision(vm)
    rec = x.VM.get_record(vm)
    assert "disks" not in rec["other_config"]
    (vbd,) = rec["VBDs"]
    vdi = x.VBD.get_VDI(vbd)
    assert x.VBD.get_bootable(vbd) is True and x.VBD.get_userdevice(vbd) == "0"
    assert x.VDI.get_virtual_size(vdi) == str(10 * GiB)
    assert x.VDI.get_SR(vdi) == default_sr  # sr="" means the pool's default SR
    # the template itself keeps its plan
    assert "disks" in x.VM.get_other_config(tpl)


# -- VM.checkpoint ------------------------------------------------------------------------
def test_checkpoint_keeps_the_vm_running_and_saves_its_memory(sim, x):
    vm = new_vm(x, "checkpointed")
    x.VM.start(vm, False, False)
    disks_before = len(x.VDI.get_all())
    cp = x.VM.checkpoint(vm, "cp1")
    assert x.VM.get_power_state(vm) == "Running"
    rec = x.VM.get_record(cp)
    assert rec["is_a_snapshot"] is True and rec["snapshot_of"] == vm
    assert rec["power_state"] == "Suspended"
    assert rec["snapshot_info"]["power-state-at-snapshot"] == "Running"
    image = rec["suspend_VDI"]
    assert x.VDI.get_type(image) == "suspend"
    assert int(x.VDI.get_virtual_size(image)) >= int(x.VM.get_memory_static_max(vm))
    assert cp in x.VM.get_snapshots(vm)
    assert len(x.VDI.get_all()) == disks_before + 2  # disk snapshot and memory image
    # revert brings the VM back suspended, ready to resume where it was
    x.VM.revert(cp)
    assert x.VM.get_power_state(vm) == "Suspended"
    x.VM.resume(vm, False, False)
    assert x.VM.get_power_state(vm) == "Running"
    # a halted VM has no memory to save
    halted = new_vm(x, "halted")
    assert failure(x.VM.checkpoint, halted, "nope") == [
        "VM_BAD_POWER_STATE", halted, "paused, suspended, running", "halted"]


def test_async_checkpoint_over_jsonrpc(sim, x, xapi, jsonrpc):
    vm = new_vm(x, "json")
    x.VM.start(vm, False, False)
    task = jsonrpc.call("Async.VM.checkpoint", xapi._session, vm, "cp")["result"]
    status = "pending"
    while status == "pending":
        status = x.task.get_status(task)
    assert status == "success", x.task.get_error_info(task)
    assert len(x.VM.get_snapshots(vm)) == 1


# -- SR.probe ---------------------------------------------------------------------------------
def _xml(text: str) -> xml.dom.minidom.Document:
    return xml.dom.minidom.parseString(text)


def _texts(doc, tag: str) -> list[str]:
    return [e.firstChild.data for e in doc.getElementsByTagName(tag)]


def test_sr_probe_nfs_walks_server_exports_srs(sim, x):
    host = sim.master_ref
    assert failure(x.SR.probe, host, {}, "nfs", {}) == [
        "SR_BACKEND_FAILURE_102", "", "The request is missing the server parameter", ""]
    assert failure(x.SR.probe, host, {"server": "192.0.2.7"}, "nfs", {})[:3] == [
        "SR_BACKEND_FAILURE_108", "", "Unable to detect an NFS service on this target."]
    # the server alone: the exports, on stderr of error 101
    code, _, msg, exports = failure(x.SR.probe, host, {"server": "nas1"}, "nfs", {})
    assert (code, msg) == ("SR_BACKEND_FAILURE_101",
                           "The request is missing the serverpath parameter")
    doc = _xml(exports)
    assert _texts(doc, "Path") == list(storage_network.NFS_EXPORTS)
    assert set(_texts(doc, "Target")) == {"nas1"}
    assert failure(x.SR.probe, host, {"server": "nas1", "serverpath": "/nope"}, "nfs",
                   {})[0] == "SR_BACKEND_FAILURE_73"
    dconf = {"server": "nas1", "serverpath": "/export/xapisim"}
    assert _texts(_xml(x.SR.probe(host, dconf, "nfs", {})), "UUID") == []
    sr = x.SR.create(host, dconf, "0", "nfs sr", "", "nfs", "user", True, {})
    assert _texts(_xml(x.SR.probe(host, dconf, "nfs", {})), "UUID") == [x.SR.get_uuid(sr)]


def test_sr_probe_iscsi_walks_target_iqn_lun_srs(sim, x, xapi, jsonrpc):
    host = sim.master_ref
    assert failure(x.SR.probe, host, {}, "lvmoiscsi", {})[:3] == [
        "SR_BACKEND_FAILURE_95", "", "The request is missing the target parameter"]
    assert failure(x.SR.probe, host, {"target": "192.0.2.1"}, "lvmoiscsi", {})[0] == \
        "SR_BACKEND_FAILURE_141"
    code, _, _, iqns = failure(x.SR.probe, host, {"target": "10.1.2.3"}, "lvmoiscsi", {})
    assert code == "SR_BACKEND_FAILURE_96"
    (iqn,) = _texts(_xml(iqns), "TargetIQN")
    assert _texts(_xml(iqns), "IPAddress") == ["10.1.2.3"]
    dconf = {"target": "10.1.2.3", "targetIQN": iqn}
    # a plain JSON-RPC client meets the same error, LUN list on stderr
    err = jsonrpc.call("SR.probe", xapi._session, host, dconf, "lvmoiscsi", {})["error"]
    assert err["message"] == "SR_BACKEND_FAILURE_107"
    luns = _xml(err["data"][2])
    scsi_ids = _texts(luns, "SCSIid")
    assert len(scsi_ids) == 2 and _texts(luns, "LUNid") == ["0", "1"]
    assert failure(x.SR.probe, host, {**dconf, "targetIQN": "iqn.other:x"}, "lvmoiscsi",
                   {})[0] == "SR_BACKEND_FAILURE_68"
    full = {**dconf, "SCSIid": scsi_ids[0]}
    assert _texts(_xml(x.SR.probe(host, full, "lvmoiscsi", {})), "UUID") == []
    sr = x.SR.create(host, full, "0", "iscsi sr", "", "lvmoiscsi", "user", True, {})
    srlist = _xml(x.SR.probe(host, full, "lvmoiscsi", {}))
    assert _texts(srlist, "UUID") == [x.SR.get_uuid(sr)]
    assert _texts(srlist, "Devlist") == [f"/dev/disk/by-id/scsi-{scsi_ids[0]}"]
    assert failure(x.SR.probe, host, {**dconf, "SCSIid": "36nope"}, "lvmoiscsi",
                   {})[0] == "SR_BACKEND_FAILURE_107"
    assert failure(x.SR.probe, host, {}, "no-such-driver", {}) == [
        "SR_UNKNOWN_DRIVER", "no-such-driver"]
