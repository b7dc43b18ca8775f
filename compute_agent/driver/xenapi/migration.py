"""Live migration with xapi's own means, no ssh between dom0s.

Destination side (``prepare``): the agent of the receiving host checks its
host takes guests, picks the SR and network the VM will use there, and asks
its pool for a ``host.migrate_receive`` token on a session of its own (the
token carries that session, so it must outlive the migration; ``adopt`` or
``abort`` logs it out). The answer holds the token: a secret, never logged
or stored.

Source side (``migrate``):
- same pool, every disk on an SR the destination host sees (shared
  storage): ``Async.VM.pool_migrate``;
- same pool, disks on the source host's local SR (xapi refuses
  pool_migrate with VM_REQUIRES_SR): ``Async.VM.migrate_send`` to the
  member, those disks mapped to the destination's SR;
- another pool: ``VM.assert_can_migrate`` then ``Async.VM.migrate_send``
  live, every disk mapped to the destination's SR and every VIF to its
  network.

Destination again (``adopt``): once the VM runs there, its marks name the
destination agent, which owns it from then on.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.base import InstanceInfo, Operation
from compute_agent.driver.xenapi import ownership
from compute_agent.driver.xenapi.network import Networking
from compute_agent.driver.xenapi.pool import PoolView
from compute_agent.driver.xenapi.session import SessionPool, XenAPISession
from compute_agent.driver.xenapi.storage import Storage
from compute_agent.driver.xenapi.tasks import TaskRunner
from compute_agent.driver.xenapi.vm_ops import NULL_REF, VMOps, instance_info

LOG = logging.getLogger(__name__)

# Seconds a migrate_receive token (and its session) is kept when neither
# adopt nor abort comes: longer than any migration may take.
TOKEN_LIFETIME = 4 * 3600.0



class LiveMigrations:
    def __init__(self, pool: SessionPool, runner: TaskRunner, vmops: VMOps, storage: Storage,
                 networking: Networking, view: PoolView, agent_host: str):
        self.pool = pool
        self.runner = runner
        self.vmops = vmops
        self.storage = storage
        self.networking = networking
        self.view = view
        self.agent_host = agent_host
        # instance uuid -> (the session its migrate_receive token carries,
        # when it is given up if nobody adopts or aborts: a source that died
        # and never came back must not leave sessions open for ever)
        self._receiving: dict[str, tuple[XenAPISession, float]] = {}
        self._lock = threading.Lock()
        self.token_lifetime = TOKEN_LIFETIME

    # -- destination ---------------------------------------------------------------
    def prepare(self, instance: dict[str, Any]) -> dict[str, Any]:
        host = self.view.host_ref()
        host_rec = self.pool.call("host.get_record", host)
        if not host_rec.get("enabled"):
            raise exceptions.HypervisorError(host, code="HOST_DISABLED")
        sr = self.storage.find_sr()
        network = self.networking.management_network(host)
        self.abort(instance["uuid"])  # a retried prepare replaces the old token
        self._expire()
        sess = self.pool.dedicated()
        try:
            token = sess.call("host.migrate_receive", host, network, {})
        except BaseException:
            self.pool.release_dedicated(sess)
            raise
        with self._lock:
            self._receiving[instance["uuid"]] = (sess, time.monotonic() + self.token_lifetime)
        return {"pool_uuid": self.view.pool_uuid(), "host_ref": host,
                "host_uuid": host_rec.get("uuid", ""), "sr": sr, "network": network,
                "agent_host": self.agent_host, "token": token}

    def abort(self, instance_uuid: str) -> None:
        """Forget a prepared migration: its token's session ends."""
        with self._lock:
            held = self._receiving.pop(instance_uuid, None)
        if held is not None:
            self.pool.release_dedicated(held[0])

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            stale = [u for u, (_, until) in self._receiving.items() if until < now]
        for uuid in stale:
            LOG.info("Migration token for %s was never used up; dropping it", uuid)
            self.abort(uuid)

    def receiving(self) -> list[str]:
        """Instances with a prepared migration (a token outstanding)."""
        with self._lock:
            return sorted(self._receiving)

    def adopt(self, instance: dict[str, Any]) -> InstanceInfo:
        """Take over the instance's VM, which must run on this host (or, if
        halted, be placed here): its marks (and its disks') name this agent
        from now on."""
        uuid = instance["uuid"]
        ref, rec = self.vmops.require(instance)
        host = self.view.host_ref()
        where = rec.get("resident_on") if rec.get("power_state") != "Halted" \
            else rec.get("affinity")
        if where not in (host, NULL_REF, None, ""):
            raise exceptions.HypervisorError(uuid, str(where), host, code="VM_NOT_ON_THIS_HOST")
        self._mark("VM", ref, rec)
        if rec.get("affinity") != host:
            self.pool.call("VM.set_affinity", ref, host)
        for vdi in self.storage.vm_disks(rec, uuid):
            self._mark("VDI", vdi, self.pool.call("VDI.get_record", vdi))
        self.abort(uuid)
        return instance_info(ref, self.pool.call("VM.get_record", ref))

    def _mark(self, cls: str, ref: str, rec: dict[str, Any]) -> None:
        if ownership.owned_by(rec, self.agent_host):
            return
        self.pool.call(f"{cls}.remove_from_other_config", ref, ownership.HOST_KEY)
        self.pool.call(f"{cls}.add_to_other_config", ref, ownership.HOST_KEY, self.agent_host)

    # -- source ----------------------------------------------------------------------
    def migrate(self, op: Operation, instance: dict[str, Any], dest: dict[str, Any]) -> str:
        """Move the running VM to ``dest`` (prepare's answer); returns the
        VM's ref in the destination pool."""
        ref, rec = self.vmops.require(instance)
        if rec.get("power_state") != "Running":
            raise exceptions.HypervisorError(ref, "Running", str(rec.get("power_state")),
                                             code="VM_BAD_POWER_STATE")
        token = dest["token"]
        disks = self._disks(rec)
        if dest["pool_uuid"] == self.view.pool_uuid():
            target = dest["host_ref"]
            local = {vdi: sr for vdi, sr in disks.items()
                     if not self.view.sr_visible_on(sr, target)}
            if not local:
                LOG.info("Live migration of %s inside the pool (shared storage)", op.instance_uuid)
                self.runner.run(op, "VM.pool_migrate", ref, target, {"live": "true"})
                return ref
            vdi_map = {vdi: (dest["sr"] if vdi in local else sr) for vdi, sr in disks.items()}
            LOG.info("Live migration of %s inside the pool with %d local disk(s)",
                     op.instance_uuid, len(local))
            self.runner.run(op, "VM.migrate_send", ref, token, True, vdi_map, {}, {}, {})
            return ref
        vdi_map = {vdi: dest["sr"] for vdi in disks}
        vif_map = {vif: dest["network"] for vif in rec.get("VIFs", [])}
        LOG.info("Live migration of %s to another pool (%d disk(s))", op.instance_uuid,
                 len(disks))
        self.pool.call("VM.assert_can_migrate", ref, token, True, vdi_map, vif_map, {}, {})
        result = self.runner.run(op, "VM.migrate_send", ref, token, True, vdi_map, vif_map,
                                 {}, {})
        return str(result or "")

    def cold_migrate(self, op: Operation, instance: dict[str, Any],
                     dest: dict[str, Any]) -> str:
        """Move the halted VM to ``dest``: inside the pool on shared storage
        only its placement (affinity); otherwise ``VM.migrate_send`` with
        live=false, its disks to the destination's SR (and across pools its
        VIFs to the destination's network), then placed there."""
        ref, rec = self.vmops.require(instance)
        if rec.get("power_state") != "Halted":
            raise exceptions.HypervisorError(ref, "Halted", str(rec.get("power_state")),
                                             code="VM_BAD_POWER_STATE")
        token = dest["token"]
        disks = self._disks(rec)
        target = dest["host_ref"]
        if dest["pool_uuid"] == self.view.pool_uuid():
            local = {vdi for vdi, sr in disks.items() if not self.view.sr_visible_on(sr, target)}
            if local:
                vdi_map = {vdi: (dest["sr"] if vdi in local else sr)
                           for vdi, sr in disks.items()}
                LOG.info("Cold migration of %s inside the pool with %d local disk(s)",
                         op.instance_uuid, len(local))
                self.runner.run(op, "VM.migrate_send", ref, token, False, vdi_map, {}, {}, {})
            else:
                LOG.info("Cold migration of %s inside the pool (shared storage): placement",
                         op.instance_uuid)
            self.pool.call("VM.set_affinity", ref, target)
            return ref
        vdi_map = {vdi: dest["sr"] for vdi in disks}
        vif_map = {vif: dest["network"] for vif in rec.get("VIFs", [])}
        LOG.info("Cold migration of %s to another pool (%d disk(s))", op.instance_uuid,
                 len(disks))
        self.pool.call("VM.assert_can_migrate", ref, token, False, vdi_map, vif_map, {}, {})
        result = self.runner.run(op, "VM.migrate_send", ref, token, False, vdi_map, vif_map,
                                 {}, {})
        return str(result or "")

    def _disks(self, rec: dict[str, Any]) -> dict[str, str]:
        """VDI -> SR of the VM's disks (CD drives and empty VBDs left out)."""
        out: dict[str, str] = {}
        for vbd in rec.get("VBDs", []):
            b = self.pool.call("VBD.get_record", vbd)
            vdi = b.get("VDI")
            if b.get("empty") or not vdi or vdi == NULL_REF or b.get("type") == "CD":
                continue
            out[vdi] = self.pool.call("VDI.get_SR", vdi)
        return out
