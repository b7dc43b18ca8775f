"""Volumes, ports and the guest agent end to end (issue 10): a real
``xapi-sim`` process with iSCSI targets defined through its control API, a
real ``compute-agent`` (XenAPI driver, DEBUG logging) over real RabbitMQ,
its database in SQLite; dom0 checked through a separate XenAPI SDK session.

One agent serves the whole module (instances are independent); the
kill -9 test comes last and restarts it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import urllib.parse
import urllib.request
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compute_agent import exceptions
from compute_agent.db.attachments import AttachmentTable
from tests.functional.agent_stack import AgentStack
from tests.functional.harness import sdk_session, wait_until

pytestmark = pytest.mark.timeout(180)

PORTAL = "192.0.2.20:3260"
CHAP_USER = "volume-user"
CHAP_SECRET = "Chap-S3cret-never-logged"
PASSWORD = "Adm1n-pa55-never-logged"
AGENT_TIMEOUT = 2.0
GiB = 1024**3
LIBRARY_LOGGERS = ("amqp", "kombu", "oslo.messaging", "oslo_messaging", "sqlalchemy",
                   "sqlalchemy.engine", "alembic", "urllib3", "oslo_service", "cotyledon",
                   "futurist", "stevedore", "XenAPI")


class Env(AgentStack):
    """The agent stack (agent_stack.py) on SQLite with notifications, an
    integration network in dom0, and what these tests do with them."""

    def __init__(self, workdir: Path):
        super().__init__(
            workdir, "vol", task_duration=0.05, notifications=True,
            options={"xenserver": {"agent_timeout": AGENT_TIMEOUT},
                     # every library at DEBUG too (SQL with its parameters, the
                     # broker's traffic): secrets must not show at any level
                     "DEFAULT": {"default_log_levels": ",".join(
                         f"{name}=DEBUG" for name in LIBRARY_LOGGERS)}})
        self.volumes = AttachmentTable(self.db, "volume")
        self.ports = AttachmentTable(self.db, "port")

    def start(self) -> Env:
        self.sim.start()
        with self.sim.session() as x:
            x.network.create({"name_label": "integration", "name_description": "",
                              "MTU": "1500", "other_config": {}, "bridge": "br-int"})
        super().start()
        return self

    def build(self, name: str, **extra: Any) -> str:
        body = {"uuid": str(uuidlib.uuid4()), "name": name,
                "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1},
                "image": {"id": None, "url": None, "disk_format": None},
                "networks": [], "metadata": {}, **extra}
        self.api.build_instance(self.host, body)
        self.settled(body["uuid"], "active")
        # an HVM guest hot-plugs once its PV drivers are up (guest metrics)
        wait_until(lambda: self.guest_metrics(body["uuid"]), 10, "the guest's PV drivers")
        return body["uuid"]

    def guest_metrics(self, uuid: str) -> bool:
        with self.sim.session() as x:
            for rec in x.VM.get_all_records().values():
                if rec["name_description"] == f"instance {uuid}":
                    return rec["guest_metrics"] != "OpaqueRef:NULL"
        return False

    def settled(self, uuid: str, want: str) -> dict:
        def check():
            try:
                inst = self.api.get_instance(self.host, uuid)
            except exceptions.InstanceNotFound:
                return None  # the build cast is not taken yet
            return inst if inst["task_state"] is None and inst["vm_state"] == want else None

        return wait_until(check, 30, f"{uuid} to be {want}")

    def target(self, luns: int = 2, chap: bool = True) -> str:
        iqn = f"iqn.2026-11.org.example:{uuidlib.uuid4().hex[:8]}"
        self.sim.control.define_target(
            iqn, PORTAL, {i: GiB for i in range(luns)},
            chap_user=CHAP_USER if chap else "", chap_secret=CHAP_SECRET if chap else "")
        return iqn

    @staticmethod
    def connection(iqn: str, lun: int, secret: str = CHAP_SECRET) -> dict:
        return {"driver_volume_type": "iscsi",
                "data": {"target_portal": PORTAL, "target_iqn": iqn, "target_lun": lun,
                         "auth_method": "CHAP", "auth_username": CHAP_USER,
                         "auth_password": secret}}

    def iscsi_srs(self, x) -> dict[str, dict]:
        return {r: rec for r, rec in x.SR.get_all_records().items() if rec["type"] == "iscsi"}

    def everything_said(self) -> str:
        """What the agent wrote anywhere a secret must never be: its logs,
        the notifications, faults, actions and attachment rows."""
        parts = [self.agent.log_tail(10_000_000), self.agent.stderr_file.read_text()]
        parts.append(json.dumps(self.rpc.notes.seen, default=str))
        for inst in self.db.list_instances(include_deleted=True, internal=True):
            parts.append(json.dumps(self.db.get_instance_faults(inst["uuid"]), default=str))
            parts.append(json.dumps(self.db.list_actions(inst["uuid"]), default=str))
        parts.append(json.dumps(self.volumes.list() + self.ports.list(), default=str))
        return "\n".join(parts)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[Env]:
    e = Env(tmp_path_factory.mktemp("volumes"))
    try:
        yield e.start()
    finally:
        e.close()


def failure(fn, *args, **kwargs) -> exceptions.ComputeAgentError:
    with pytest.raises(exceptions.ComputeAgentError) as info:
        fn(*args, **kwargs)
    return info.value


# --------------------------------------------------------------------------- volumes


def test_two_volumes_of_one_target_share_an_sr_forgotten_after_the_last_detach(env):
    uuid = env.build("vol-running")
    iqn = env.target()
    a = env.api.attach_volume(env.host, uuid, "vol-a", env.connection(iqn, 0))
    b = env.api.attach_volume(env.host, uuid, "vol-b", env.connection(iqn, 1))
    assert (a["status"], a["device"], b["device"]) == ("attached", "xvdb", "xvdc")
    assert a["sr_uuid"] == b["sr_uuid"] and a["vdi_uuid"] != b["vdi_uuid"]
    assert (a["target_iqn"], a["target_lun"], b["target_lun"]) == (iqn, 0, 1)
    with env.sim.session() as x:
        sr = x.SR.get_by_uuid(a["sr_uuid"])
        assert x.SR.get_type(sr) == "iscsi"
        pbd = x.SR.get_PBDs(sr)[0]
        assert x.PBD.get_currently_attached(pbd) is True
        for att in (a, b):
            vbd = x.VBD.get_by_uuid(att["vbd_uuid"])
            assert x.VBD.get_currently_attached(vbd) is True  # hot-plugged
            assert x.VDI.get_uuid(x.VBD.get_VDI(vbd)) == att["vdi_uuid"]
    # the same volume twice is refused, nothing changes
    assert failure(env.api.attach_volume, env.host, uuid, "vol-a",
                   env.connection(iqn, 0)).code == "ATTACHMENT_EXISTS"
    env.api.detach_volume(env.host, uuid, "vol-a")
    with env.sim.session() as x:
        assert x.SR.get_by_uuid(a["sr_uuid"])  # vol-b still uses it
        assert failure_xapi(x.VBD.get_by_uuid, a["vbd_uuid"])
    env.api.detach_volume(env.host, uuid, "vol-b")
    with env.sim.session() as x:
        assert failure_xapi(x.SR.get_by_uuid, a["sr_uuid"])
        assert not env.iscsi_srs(x)
        assert not x.PBD.get_all_records_where(f'field "SR" = "{sr}"')
    assert env.volumes.list(uuid) == []
    assert failure(env.api.detach_volume, env.host, uuid, "vol-b").code == \
        "ATTACHMENT_NOT_FOUND"


def failure_xapi(fn, *args) -> bool:
    import XenAPI

    try:
        fn(*args)
    except XenAPI.Failure as e:
        return e.details[0] in ("UUID_INVALID", "HANDLE_INVALID")
    return False


def test_volume_and_port_on_a_halted_instance_are_plugged_at_its_next_start(env):
    uuid = env.build("vol-halted")
    env.api.stop_instance(env.host, uuid)
    env.settled(uuid, "stopped")
    iqn = env.target(luns=1)
    att = env.api.attach_volume(env.host, uuid, "vol-h", env.connection(iqn, 0),
                                device="xvdd")
    assert att["device"] == "xvdd"
    port = env.api.attach_interface(env.host, uuid, {"id": str(uuidlib.uuid4()),
                                                     "mac_address": "02:50:00:00:00:01"})
    with env.sim.session() as x:
        vbd = x.VBD.get_by_uuid(att["vbd_uuid"])
        assert x.VBD.get_currently_attached(vbd) is False
        assert x.VBD.get_userdevice(vbd) == "3"
        assert x.VIF.get_currently_attached(x.VIF.get_by_uuid(port["vif_uuid"])) is False
    env.api.start_instance(env.host, uuid)
    env.settled(uuid, "active")
    with env.sim.session() as x:
        assert x.VBD.get_currently_attached(x.VBD.get_by_uuid(att["vbd_uuid"])) is True
        assert x.VIF.get_currently_attached(x.VIF.get_by_uuid(port["vif_uuid"])) is True
    env.api.detach_volume(env.host, uuid, "vol-h")
    with env.sim.session() as x:
        assert not env.iscsi_srs(x)


def test_chap_refusal_is_a_structured_error_with_nothing_half_attached(env):
    uuid = env.build("vol-chap")
    iqn = env.target(luns=1)
    with env.sim.session() as x:
        vbds_before = len(x.VBD.get_all())
    err = failure(env.api.attach_volume, env.host, uuid, "vol-c",
                  env.connection(iqn, 0, secret="wrong-secret-value"))
    assert err.code == "SR_BACKEND_FAILURE_68"
    assert err.params[0] == "" and "CHAP" in err.params[1]
    assert "wrong-secret-value" not in json.dumps(err.to_dict())
    assert env.volumes.list(uuid) == []
    with env.sim.session() as x:
        assert not env.iscsi_srs(x)
        assert len(x.VBD.get_all()) == vbds_before
    fault = env.api.get_instance(env.host, uuid)["fault"]
    assert fault["code"] == "SR_BACKEND_FAILURE_68"
    env.rpc.notes.wait_for("instance.attach_volume.error", uuid)
    said = env.everything_said()
    assert "wrong-secret-value" not in said and CHAP_SECRET not in said


def test_bad_connection_info_is_refused(env):
    uuid = env.build("vol-bad")
    bad = {"driver_volume_type": "nfs", "data": {}}
    assert failure(env.api.attach_volume, env.host, uuid, "v", bad).params == [
        "connection_info.driver_volume_type", "only 'iscsi' is supported"]


# --------------------------------------------------------------------------- ports


def test_ports_attach_hot_plug_and_refusals(env):
    uuid = env.build("port-running")
    port = {"id": str(uuidlib.uuid4()), "mac_address": "02:10:00:00:00:01"}
    att = env.api.attach_interface(env.host, uuid, port)
    assert (att["status"], att["mac_address"]) == ("attached", "02:10:00:00:00:01")
    with env.sim.session() as x:
        vif = x.VIF.get_by_uuid(att["vif_uuid"])
        rec = x.VIF.get_record(vif)
        assert rec["other_config"]["nicira-iface-id"] == port["id"]
        assert rec["currently_attached"] is True and rec["MAC"] == port["mac_address"]
        assert x.network.get_bridge(rec["network"]) == "br-int"
    dup = failure(env.api.attach_interface, env.host, uuid,
                  {"id": "other", "mac_address": port["mac_address"]})
    assert (dup.code, dup.params) == ("MAC_ADDRESS_IN_USE", [port["mac_address"], "other"])
    unknown = failure(env.api.attach_interface, env.host, uuid,
                      {"id": "p2", "mac_address": "02:10:00:00:00:02", "network": "nope"})
    assert (unknown.code, unknown.params) == ("NETWORK_NOT_FOUND", ["nope"])
    assert [p["port_id"] for p in env.ports.list(uuid)] == [port["id"]]
    env.api.detach_interface(env.host, uuid, port["id"])
    with env.sim.session() as x:
        assert failure_xapi(x.VIF.get_by_uuid, att["vif_uuid"])
    assert env.ports.list(uuid) == []


# --------------------------------------------------------------------------- build, delete


def test_build_with_volume_and_ports_then_delete_leaves_nothing(env):
    iqn = env.target(luns=1)
    port = {"id": str(uuidlib.uuid4()), "mac_address": "02:20:00:00:00:01"}
    uuid = env.build("with-devices", networks=[port], block_device_mapping=[
        {"volume_id": "boot-vol", "connection_info": env.connection(iqn, 0)}])
    vols, ports = env.volumes.list(uuid), env.ports.list(uuid)
    assert [v["volume_id"] for v in vols] == ["boot-vol"]
    assert [p["port_id"] for p in ports] == [port["id"]]
    with env.sim.session() as x:
        vbd = x.VBD.get_by_uuid(vols[0]["vbd_uuid"])
        assert x.VBD.get_currently_attached(vbd) is True
        vif = x.VIF.get_by_uuid(ports[0]["vif_uuid"])
        vm = x.VIF.get_VM(vif)
        assert len(x.VM.get_VIFs(vm)) == 1  # the port only, no default network
        lun_vdi = x.VBD.get_VDI(vbd)
    env.api.terminate_instance(env.host, uuid)
    env.settled(uuid, "deleted")
    with env.sim.session() as x:
        assert failure_xapi(x.VM.get_record, vm)
        assert failure_xapi(x.VBD.get_record, vbd)
        assert failure_xapi(x.VIF.get_record, vif)
        assert failure_xapi(x.VDI.get_record, lun_vdi)  # forgotten with its SR, not destroyed
        assert not env.iscsi_srs(x)
        assert all(x.SR.get_type(x.PBD.get_SR(p)) != "iscsi" for p in x.PBD.get_all())
    assert env.volumes.list(uuid) == [] and env.ports.list(uuid) == []
    # the LUN's data is the target's: a new attach finds it again
    assert env.sim.control.post("storage/targets")["targets"]


# --------------------------------------------------------------------------- config drive


def isoinfo(*args: str) -> str:
    return subprocess.run(["isoinfo", *args], capture_output=True, check=True,
                          text=True).stdout


def test_config_drive_is_a_valid_iso_read_back_from_dom0_and_goes_with_the_instance(
        env, tmp_path):
    port = {"id": str(uuidlib.uuid4()), "mac_address": "02:40:00:00:00:01"}
    uuid = env.build("cd-guest", networks=[port], config_drive=True,
                     user_data="#cloud-config\nhostname: cd-guest\n",
                     public_keys={"mykey": "ssh-ed25519 AAAAC3Nza... me@example"},
                     metadata={"role": "web"})
    with sdk_session(env.sim.url, "config-drive-test") as session:
        x = session.xenapi
        vdis = [(ref, rec) for ref, rec in x.VDI.get_all_records().items()
                if rec["other_config"].get("compute_agent_disk") == "config-drive"
                and rec["other_config"].get("compute_agent_instance_uuid") == uuid]
        assert len(vdis) == 1, [r["other_config"] for _, r in vdis]
        vdi, rec = vdis[0]
        assert rec["read_only"] is True
        (vbd,) = rec["VBDs"]
        assert (x.VBD.get_type(vbd), x.VBD.get_mode(vbd)) == ("CD", "RO")
        assert x.VBD.get_currently_attached(vbd) is True  # there at first boot
        query = urllib.parse.urlencode({"session_id": session._session, "vdi": vdi,
                                        "format": "raw"})
        iso = tmp_path / "drive.iso"
        with urllib.request.urlopen(f"{env.sim.url}/export_raw_vdi?{query}") as resp, \
                open(iso, "wb") as out:
            shutil.copyfileobj(resp, out)
    assert "Volume id: config-2" in isoinfo("-d", "-i", str(iso))
    listing = isoinfo("-R", "-f", "-i", str(iso)).split()
    assert {"/openstack/latest/meta_data.json", "/openstack/latest/network_data.json",
            "/openstack/latest/user_data"} <= set(listing)
    meta = json.loads(isoinfo("-R", "-i", str(iso), "-x", "/openstack/latest/meta_data.json"))
    assert (meta["uuid"], meta["name"], meta["meta"]) == (uuid, "cd-guest", {"role": "web"})
    assert meta["public_keys"] == {"mykey": "ssh-ed25519 AAAAC3Nza... me@example"}
    net = json.loads(isoinfo("-R", "-i", str(iso), "-x", "/openstack/latest/network_data.json"))
    assert net["links"][0]["ethernet_mac_address"] == port["mac_address"]
    assert net["links"][0]["vif_id"] == port["id"]
    assert isoinfo("-R", "-i", str(iso), "-x", "/openstack/latest/user_data") == \
        "#cloud-config\nhostname: cd-guest\n"
    # the import was a tracked task of this instance
    assert any(t["instance_uuid"] == uuid and t["status"] == "success"
               for t in env.db.list_tracked_tasks(status=None, instance_uuid=uuid))
    env.api.terminate_instance(env.host, uuid)
    env.settled(uuid, "deleted")
    with env.sim.session() as x:
        assert failure_xapi(x.VDI.get_record, vdi)


# --------------------------------------------------------------------------- guest agent


def test_guest_agent_password_file_and_network(env):
    uuid = env.build("guest")
    vm_uuid = vm_uuid_of(env, uuid)
    assert env.api.set_admin_password(env.host, uuid, PASSWORD)["password_set"] is True
    env.api.inject_file(env.host, uuid, "/etc/motd", "hello guest")
    port = {"id": str(uuidlib.uuid4()), "mac_address": "02:30:00:00:00:01"}
    env.api.attach_interface(env.host, uuid, port)
    env.api.reset_network(env.host, uuid)
    guest = env.sim.control.inspect_guest(vm_uuid)
    assert guest["password"] == PASSWORD
    assert guest["files"] == {"/etc/motd": "hello guest"}
    assert guest["network"]["023000000001"]["port_id"] == port["id"]
    assert guest["commands"][:2] == ["key_init", "password"]
    env.rpc.notes.wait_for("instance.set_admin_password.end", uuid)
    assert PASSWORD not in env.everything_said()


def test_guest_agent_timeout_and_refusal(env):
    uuid = env.build("guest-bad")
    vm_uuid = vm_uuid_of(env, uuid)
    env.sim.control.set_guest_agent("absent", vm=vm_uuid)
    err = failure(env.api.set_admin_password, env.host, uuid, PASSWORD)
    assert (err.code, err.params) == ("GUEST_AGENT_TIMEOUT", [uuid, "key_init", "2"])
    env.sim.control.set_guest_agent("failing", vm=vm_uuid, error=["500", "no password today"])
    err = failure(env.api.set_admin_password, env.host, uuid, PASSWORD)
    assert (err.code, err.params) == ("GUEST_AGENT_ERROR", ["500", "no password today"])
    err = failure(env.api.reset_network, env.host, uuid)
    assert err.code == "GUEST_AGENT_ERROR"
    assert env.api.get_instance(env.host, uuid)["vm_state"] == "active"
    assert PASSWORD not in env.everything_said()


def vm_uuid_of(env: Env, uuid: str) -> str:
    with env.sim.session() as x:
        for rec in x.VM.get_all_records().values():
            if rec["name_description"] == f"instance {uuid}":
                return rec["uuid"]
    raise AssertionError(f"no VM for {uuid}")


# --------------------------------------------------------------------------- kill -9


@pytest.mark.parametrize("step", ["PBD.plug", "VBD.plug"])
def test_kill9_mid_attach_then_recovery_leaves_db_and_dom0_agreeing(env, step):
    """Killed while the SR is being plugged (no VBD yet: the attach is
    undone) or while the VBD is (its task ends: the attach is finished)."""
    uuid = env.build(f"vol-crash-{step}")
    iqn = env.target(luns=1)
    env.sim.control.set_duration(step, 4.0)
    errors: list[BaseException] = []

    def attach() -> None:
        try:
            env.api.attach_volume(env.host, uuid, "vol-k", env.connection(iqn, 0), timeout=30)
        except BaseException as e:  # the agent dies under it
            errors.append(e)

    t = threading.Thread(target=attach, daemon=True)
    t.start()

    def under_way() -> bool:
        with env.sim.session() as x:
            return any(rec["name_label"] == f"Async.{step}" and rec["status"] == "pending"
                       for rec in x.task.get_all_records().values())

    wait_until(under_way, 30, f"the {step} of the attach to be under way")
    assert [v["status"] for v in env.volumes.list(uuid)] == ["attaching"]
    env.agent.kill9()
    env.sim.control.set_duration(step, 0.05)
    env.agent.start()
    env.agent.wait_serving(env.api)

    def settled() -> tuple[list] | None:
        rows = env.volumes.list(uuid)
        return (rows,) if all(r["status"] == "attached" for r in rows) else None

    (rows,) = wait_until(settled, 40, "the interrupted attach to be settled")
    with env.sim.session() as x:
        vbds = [rec for rec in x.VBD.get_all_records().values()
                if rec["other_config"].get("compute-agent-volume-id") == "vol-k"]
        if step == "VBD.plug":  # finished: dom0 has exactly that VBD, plugged
            assert [r["vbd_uuid"] for r in rows] == [v["uuid"] for v in vbds]
            assert vbds[0]["currently_attached"] is True
            env.api.detach_volume(env.host, uuid, "vol-k")
        else:  # undone: no row, no VBD, no SR, and a fault that says why
            assert rows == [] and vbds == [] and not env.iscsi_srs(x)
            fault = env.api.get_instance(env.host, uuid)["fault"]
            assert (fault["code"], fault["params"]) == ("OPERATION_INTERRUPTED",
                                                        [uuid, "attach_volume"])
    t.join(5)
    assert CHAP_SECRET not in env.everything_said()
