"""The simulator: one pool of N hosts, each answering on its own address.

The Simulator owns its parts and hands each what it needs: the store, the
session and task managers (store and settings only), the dispatcher and
the per-host listeners (the simulator as ``services.SimServices``). No
part imports this module.

    sim = Simulator(hosts=1, task_duration=0.5)
    sim.start()
    ... XenAPI.Session(sim.url) ...
    sim.stop()
"""

from __future__ import annotations

import ipaddress
import json
import pathlib
import socket
import ssl
import sys
import tempfile
import threading
import time
from typing import Any

from xapisim import api, handlers, log_redaction, plugins
from xapisim.bootstrap import PoolShape, bootstrap
from xapisim.dispatch import Dispatcher
from xapisim.errors import XenAPIError
from xapisim.faults import Faults
from xapisim.guest_commands import GuestAgents
from xapisim.http_counts import HttpCounts
from xapisim.httpserver import HostServer, LocalServer, current_connection
from xapisim.iscsi import StorageTargets
from xapisim.schema import load as load_model
from xapisim.sessions import DEFAULT_SESSION_LIMIT, SessionManager
from xapisim.store import Store
from xapisim.tasks import TaskManager
from xapisim.tlscert import make_self_signed
from xapisim.xenstore import Xenstores

LOG = log_redaction.logger("xapisim")


def _default_plugins_dir() -> pathlib.Path:
    """The project's etc/xapi.d/plugins: beside the package in a source
    tree, under the installation prefix when installed from a wheel."""
    source = pathlib.Path(__file__).resolve().parent.parent / "etc" / "xapi.d" / "plugins"
    if source.is_dir():
        return source
    return pathlib.Path(sys.prefix) / "etc" / "xapi.d" / "plugins"


DEFAULT_PLUGINS_DIR = _default_plugins_dir()
# sockaddr_un.sun_path holds 108 bytes with the final NUL
MAX_UNIX_PATH = 107


def member_addresses(first: str, count: int) -> list[str]:
    """The coordinator's address, then the next ones for the members (as
    real pool members each have their own IP)."""
    base = ipaddress.ip_address(first)
    return [str(base + i) for i in range(count)]


class Simulator:
    def __init__(
        self,
        listen: str = "127.0.0.1:0",
        hosts: int = 1,
        users: dict[str, str] | None = None,
        task_duration: float = 0.0,
        state_dir: str | None = None,
        plugins_dir: str | None = None,
        tls: bool = False,
        persist: bool = False,
        host_memory_mb: int = 65536,
        host_cpus: int = 8,
        sr_size_gb: int = 2048,
        session_limit: int = DEFAULT_SESSION_LIMIT,
        task_gc_age: float = 3600.0,
        pool_name: str = "xapi-sim pool",
    ):
        host, _, port = listen.rpartition(":")
        self.listen_host = host or "127.0.0.1"
        self.port = int(port or 0)
        self.addresses = member_addresses(self.listen_host, hosts)
        self.users = users or {"root": "password"}
        self.tls = tls
        self.persist = persist
        self._tmp = None
        if state_dir is None:
            self._tmp = _temporary_state_dir()
            state_dir = self._tmp.name
        self.state_dir = pathlib.Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.plugins_dir = pathlib.Path(plugins_dir) if plugins_dir else DEFAULT_PLUGINS_DIR
        self.host_memory_mb = host_memory_mb
        self.host_cpus = host_cpus
        self.sr_size_gb = sr_size_gb
        self.pool_name = pool_name
        self.log = LOG

        self.model = load_model()
        self.store = Store(self.model)
        self.faults = Faults(task_duration)
        self.legacy_events: dict[str, Any] = {}
        self.sessions = SessionManager(self.store, self.users, session_limit,
                                       legacy_events=self.legacy_events)
        self.tasks = TaskManager(self.store, task_gc_age, LOG)
        self.dispatcher = Dispatcher(self)
        self.servers: list[HostServer] = []
        self.running = False
        self.ca_file: str | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        # hosts that are "down" (host failure): their listener refuses calls
        self.failed_hosts: set[str] = set()
        # outside dom0's API: iSCSI targets, each host's xenstore, guest agents
        self.storage_targets = StorageTargets()
        self.xenstores = Xenstores()
        self.guest_agents = GuestAgents()
        # Pools across simulator processes (api/pool_join.py): the address of
        # the coordinator this simulator's host joined (it answers
        # HOST_IS_SLAVE to every call then), and the hosts of other
        # processes that joined this pool (their disks' data is kept here).
        self.coordinator_address: str | None = None
        self.joined_hosts: set[str] = set()
        self.http_counts = HttpCounts()
        handlers.load_all()
        api.load_all()
        for secret in self.users.values():
            log_redaction.add_password(secret)
        log_redaction.protect_all()

    # -- life cycle -------------------------------------------------------------
    @property
    def db_file(self) -> pathlib.Path:
        return self.state_dir / "xapi-db.json"

    def start(self) -> Simulator:
        if self.persist and self.db_file.exists():
            self.store.load(json.loads(self.db_file.read_text()))
            self._reconcile_after_boot()
        else:
            bootstrap(self.store, PoolShape(
                addresses=self.addresses, host_memory_mb=self.host_memory_mb,
                host_cpus=self.host_cpus, sr_size_gb=self.sr_size_gb,
                pool_name=self.pool_name))
            # the objects bootstrap leaves to their class's rules
            for ref in self.store.refs("VDI"):
                self.refresh_allowed_operations("VDI", ref)
            for ref in self.store.find("SR", is_tools_sr=True):
                self.refresh_allowed_operations("SR", ref)
        host_refs = self._host_refs_in_address_order()
        tls_ctx = None
        if self.tls:
            cert, key = make_self_signed(self.state_dir / "tls", self.addresses)
            self.ca_file = cert
            tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls_ctx.load_cert_chain(cert, key)
        self._bind(host_refs, tls_ctx)
        self._bind_local_sockets(host_refs)
        self.running = True
        for srv in self.servers:
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                                 name=f"xapisim-{srv.label}", daemon=True)
            t.start()
            self._threads.append(t)
        gc = threading.Thread(target=self._housekeeping, name="xapisim-gc", daemon=True)
        gc.start()
        self._threads.append(gc)
        LOG.info("xapi-sim serving %s", ", ".join(self.urls))
        return self

    def _bind(self, host_refs: list[str], tls_ctx) -> None:
        for attempt in range(20):
            servers = []
            try:
                port = self.port
                for addr, ref in zip(self.addresses, host_refs, strict=True):
                    srv = HostServer((addr, port), self, ref, tls_ctx)
                    port = srv.server_address[1]
                    servers.append(srv)
                self.port = port
                self.servers = servers
                return
            except OSError:
                for s in servers:
                    s.server_close()
                if self.port != 0 and attempt == 0 and len(self.addresses) == 1:
                    raise
                if self.port != 0:
                    raise
        raise OSError("could not find a port free on every host address")

    def local_socket_path(self, host_ref: str) -> pathlib.Path:
        """xapi's Unix socket in ``host_ref``'s dom0 root."""
        return plugins.dom0_root(self, host_ref, create=False) / plugins.LOCAL_SOCKET

    def _bind_local_sockets(self, host_refs: list[str]) -> None:
        for ref in host_refs:
            path = self.local_socket_path(ref)
            if len(str(path).encode()) > MAX_UNIX_PATH:
                LOG.warning("no local xapi socket for %s: %s is longer than a Unix socket "
                            "path may be (use a shorter --state-dir)", ref, path)
                continue
            plugins.dom0_root(self, ref)  # its etc/xensource-inventory too
            self.servers.append(LocalServer(path, self, ref))

    def _host_refs_in_address_order(self) -> list[str]:
        by_addr = {self.store.raw("host", r)["address"]: r for r in self.store.refs("host")}
        return [by_addr[a] for a in self.addresses]

    def stop(self) -> None:
        self.running = False
        self._stop.set()
        with self.store.changed:
            self.store.changed.notify_all()
        for srv in self.servers:
            srv.shutdown()
            srv.drop_all_connections()
            srv.server_close()
        if self.persist:
            self.save()
        self.servers = []

    def save(self) -> None:
        tmp = self.db_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.store.dump()))
        tmp.replace(self.db_file)

    def _housekeeping(self) -> None:
        # Often enough that a short task_gc_age (in tests) is honoured.
        interval = max(0.2, min(5.0, self.tasks.gc_age / 2))
        while not self._stop.wait(interval):
            try:
                self.tasks.gc()
                if self.persist:
                    self.save()
            except Exception:
                LOG.exception("housekeeping failed")

    def _reconcile_after_boot(self) -> None:
        """After a reload from disk: no task survives, no session either,
        and (as xapi's start-up cancel_tasks does) no object keeps in its
        current_operations an operation of a task that is gone."""
        self.tasks.forget_all()
        self.sessions.forget_all()
        with self.store.lock:
            for cls, table in self.store.tables.items():
                for ref, rec in list(table.items()):
                    if rec.get("current_operations"):
                        self.store.update(cls, ref, current_operations={})
                        self.refresh_allowed_operations(cls, ref)

    # -- what clients see ----------------------------------------------------------
    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def urls(self) -> list[str]:
        return [f"{self.scheme}://{a}:{self.port}" for a in self.addresses]

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def master_ref(self) -> str:
        pools = self.store.refs("pool")
        return self.store.field("pool", pools[0], "master") if pools else ""

    @property
    def master_url(self) -> str:
        return f"{self.scheme}://{self.host_address(self.master_ref)}:{self.port}"

    def host_address(self, host_ref: str) -> str:
        return self.store.field("host", host_ref, "address")

    def snapshot_for_event(self, cls: str, rec: dict[str, Any]) -> dict[str, Any]:
        return rec

    def refresh_allowed_operations(self, cls: str, ref: str) -> None:
        fn = api.ALLOWED_OPERATIONS.get(cls)
        if fn is None:
            return
        with self.store.lock:
            if not self.store.has(cls, ref):
                return
            ops = fn(self, ref)
            if sorted(ops) != sorted(self.store.raw(cls, ref)["allowed_operations"]):
                self.store.update(cls, ref, allowed_operations=ops)

    # -- faults that act on the whole server ---------------------------------------------
    def restart_xapi(self, drop_connections: bool = True) -> None:
        """As if xapi restarted: sessions, tokens and tasks are gone,
        objects stay, open connections drop. Connections go first, as
        when the process dies, so a waiting long-poll gets no answer; the
        connection asking for the restart (the control API's) is kept for
        its reply. A caller passing drop_connections=False drops them
        itself later."""
        if drop_connections:
            keep = current_connection()
            for srv in self.servers:
                srv.drop_all_connections(keep=keep)
        self.tasks.forget_all()
        self.sessions.forget_all()
        with self.store.changed:
            self.store.epoch = (self.store.epoch + 1 + int(time.time())) % 10**12
            self.store.changed.notify_all()

    def call(self, method: str, *params: Any, host_ref: str | None = None) -> Any:
        """In-process call for the simulator's own tests and control API."""
        return self.dispatcher.call(host_ref or self.master_ref, method, list(params))


def _temporary_state_dir() -> tempfile.TemporaryDirectory:
    """A temporary state directory whose path has no "_": the SDK's local
    transport (XenAPI.xapi_local) spells a socket path with "_" for "/"."""
    while True:
        tmp = tempfile.TemporaryDirectory(prefix="xapisim-")
        if "_" not in tmp.name:
            return tmp
        tmp.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


__all__ = ["Simulator", "XenAPIError", "free_port"]
