"""Pure logic of the XenAPI driver: task result decoding, power-state
mapping, SR filter parsing, network requests, host figures, error
translation and the records the driver sends (checked against the XenAPI
data model in shared/xapi/xenapi.json)."""

from __future__ import annotations

import json
import pathlib
import ssl
import xmlrpc.client

import pytest
import XenAPI

from compute_agent import exceptions
from compute_agent.driver import power_state
from compute_agent.driver.xenapi import errors, host, network, ownership, storage, vm_ops
from compute_agent.driver.xenapi.task_result import TaskOutcome, decode_result
from compute_agent.driver.xenapi.transport import host_of, with_host

# The XenAPI data model (xapi-project/xen-api doc/data/xenapi.json) as the
# repository carries it for the simulator.
XENAPI_JSON = pathlib.Path(__file__).resolve().parents[4] / "xapisim" / "data" / "datamodel.json"

INSTANCE = {
    "uuid": "8d7f1c1e-0000-4000-8000-000000000001",
    "name": "web-1",
    "flavor": {"vcpus": 2, "memory_mb": 1024, "root_gb": 10},
    "image": {"id": "img", "url": None, "disk_format": "raw"},
    "networks": [],
    "metadata": {},
}


# -- task results ------------------------------------------------------------------


def test_decode_ref_value():
    assert decode_result("<value>OpaqueRef:1234-abcd</value>") == "OpaqueRef:1234-abcd"


def test_decode_empty_and_none_are_void():
    assert decode_result("") is None
    assert decode_result(None) is None
    assert decode_result("   ") is None


def test_decode_bare_ref_from_older_xapi():
    assert decode_result("OpaqueRef:abc") == "OpaqueRef:abc"


def test_decode_full_values():
    encoded = xmlrpc.client.dumps(
        ({"a": "1", "refs": ["OpaqueRef:x", "OpaqueRef:y"], "ok": True},)
    )
    value = encoded.split("<param>")[1].split("</param>")[0]
    assert decode_result(value) == {"a": "1", "refs": ["OpaqueRef:x", "OpaqueRef:y"], "ok": True}
    assert decode_result("<value><string>a &amp; b</string></value>") == "a & b"
    assert decode_result("<value><int>42</int></value>") == 42


def test_decode_garbage_is_a_structured_error():
    with pytest.raises(exceptions.HypervisorError) as exc:
        decode_result("<value><struct><member>")
    assert exc.value.code == "TASK_RESULT_UNPARSEABLE"


def test_outcome_success_decodes_result():
    out = TaskOutcome.from_record(
        "OpaqueRef:t", {"status": "success", "result": "<value>OpaqueRef:vm</value>",
                        "error_info": [], "uuid": "u"}
    )
    assert (out.status, out.result, out.uuid) == ("success", "OpaqueRef:vm", "u")
    assert out.listener_result == "OpaqueRef:vm"
    assert out.listener_status == "success"


def test_outcome_failure_gives_same_error_as_sync_call():
    rec = {"status": "failure", "result": "",
           "error_info": ["VM_BAD_POWER_STATE", "OpaqueRef:vm", "halted", "running"]}
    out = TaskOutcome.from_record("OpaqueRef:t", rec)
    err = out.error()
    sync = errors.from_failure(XenAPI.Failure(rec["error_info"]))
    assert isinstance(err, exceptions.HypervisorError)
    assert (err.code, err.params) == (sync.code, sync.params)
    assert err.code == "VM_BAD_POWER_STATE"
    assert err.params == ["OpaqueRef:vm", "halted", "running"]
    assert out.result is None and out.listener_result is None


def test_outcome_lost():
    out = TaskOutcome.lost("OpaqueRef:t")
    assert out.listener_status == "failure"
    assert out.error().code == "TASK_LOST"


# -- power states ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "xapi, ours",
    [("Halted", power_state.SHUTDOWN), ("Running", power_state.RUNNING),
     ("Paused", power_state.PAUSED), ("Suspended", power_state.SUSPENDED),
     ("Bogus", power_state.NOSTATE)],
)
def test_power_state_mapping(xapi, ours):
    assert vm_ops.map_power_state({"power_state": xapi, "other_config": {}}) == ours


def test_crashed_detection_from_last_shutdown_reason():
    rec = {"power_state": "Halted", "other_config": {"last_shutdown_reason": "crashed"}}
    assert vm_ops.map_power_state(rec) == power_state.CRASHED
    info = vm_ops.instance_info("OpaqueRef:vm", rec)
    assert info.shutdown_reason == "crashed" and info.vm_ref == "OpaqueRef:vm"
    # Running again after a crash is running.
    rec["power_state"] = "Running"
    assert vm_ops.map_power_state(rec) == power_state.RUNNING
    halted = {"power_state": "Halted", "other_config": {"last_shutdown_reason": "halted"}}
    assert vm_ops.map_power_state(halted) == power_state.SHUTDOWN


# -- SR filter --------------------------------------------------------------------------


def test_sr_filter_default():
    assert storage.parse_sr_filter("default-sr:true") == storage.SRFilter("default-sr")
    assert storage.parse_sr_filter(" Default-SR:TRUE ").kind == "default-sr"


def test_sr_filter_other_config():
    flt = storage.parse_sr_filter("other-config:i18n-key=local-storage")
    assert (flt.kind, flt.key, flt.value) == ("other-config", "i18n-key", "local-storage")
    assert storage.sr_matches(flt, {"other_config": {"i18n-key": "local-storage"}})
    assert not storage.sr_matches(flt, {"other_config": {"i18n-key": "other"}})
    assert not storage.sr_matches(flt, {"other_config": {}})
    assert str(flt) == "other-config:i18n-key=local-storage"
    # '=' inside the value is part of the value
    assert storage.parse_sr_filter("other-config:k=a=b").value == "a=b"


@pytest.mark.parametrize(
    "bad", ["", "default-sr", "default-sr:false", "other-config:novalue", "other-config:=x",
            "tag:foo"],
)
def test_sr_filter_rejects(bad):
    with pytest.raises(ValueError):
        storage.parse_sr_filter(bad)


# -- networks ------------------------------------------------------------------------------


def test_parse_networks():
    reqs = network.parse_networks(
        ["net-a", {"name": "net-b", "mac": "02:00:00:00:00:01"}, {"uuid": "u-1"}, {"x": 1},
         "  ", 7]
    )
    assert reqs == [
        network.NetworkRequest("net-a"),
        network.NetworkRequest("net-b", "02:00:00:00:00:01"),
        network.NetworkRequest("u-1"),
    ]
    assert network.parse_networks(None) == []


# -- host figures ----------------------------------------------------------------------------


def test_host_summary():
    GiB, MiB = 1024**3, 1024**2
    res = host.summarize(
        {"hostname": "host1", "software_version": {"xen": "4.17.4"}},
        {"memory_total": str(64 * GiB), "memory_free": str(60 * GiB)},
        8,
        {"a": {"power_state": "Running", "VCPUs_at_startup": "2"},
         "b": {"power_state": "Halted", "VCPUs_at_startup": "4"},
         "c": {"power_state": "Paused", "VCPUs_at_startup": "1"}},
        {"physical_size": str(2048 * GiB), "physical_utilisation": str(10 * GiB)},
    )
    assert res == {
        "vcpus": 8, "vcpus_used": 3, "memory_mb": 64 * 1024, "memory_mb_used": 4 * 1024,
        "free_memory_mb": 60 * 1024, "local_gb": 2048, "local_gb_used": 10,
        "hypervisor_type": "xen", "hypervisor_version": "4.17.4",
        "hypervisor_hostname": "host1", "running_vms": 1,
    }
    assert MiB  # used above through GiB


# -- errors ------------------------------------------------------------------------------------


def test_failure_translation_hides_session_and_password():
    f = XenAPI.Failure(["HANDLE_INVALID", "session", "OpaqueRef:secret-session"])
    err = errors.from_failure(f, ["OpaqueRef:secret-session", "hunter2"])
    assert err.code == "HANDLE_INVALID"
    assert err.params == ["session", errors.SESSION_PLACEHOLDER]
    assert "secret-session" not in err.message


def test_unavailable_translation():
    url = "https://root:hunter2@dom0.example:443/"
    for exc in (ConnectionRefusedError(111, "Connection refused"), TimeoutError("timed out"),
                ssl.SSLCertVerificationError("bad"),
                xmlrpc.client.ProtocolError("dom0/", 502, "Bad Gateway", {})):
        err = errors.unavailable(url, exc, ["hunter2"])
        assert isinstance(err, exceptions.HypervisorUnavailable)
        assert err.params[0] == "https://dom0.example:443/"
        assert "hunter2" not in err.message
    assert errors.unavailable(url, TimeoutError()).params[1] == "timed out"


def test_with_host_keeps_scheme_and_port():
    assert with_host("https://10.0.0.2:8443/", "10.0.0.1") == "https://10.0.0.1:8443/"
    assert with_host("http://member", "coord") == "http://coord"
    assert with_host("http://[fe80::2]:80", "fe80::1") == "http://[fe80::1]:80"
    assert host_of("https://10.0.0.2:8443/") == "10.0.0.2"


# -- records against the data model ----------------------------------------------------------


def _model():
    data = json.loads(XENAPI_JSON.read_text())
    return {c["name"]: c for c in data}


def _constructor_fields(cls):
    return {f["name"]: f for f in cls["fields"]
            if f["qualifier"] == "RW" or "constructor" in f["qualifier"]}


@pytest.mark.parametrize(
    "cls, record",
    [
        ("VM", vm_ops.scratch_vm_record(INSTANCE, "agent-1")),
        ("VDI", storage.root_vdi_record(INSTANCE, "OpaqueRef:sr", "agent-1")),
        ("VBD", storage.vbd_record("OpaqueRef:vm", "OpaqueRef:vdi", "0", True)),
        ("VIF", network.vif_record("OpaqueRef:vm", "OpaqueRef:net", 0, "", 1500)),
    ],
)
def test_create_records_match_the_data_model(cls, record):
    fields = _constructor_fields(_model()[cls])
    required = {n for n, f in fields.items() if f.get("default") is None}
    assert required <= set(record), f"missing {sorted(required - set(record))}"
    assert set(record) <= set(fields), f"not settable {sorted(set(record) - set(fields))}"


def test_scratch_vm_is_sized_and_marked():
    rec = vm_ops.scratch_vm_record(INSTANCE, "agent-1")
    assert rec["memory_static_max"] == str(1024 * 1024**2)
    assert rec["VCPUs_max"] == rec["VCPUs_at_startup"] == "2"
    assert rec["name_label"] == "web-1"
    assert ownership.instance_of(rec) == INSTANCE["uuid"]
    assert ownership.owned_by(rec, "agent-1")
    vdi = storage.root_vdi_record(INSTANCE, "OpaqueRef:sr", "agent-1")
    assert vdi["virtual_size"] == str(10 * 1024**3)
    assert ownership.instance_of(vdi) == INSTANCE["uuid"]


# -- JSON-RPC answers (the event stream's protocol) --------------------------------------


def test_jsonrpc_answers():
    from compute_agent.driver.xenapi import jsonrpc

    assert jsonrpc.parse_answer({"jsonrpc": "2.0", "result": {"a": 1}, "id": 1}) == {"a": 1}
    assert jsonrpc.parse_answer({"result": None, "error": None, "id": 1}) is None  # 1.0, void
    with pytest.raises(XenAPI.Failure) as exc:
        jsonrpc.parse_answer({"jsonrpc": "2.0", "id": 1, "error": {
            "code": 1, "message": "HANDLE_INVALID", "data": ["VM", "OpaqueRef:x"]}})
    assert exc.value.details == ["HANDLE_INVALID", "VM", "OpaqueRef:x"]
    with pytest.raises(XenAPI.Failure) as exc:
        jsonrpc.parse_answer({"result": None, "error": ["EVENTS_LOST"], "id": 1})
    assert exc.value.details == ["EVENTS_LOST"]
    # SESSION_INVALID is the SDK's cue to log in again, not a failure.
    relogin = jsonrpc.parse_answer({"jsonrpc": "2.0", "id": 1, "error": {
        "code": 1, "message": "SESSION_INVALID", "data": ["OpaqueRef:s"]}})
    assert relogin is jsonrpc._RELOGIN
    for bad in ([], {"jsonrpc": "2.0", "id": 1}):
        with pytest.raises(xmlrpc.client.ResponseError):
            jsonrpc.parse_answer(bad)


def test_only_reads_are_retried_after_a_broken_connection():
    from compute_agent.driver.xenapi.session import is_read_only

    assert is_read_only("VM.get_record") and is_read_only("task.get_all_records")
    assert not is_read_only("Async.VM.get_record")
    assert not is_read_only("VM.start") and not is_read_only("event.from")
    assert not is_read_only("task.destroy")
