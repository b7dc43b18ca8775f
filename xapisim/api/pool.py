"""Pool membership: moving the coordinator, and a member's emergency calls.

The simulator keeps one object database for the whole pool, so "which
host is the coordinator" is ``pool.master``: the dispatcher answers
HOST_IS_SLAVE [coordinator address] on every other host. Moving it:

- pool.designate_new_master(host), on the coordinator: after the task
  duration ``host`` coordinates; both xapis restart, so every session and
  task is gone (xapi keeps neither across a restart) and open connections
  drop a moment after the reply. HOST_OFFLINE [host] when ``host`` is down.
- pool.emergency_transition_to_master, on a member (log in with
  session.slave_local_login_with_password): that member coordinates now,
  with the same restart. Simplification: the old coordinator, if alive,
  follows at once instead of keeping a split brain until it is told.
- pool.emergency_reset_master(address), on a member: it re-points to the
  coordinator at ``address``; its local sessions end (its xapi restarts).
- pool.recover_slaves, on the coordinator: the live members re-point to
  it; returns them.
"""

from __future__ import annotations

import threading

from xapisim import placement
from xapisim.api import handler
from xapisim.context import CallContext
from xapisim.errors import XenAPIError

# how long after a reply the restarted xapi cuts its open connections
RESTART_DROP_DELAY = 0.2


def _pool(ctx: CallContext) -> str:
    return ctx.store.refs("pool")[0]


def _assert_no_ha(ctx: CallContext) -> None:
    if ctx.store.field("pool", _pool(ctx), "ha_enabled"):
        raise XenAPIError("HA_IS_ENABLED")


def _drop_later(sim, hosts: set[str] | None = None) -> None:
    def drop() -> None:
        for srv in list(sim.servers):
            if hosts is None or srv.host_ref in hosts:
                srv.drop_all_connections()

    t = threading.Timer(RESTART_DROP_DELAY, drop)
    t.daemon = True
    t.start()


def _restart_pool(sim) -> None:
    """Every xapi of the pool restarts (the database moved)."""
    sim.restart_xapi(drop_connections=False)
    _drop_later(sim)


def _restart_member(sim, host: str) -> None:
    """One member's xapi restarts: the sessions made on it end."""
    store = sim.store
    with store.lock:
        mine = [ref for ref, rec in store.tables["session"].items() if rec["this_host"] == host]
    for ref in mine:
        sim.sessions.destroy(ref)
    _drop_later(sim, {host})


@handler("pool.designate_new_master")
def pool_designate_new_master(ctx: CallContext, host: str) -> None:
    sim = ctx.sim
    with ctx.store.lock:
        ctx.store.raw("host", host)
        _assert_no_ha(ctx)
        if not placement.host_live(sim, host):
            raise XenAPIError("HOST_OFFLINE", host)
        if host == sim.master_ref:
            return  # xapi: nothing to do on the coordinator itself
    ctx.work()
    with ctx.store.lock:
        if not placement.host_live(sim, host):
            raise XenAPIError("HOST_OFFLINE", host)
        ctx.store.update("pool", _pool(ctx), master=host)
    sim.log.info("pool: %s is the coordinator now", sim.host_address(host))
    _restart_pool(sim)


@handler("pool.emergency_transition_to_master", member_ok=True)
def pool_emergency_transition_to_master(ctx: CallContext) -> None:
    sim = ctx.sim
    with ctx.store.lock:
        _assert_no_ha(ctx)
        if ctx.host_ref == sim.master_ref:
            return
        ctx.store.update("pool", _pool(ctx), master=ctx.host_ref)
    sim.log.info("pool: %s took over as coordinator (emergency)",
                 sim.host_address(ctx.host_ref))
    _restart_pool(sim)


@handler("pool.emergency_reset_master", member_ok=True)
def pool_emergency_reset_master(ctx: CallContext, master_address: str) -> None:
    sim = ctx.sim
    with ctx.store.lock:
        _assert_no_ha(ctx)
        known = [r for r, rec in ctx.store.tables["host"].items()
                 if master_address in (rec["address"], rec["hostname"])]
    if not known:
        raise XenAPIError("INTERNAL_ERROR", f"cannot resolve {master_address}")
    if ctx.host_ref != sim.master_ref:
        _restart_member(sim, ctx.host_ref)


@handler("pool.recover_slaves")
def pool_recover_slaves(ctx: CallContext) -> list[str]:
    sim = ctx.sim
    with ctx.store.lock:
        members = [h for h in ctx.store.refs("host")
                   if h != sim.master_ref and placement.host_live(sim, h)]
    for host in members:
        _restart_member(sim, host)
    return members
