"""What the simulator's parts may ask of the simulator as a whole.

The Simulator (xapisim.server) owns its parts (store, sessions, tasks,
dispatcher, listeners) and hands each one what it needs: the narrow parts
(sessions, tasks, bootstrap) get the objects themselves; the parts that
act for a client (the call context the message handlers see, the HTTP
listeners and their route handlers, the dispatcher) get the simulator as
the ``SimServices`` declared here. No part imports xapisim.server: this
module is the only picture of the simulator they know, so the core has no
import cycle and the simulator can grow without its parts reaching back.
"""

from __future__ import annotations

import logging
import pathlib
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from xapisim.faults import Faults
    from xapisim.guest_commands import GuestAgents
    from xapisim.http_counts import HttpCounts
    from xapisim.iscsi import StorageTargets
    from xapisim.schema import DataModel
    from xapisim.sessions import SessionManager
    from xapisim.store import Store
    from xapisim.tasks import TaskManager
    from xapisim.xenstore import Xenstores


class Calls(Protocol):
    """The dispatcher, as those that place calls see it."""

    def call(self, host_ref: str, method: str, params: list[Any], *,
             local_socket: bool = False, peer_root: bool = False) -> Any: ...

    def handler_for(self, wire_name: str) -> Any: ...


class Listener(Protocol):
    """One simulated host's listener, as those that drop its connections see it."""

    host_ref: str

    def drop_all_connections(self, keep: Any = None) -> int: ...


class SimServices(Protocol):
    """The simulator as its parts use it (xapisim.server.Simulator is one)."""

    # the pool's state and the knobs that act on it
    model: DataModel
    store: Store
    faults: Faults
    sessions: SessionManager
    tasks: TaskManager
    dispatcher: Calls
    legacy_events: dict[str, Any]
    http_counts: HttpCounts
    log: logging.Logger
    # hosts that are "down": their listener refuses calls
    failed_hosts: set[str]
    # pools across simulator processes (api/pool_join.py)
    coordinator_address: str | None
    joined_hosts: set[str]
    running: bool
    servers: list[Listener]
    # outside dom0's object model: iSCSI targets, each host's xenstore, guest agents
    storage_targets: StorageTargets
    xenstores: Xenstores
    guest_agents: GuestAgents

    # configuration
    addresses: list[str]
    port: int
    tls: bool
    ca_file: str | None
    state_dir: pathlib.Path
    plugins_dir: pathlib.Path
    host_cpus: int
    host_memory_mb: int
    sr_size_gb: int

    @property
    def scheme(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def urls(self) -> list[str]: ...

    @property
    def master_ref(self) -> str: ...

    @property
    def master_url(self) -> str: ...

    @property
    def db_file(self) -> pathlib.Path: ...

    def host_address(self, host_ref: str) -> str: ...

    def refresh_allowed_operations(self, cls: str, ref: str) -> None: ...

    def snapshot_for_event(self, cls: str, rec: dict[str, Any]) -> dict[str, Any]: ...

    def restart_xapi(self, drop_connections: bool = True) -> None: ...

    def save(self) -> None: ...

    def local_socket_path(self, host_ref: str) -> pathlib.Path: ...
