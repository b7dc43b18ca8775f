"""A xenstore per simulated host: the tree of ``/local/domain/<domid>/...``
that dom0 tools (``xenstore-read``/``-write``/``-rm``/``-ls``) and the
guest share.

A domain's subtree is made when it boots (with the VM's
``xenstore_data`` under it, as xapi writes it) and goes with the domain.
Watches call back on writes under a prefix; the simulated guest agent uses
one to see requests arrive under ``data/host``. Errors are the xenstore
daemon's errno names (ENOENT, EINVAL), as the command-line tools report
them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Watch = Callable[[str, str], None]  # (path, value)
MAX_VALUE = 4096  # xenstored's default quota for one node's value


class XenstoreError(Exception):
    def __init__(self, errno_name: str, path: str):
        super().__init__(f"{errno_name}: {path}")
        self.errno_name = errno_name
        self.path = path


def domain_path(domid: int) -> str:
    return f"/local/domain/{domid}"


def _norm(path: str) -> str:
    if not path.startswith("/") or "//" in path or any(
            c in path for c in "\0\n") or path.endswith("/") and path != "/":
        raise XenstoreError("EINVAL", path)
    return path


class HostXenstore:
    """One host's xenstore; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, str] = {}
        self._watches: dict[str, list[Watch]] = {}

    # -- domains --------------------------------------------------------------------
    def new_domain(self, domid: int, xenstore_data: dict[str, str]) -> None:
        base = domain_path(domid)
        with self._lock:
            self._drop(base)
            self._nodes[base] = ""
            for key, value in xenstore_data.items():
                self._nodes[f"{base}/{key.strip('/')}"] = str(value)

    def drop_domain(self, domid: int) -> None:
        base = domain_path(domid)
        with self._lock:
            self._drop(base)
            self._watches = {p: w for p, w in self._watches.items()
                             if not (p == base or p.startswith(base + "/"))}

    def _drop(self, base: str) -> None:
        for key in [k for k in self._nodes if k == base or k.startswith(base + "/")]:
            del self._nodes[key]

    # -- the tools' operations -----------------------------------------------------------
    def read(self, path: str) -> str:
        path = _norm(path)
        with self._lock:
            if path not in self._nodes:
                raise XenstoreError("ENOENT", path)
            return self._nodes[path]

    def exists(self, path: str) -> bool:
        path = _norm(path)
        with self._lock:
            return path in self._nodes or any(k.startswith(path + "/") for k in self._nodes)

    def write(self, path: str, value: str) -> None:
        path = _norm(path)
        if len(value.encode()) > MAX_VALUE:
            raise XenstoreError("E2BIG", path)
        with self._lock:
            self._nodes[path] = value
            # xenstored makes the parents of a node it writes
            parent = path.rsplit("/", 1)[0]
            while parent and parent not in self._nodes:
                self._nodes[parent] = ""
                parent = parent.rsplit("/", 1)[0]
            watches = [w for prefix, ws in self._watches.items()
                       if path == prefix or path.startswith(prefix + "/") for w in ws]
        for watch in watches:
            watch(path, value)

    def rm(self, path: str) -> None:
        path = _norm(path)
        with self._lock:
            if not any(k == path or k.startswith(path + "/") for k in self._nodes):
                raise XenstoreError("ENOENT", path)
            self._drop(path)

    def ls(self, path: str) -> list[str]:
        path = _norm(path)
        with self._lock:
            if path not in self._nodes:
                raise XenstoreError("ENOENT", path)
            prefix = path.rstrip("/") + "/"
            return sorted({k[len(prefix):].split("/", 1)[0] for k in self._nodes
                           if k.startswith(prefix)})

    def watch(self, prefix: str, callback: Watch) -> None:
        with self._lock:
            self._watches.setdefault(_norm(prefix), []).append(callback)


class Xenstores:
    """Every host's xenstore, made on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hosts: dict[str, HostXenstore] = {}

    def of(self, host: str) -> HostXenstore:
        with self._lock:
            store = self._hosts.get(host)
            if store is None:
                store = self._hosts[host] = HostXenstore()
            return store
