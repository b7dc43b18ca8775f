"""The real parts of the end-to-end tests, as processes and clients.

- :class:`SimProcess`: ``xapi-sim`` on a free port, its object database
  persisted in a state dir so it can be stopped (dom0 unreachable) and
  started again on the same address.
- :class:`AgentProcess`: ``compute-agent`` with ``compute_driver = xenapi``,
  its database created empty and migrated by the real
  ``compute-agent-manage db sync``.
- :class:`Rpc`: ComputeAPI over RabbitMQ on the module's own exchange and
  topic, optionally with a listener for the agents' notifications; on close
  it deletes the queues and the exchange it made the broker keep.
- :func:`dom0_inventory` / :func:`assert_dom0_matches_db`: what dom0 holds,
  read through a separate XenAPI SDK session over HTTP, against the database.

Every wait polls with a deadline; every process is started in a session of
its own and killed (group) if it does not stop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import oslo_messaging
import pytest
import XenAPI
from oslo_config import cfg

from compute_agent import exceptions
from compute_agent.conf import default as default_opts
from compute_agent.db.api import Database
from compute_agent.rpc import transport as rpc_transport
from compute_agent.rpc.rpcapi import ComputeAPI
from xapisim.control_client import SimControl

RABBIT = os.environ.get("CA_TEST_RABBIT_URL", "rabbit://guest:guest@127.0.0.1:5672/")
BIN = Path(sys.executable).parent
USER, PASSWORD = "root", "password"
TASK_DURATION = 0.2  # seconds each dom0 task takes in the simulator
START_LIMIT_S = 40.0  # bound for a process to come up; never a speed assertion
SETTLE_S = 30.0  # bound for an operation to settle; never a speed assertion

# Keys the agent writes into the other_config of what it creates in dom0
# (compute_agent/driver/xenapi/ownership.py); spelled out here on purpose:
# the test checks the agent's promise, not its constant.
INSTANCE_MARK = "compute_agent_instance_uuid"
HOST_MARK = "compute_agent_host"
NULL_REF = "OpaqueRef:NULL"

# power_state numbers of the RPC contract and the xapi power state each means.
XAPI_POWER = {1: "Running", 3: "Paused", 4: "Halted", 7: "Suspended"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy (returned) or fail
    the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL, wait: float = 15) -> None:
    """Signal the process group of ``proc`` and reap it; SIGKILL if it
    outlives ``wait`` seconds."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


# --------------------------------------------------------------------------- xapi-sim


class SimProcess:
    """``xapi-sim`` as a subprocess on a fixed free port."""

    def __init__(self, workdir: Path, name: str = "sim", task_duration: float = TASK_DURATION):
        self.name = name
        self.port = free_port()
        self.task_duration = task_duration
        self.state_dir = workdir / f"{name}-state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / f"{name}.log"
        self.url = f"http://127.0.0.1:{self.port}"
        self.control = SimControl(self.url, timeout=10)
        self.proc: subprocess.Popen | None = None

    def start(self) -> SimProcess:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "xapi-sim"), "--listen", f"127.0.0.1:{self.port}",
                 "--task-duration", str(self.task_duration),
                 "--user", USER, "--password", PASSWORD,
                 "--state-dir", str(self.state_dir), "--persist"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(self._up, START_LIMIT_S, f"{self.name} to serve", 0.05)
        return self

    def _up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"xapi-sim exited {self.proc.returncode}: {tail(self.log)}")
        try:
            with self.session():
                return True
        except OSError:
            return False

    @contextlib.contextmanager
    def session(self) -> Iterator[Any]:
        """A XenAPI SDK session of the test's own (not the agent's)."""
        s = XenAPI.Session(self.url)
        s.xenapi.login_with_password(USER, PASSWORD, "2.0", "e2e-test")
        try:
            yield s.xenapi
        finally:
            with contextlib.suppress(Exception):
                s.xenapi.session.logout()
            with contextlib.suppress(Exception):
                s.close()

    def stop(self) -> None:
        """SIGTERM: the simulator saves its object database (--persist) and
        exits; its port refuses connections until start() again."""
        if self.proc is not None and self.proc.poll() is None:
            kill_group(self.proc, signal.SIGTERM)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


# --------------------------------------------------------------------------- compute-agent


class AgentProcess:
    """``compute-agent`` with the XenAPI driver, on a database of its own
    (or a shared one) migrated by ``compute-agent-manage db sync``."""

    def __init__(self, workdir: Path, *, host: str, backend: str, db_url: str, sim_url: str,
                 exchange: str, topic: str, notify_topic: str | None = None,
                 report_interval: int = 5):
        self.host = host
        self.backend = backend
        self.db_url = db_url
        self.log_file = workdir / f"{host}.log"
        self.config = workdir / f"{host}.conf"
        notifications = (f"driver = messagingv2\ntopics = {notify_topic}" if notify_topic
                         else "driver = noop")
        self.config.write_text(f"""[DEFAULT]
host = {host}
compute_driver = xenapi
concurrency_backend = {backend}
transport_url = {RABBIT}
control_exchange = {exchange}
compute_topic = {topic}
report_interval = {report_interval}
sync_power_state_interval = 600
graceful_shutdown_timeout = 10
log_file = {self.log_file}
debug = true
[database]
connection = {db_url}
[xenserver]
connection_url = {sim_url}
connection_username = {USER}
connection_password = {PASSWORD}
connection_concurrent = 5
login_timeout = 5
[oslo_messaging_notifications]
{notifications}
""")
        self.proc: subprocess.Popen | None = None

    def db_sync(self) -> str:
        """Migrate the database with the real command; returns its output."""
        done = subprocess.run(
            [str(BIN / "compute-agent-manage"), "--config-file", str(self.config), "db", "sync"],
            capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"db sync failed: {done.stdout}\n{done.stderr}"
        return done.stdout

    def start(self) -> None:
        # A session of its own: the launcher signals its process group.
        self.proc = subprocess.Popen(
            [str(BIN / "compute-agent"), "--config-file", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)

    def wait_serving(self, api: ComputeAPI, timeout: float = START_LIMIT_S) -> dict:
        def pong() -> dict | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                pytest.fail(f"agent {self.host} exited {self.proc.returncode}: {err[-2000:]}"
                            f"\n{tail(self.log_file)}")
            try:
                return api.ping(self.host, timeout=2)
            except exceptions.ComputeAgentError:
                return None

        return wait_until(pong, timeout, f"agent {self.host} to answer ping", 0.1)

    def stop(self) -> int | None:
        """SIGTERM (graceful), SIGKILL after 20 s; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            kill_group(self.proc, signal.SIGTERM, wait=20)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return self.proc.returncode

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


# --------------------------------------------------------------------------- RPC client


class Notifications:
    """Notifications the agents sent, as (event_type, payload data)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict]] = []
        self.cond = threading.Condition()

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        with self.cond:
            self.seen.append((event_type, payload.get("compute_agent_object.data", payload)))
            self.cond.notify_all()

    error = info

    def wait_for(self, event_type: str, match: Callable[[dict], bool],
                 timeout: float = SETTLE_S) -> dict:
        def found() -> dict | None:
            return next((d for e, d in self.seen if e == event_type and match(d)), None)

        with self.cond:
            if not self.cond.wait_for(lambda: found() is not None, timeout):
                pytest.fail(f"no {event_type} notification within {timeout} s; saw "
                            f"{[e for e, _ in self.seen][-20:]}")
            return found()  # type: ignore[return-value]


class Rpc:
    """ComputeAPI on one exchange and topic; the broker objects it implies
    are deleted on close()."""

    def __init__(self, tag: str, with_notifications: bool = False):
        self.exchange = f"ca_e2emod_{tag}"
        self.topic = f"ca_e2emod_compute_{tag}"
        self.notify_topic = f"ca_e2emod_notify_{tag}" if with_notifications else None
        self.hosts: list[str] = []
        conf = cfg.ConfigOpts()
        default_opts.register_opts(conf)
        rpc_transport.register_opts(conf)
        conf([], project="compute-agent-e2e", default_config_files=[])
        conf.set_override("transport_url", RABBIT)
        conf.set_override("control_exchange", self.exchange)
        conf.set_override("compute_topic", self.topic)
        self.conf = conf
        self.transport = oslo_messaging.get_rpc_transport(
            conf, allowed_remote_exmods=["compute_agent.rpc.errors"])
        self.api = ComputeAPI(conf, rpc_transport=self.transport, timeout=15)
        self.notes = Notifications()
        self._listener = None
        if self.notify_topic:
            self._listener = oslo_messaging.get_notification_listener(
                oslo_messaging.get_notification_transport(conf),
                [oslo_messaging.Target(topic=self.notify_topic)], [self.notes])
            self._listener.start()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener.wait()
        self.transport.cleanup()
        self._delete_broker_objects()

    def _delete_broker_objects(self) -> None:
        """The RPC and notification queues are durable: without this every
        run would leave them (and the exchange) in the broker."""
        import kombu

        queues = [self.topic] + [f"{self.topic}.{h}" for h in self.hosts]
        if self.notify_topic:
            queues += [f"{self.notify_topic}.{p}" for p in ("info", "error", "warn", "debug",
                                                            "critical", "audit", "sample")]
        # kombu names the transport amqp://, oslo.messaging rabbit://.
        url = "amqp://" + RABBIT.split("://", 1)[1]
        try:
            with kombu.Connection(url, connect_timeout=5) as conn:
                channel = conn.channel()
                for name in queues:
                    with contextlib.suppress(Exception):
                        channel.queue_delete(name)
                with contextlib.suppress(Exception):
                    channel.exchange_delete(self.exchange)
        except Exception:  # housekeeping only: never fail a test over it
            pass


# --------------------------------------------------------------------------- instances


def instance_spec(name: str = "e2e-vm", memory_mb: int = 256, **overrides: Any) -> dict:
    body: dict[str, Any] = {
        "uuid": str(uuidlib.uuid4()), "name": name,
        "flavor": {"vcpus": 1, "memory_mb": memory_mb, "root_gb": 1},
        "image": {"id": None, "url": None, "disk_format": None},
        "networks": [], "metadata": {},
    }
    body.update(overrides)
    return body


def is_settled(inst: dict) -> bool:
    return inst["task_state"] is None and inst["vm_state"] != "building"


StateKey = tuple[str, Any, int]


def state_of(inst: dict) -> StateKey:
    return (inst["vm_state"], inst["task_state"], inst["power_state"])


def watch(api: ComputeAPI, host: str | None, uuid: str,
          until: Callable[[dict], bool] = is_settled, timeout: float = SETTLE_S,
          step: float = 0.02) -> tuple[dict, list[StateKey], list[int]]:
    """Poll get_instance until ``until(instance)``. Returns the last
    instance, the distinct (vm_state, task_state, power_state) seen in
    order, and every progress value read. INSTANCE_NOT_FOUND counts as "not
    yet" (a build cast the agent has not consumed)."""
    deadline = time.monotonic() + timeout
    seen: list[StateKey] = []
    progress: list[int] = []
    inst: dict | None = None
    while True:
        try:
            inst = api.get_instance(host, uuid)
        except exceptions.InstanceNotFound:
            inst = None
        if inst is not None:
            key = state_of(inst)
            if not seen or seen[-1] != key:
                seen.append(key)
            progress.append(inst["progress"])
            if until(inst):
                return inst, seen, progress
        if time.monotonic() >= deadline:
            pytest.fail(f"instance {uuid} did not settle within {timeout} s; last {inst}; "
                        f"seen {seen}")
        time.sleep(step)


def finished_actions(db: Database, uuid: str, count: int) -> list[tuple[str, str]]:
    """(action, result) of the instance's ``count`` actions, once all are
    finished: the agent records an action's end just after the instance's
    new state, so a reader may see the state first."""
    def check() -> list[tuple[str, str]] | None:
        actions = db.list_actions(uuid)
        if len(actions) >= count and all(a["result"] for a in actions):
            return [(a["action"], a["result"]) for a in actions]
        return None

    return wait_until(check, SETTLE_S, f"{count} finished actions of {uuid}")


# --------------------------------------------------------------------------- dom0 vs database


@dataclass
class Inventory:
    """What dom0 holds, as the agent marked it."""

    vms: dict[str, list[dict]] = field(default_factory=dict)  # instance uuid -> VM records
    vdis: dict[str, list[dict]] = field(default_factory=dict)  # instance uuid -> VDI records
    vm_refs: set[str] = field(default_factory=set)
    vdi_refs: set[str] = field(default_factory=set)
    dangling_vbds: list[dict] = field(default_factory=list)  # VBDs of no VM, or of a gone VDI
    dangling_vifs: list[dict] = field(default_factory=list)
    vbds: dict[str, dict] = field(default_factory=dict)


def dom0_inventory(xenapi: Any, agent_host: str) -> Inventory:
    inv = Inventory()
    all_vms = xenapi.VM.get_all_records()
    all_vdis = xenapi.VDI.get_all_records()
    inv.vm_refs = set(all_vms)
    inv.vdi_refs = set(all_vdis)
    for ref, rec in all_vms.items():
        other = rec["other_config"]
        if rec["is_control_domain"] or other.get(HOST_MARK) != agent_host:
            continue
        rec = dict(rec, ref=ref)
        inv.vms.setdefault(other.get(INSTANCE_MARK, ""), []).append(rec)
    for ref, rec in all_vdis.items():
        other = rec["other_config"]
        if other.get(HOST_MARK) != agent_host:
            continue
        inv.vdis.setdefault(other.get(INSTANCE_MARK, ""), []).append(dict(rec, ref=ref))
    inv.vbds = xenapi.VBD.get_all_records()
    for ref, vbd in inv.vbds.items():
        if vbd["VM"] not in all_vms or (vbd["VDI"] != NULL_REF and vbd["VDI"] not in all_vdis):
            inv.dangling_vbds.append(dict(vbd, ref=ref))
    for ref, vif in xenapi.VIF.get_all_records().items():
        if vif["VM"] not in all_vms:
            inv.dangling_vifs.append(dict(vif, ref=ref))
    return inv


def assert_dom0_matches_db(sim: SimProcess, db: Database, agent_host: str) -> dict[str, int]:
    """Every instance of ``agent_host`` in the database is settled and dom0
    agrees with it: exactly one marked VM per live instance (in the power
    state the database shows, with its root VDI attached), no VM and no VDI
    for a deleted instance or an error instance without a VM, no VM or VDI
    marked for an instance the database does not have, and no VBD or VIF
    left without its VM. Returns the count of instances per vm_state."""
    insts = db.list_instances(host=agent_host, include_deleted=True, internal=True)
    with sim.session() as xenapi:
        inv = dom0_inventory(xenapi, agent_host)
    counts: dict[str, int] = {}
    live: set[str] = set()
    for inst in insts:
        uuid = inst["uuid"]
        counts[inst["vm_state"]] = counts.get(inst["vm_state"], 0) + 1
        vms, vdis = inv.vms.get(uuid, []), inv.vdis.get(uuid, [])
        assert inst["task_state"] is None, f"not settled: {inst}"
        has_vm = inst["vm_state"] in ("active", "stopped") or (
            inst["vm_state"] == "error" and inst["power_state"] != 0)
        if inst["vm_state"] == "error":
            assert inst["fault"] is not None, f"error without a fault: {inst}"
        if not has_vm:
            assert vms == [], f"{inst['vm_state']} instance {uuid} has VMs in dom0: {vms}"
            assert vdis == [], f"{inst['vm_state']} instance {uuid} left VDIs: {vdis}"
            continue
        live.add(uuid)
        assert len(vms) == 1, f"instance {uuid} has {len(vms)} VMs in dom0"
        vm = vms[0]
        if inst["power_state"] in XAPI_POWER:
            assert vm["power_state"] == XAPI_POWER[inst["power_state"]], (inst, vm["power_state"])
        if inst.get("vm_ref"):
            assert inst["vm_ref"] == vm["ref"], "the database names another VM"
        attached = {inv.vbds[b]["VDI"] for b in vm["VBDs"] if b in inv.vbds}
        assert {d["ref"] for d in vdis} == attached - {NULL_REF}, (
            f"VDIs marked for {uuid} are not the disks of its VM")
        root_gb = (inst.get("flavor") or {}).get("root_gb") or 0
        if root_gb:
            assert [int(d["virtual_size"]) for d in vdis] == [root_gb * 1024**3]
    unknown_vms = set(inv.vms) - live
    assert not unknown_vms, f"VMs in dom0 for no live instance: {unknown_vms}"
    unknown_vdis = set(inv.vdis) - live
    assert not unknown_vdis, f"VDIs in dom0 for no live instance: {unknown_vdis}"
    assert inv.dangling_vbds == [], f"VBDs left without their VM or VDI: {inv.dangling_vbds}"
    assert inv.dangling_vifs == [], f"VIFs left without their VM: {inv.dangling_vifs}"
    return counts
