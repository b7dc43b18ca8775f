"""The pool this agent's dom0 host belongs to, as the agent needs to know
it: which host is its own (the one the configured URL names, even when
HOST_IS_SLAVE sent the sessions to the coordinator), which pool that is,
its other hosts, and which SRs a host can see.

One agent manages one host of a pool; what it reads here lets it keep to
that host (disks on an SR its host sees, VMs started there) and tell a
move inside the pool from one to another pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from compute_agent.driver.xenapi.session import SessionPool

NULL_REF = "OpaqueRef:NULL"


class PoolView:
    def __init__(self, pool: SessionPool, host_ref: Callable[[], str]):
        self.pool = pool
        self.host_ref = host_ref
        self._pool_ref: str | None = None
        self._pool_uuid: str | None = None

    def pool_ref(self) -> str:
        """The pool's ref, read once: it changes only with a join, an eject
        or a reconnect, which call :meth:`forget`. Read every periodic
        round it would cost a dom0 call for nothing."""
        if self._pool_ref is None:
            self._pool_ref = self.pool.call("pool.get_all")[0]
        return self._pool_ref

    def pool_uuid(self) -> str:
        """The pool's uuid (read again after a reset: a join or an eject
        changes it)."""
        if self._pool_uuid is None:
            self._pool_uuid = self.pool.call("pool.get_uuid", self.pool_ref())
        return self._pool_uuid

    def forget(self) -> None:
        """The pool may have changed (join, eject): read it again."""
        self._pool_ref = None
        self._pool_uuid = None

    def status(self) -> dict[str, Any]:
        """The pool for get_host_status: its uuid and name, this host's
        role, and every host with its address, enabled and live flags."""
        pool_ref = self.pool_ref()
        pool_rec = self.pool.call("pool.get_record", pool_ref)
        master = pool_rec.get("master")
        mine = self.host_ref()
        hosts = self.pool.call("host.get_all_records")
        members = []
        for ref, rec in sorted(hosts.items(), key=lambda kv: kv[1].get("address", "")):
            live = None
            metrics = rec.get("metrics")
            if metrics and metrics != NULL_REF:
                try:
                    live = bool(self.pool.call("host_metrics.get_live", metrics))
                except Exception:  # status is best effort per host
                    live = None
            members.append({
                "name": rec.get("name_label") or rec.get("hostname") or "",
                "address": rec.get("address") or "",
                "uuid": rec.get("uuid") or "",
                "enabled": bool(rec.get("enabled")),
                "live": live,
                "coordinator": ref == master,
                "this_host": ref == mine,
            })
        self._pool_uuid = pool_rec.get("uuid") or self._pool_uuid
        return {
            "uuid": pool_rec.get("uuid") or "",
            "name": pool_rec.get("name_label") or "",
            "role": "coordinator" if mine == master else "member",
            "hosts": members,
        }

    def sr_visible_on(self, sr: str, host: str) -> bool:
        """Whether ``host`` has ``sr`` attached (a PBD plugged there)."""
        for pbd in self.pool.call("SR.get_PBDs", sr):
            rec = self.pool.call("PBD.get_record", pbd)
            if rec.get("host") == host and rec.get("currently_attached"):
                return True
        return False

    def local_sr(self, host: str) -> str | None:
        """A disk SR attached on ``host`` (its local storage), or None."""
        srs = self.pool.call("SR.get_all_records")
        for ref, rec in sorted(srs.items()):
            if rec.get("content_type") in ("iso",) or rec.get("type") in ("iso", "udev"):
                continue
            if self.sr_visible_on(ref, host):
                return ref
        return None
