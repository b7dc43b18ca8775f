"""Pure logic of volumes, ports and the guest agent in the XenAPI driver:
connection_info and port parsing, device names, SR uuids, error masking,
and the password encryption checked by the openssl command line (what the
guest agents decrypt with), not by our own decrypter."""

from __future__ import annotations

import subprocess

import pytest

from compute_agent import exceptions
from compute_agent.compute.instance_calls import mask
from compute_agent.driver.xenapi.guest_agent import encrypt
from compute_agent.driver.xenapi.vifs import is_port, parse_port
from compute_agent.driver.xenapi.volumes import (
    parse_connection_info,
    sr_uuid_from,
    sr_uuid_of,
    userdevice_of,
)


def info(**data):
    base = {"target_portal": "192.0.2.1:3261", "target_iqn": "iqn.x:1", "target_lun": 2}
    base.update(data)
    return {"driver_volume_type": "iscsi", "data": base}


def test_connection_info_becomes_a_target_and_device_config():
    t = parse_connection_info(info(auth_method="CHAP", auth_username="u",
                                   auth_password="secret"))
    assert (t.address, t.port, t.iqn, t.lun) == ("192.0.2.1", "3261", "iqn.x:1", 2)
    assert t.device_config() == {"target": "192.0.2.1", "port": "3261",
                                 "targetIQN": "iqn.x:1", "chapuser": "u",
                                 "chappassword": "secret"}
    assert "secret" not in repr(t)
    assert parse_connection_info(info(target_portal="192.0.2.1")).port == "3260"
    assert parse_connection_info(info(target_portal="[2001:db8::1]:3260")).address == \
        "2001:db8::1"


@pytest.mark.parametrize("bad, field", [
    ({"driver_volume_type": "rbd", "data": {}}, "connection_info.driver_volume_type"),
    (info(target_iqn=""), "connection_info.data.target_iqn"),
    (info(target_lun=-1), "connection_info.data.target_lun"),
    (info(target_lun=True), "connection_info.data.target_lun"),
    (info(target_portal="h:port"), "connection_info.data.target_portal"),
    (info(auth_method="PAP"), "connection_info.data.auth_method"),
    (info(auth_method="CHAP", auth_username="u"), "connection_info.data"),
])
def test_bad_connection_info_names_the_field_never_the_value(bad, field):
    with pytest.raises(exceptions.InvalidInput) as e:
        parse_connection_info(bad)
    assert e.value.params[0] == field


def test_device_names_and_sr_uuids():
    assert [userdevice_of(d) for d in (None, "", "xvdc", "/dev/xvdb", "3", 4)] == \
        [None, None, "2", "1", "3", "4"]
    with pytest.raises(exceptions.InvalidInput):
        userdevice_of("nvme0n1")
    sr = sr_uuid_of("192.0.2.1:3260", "iqn.x:1")
    assert sr_uuid_from({"target_portal": "192.0.2.1", "target_iqn": "iqn.x:1"}) == sr
    assert sr_uuid_from({"sr_uuid": "abc"}) == "abc"
    assert sr_uuid_from({"sr_uuid": None, "target_portal": None}) is None


def test_ports():
    p = parse_port({"id": " p1 ", "mac_address": "02:AA:00:00:00:01"})
    assert (p.id, p.mac, p.network) == ("p1", "02:aa:00:00:00:01", "")
    for bad in ({"id": ""}, {"id": "p", "mac_address": "nope"}, {"id": "p", "x": 1}, "p"):
        with pytest.raises(exceptions.InvalidInput):
            parse_port(bad)
    assert is_port({"id": "p", "mac_address": ""}) and not is_port({"name": "net0"})
    assert not is_port("net0")


def test_mask_replaces_secrets_in_params_and_message():
    err = exceptions.ComputeAgentError("login as u:hunter22 failed", code="X")
    mask(err, ("hunter22",))
    assert "hunter22" not in str(err.to_dict()) and "***" in err.params[0]


def test_password_encryption_is_what_openssl_decrypts():
    shared = 123456789012345678901234567890
    enc = encrypt(shared, "pässword with spaces")
    out = subprocess.run(
        ["openssl", "enc", "-d", "-aes-128-cbc", "-a", "-A", "-nosalt", "-md", "md5",
         "-pass", f"pass:{shared}"], input=enc.encode(), capture_output=True, check=True)
    assert out.stdout.decode() == "pässword with spaces"
