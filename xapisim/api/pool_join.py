"""pool.join and pool.eject between simulator processes (see
xapisim/pool_membership.py for what each side keeps).

pool.join(master_address, master_username, master_password), on a
standalone host, with xapi's refusals: JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS,
JOINING_HOST_CANNOT_HAVE_RUNNING_OR_SUSPENDED_VMS,
JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS, JOINING_HOST_CONNECTION_FAILED (the
coordinator cannot be reached at ``master_address``, same scheme and port
as this host), SESSION_AUTHENTICATION_FAILED (its credentials),
POOL_JOINING_HOST_MUST_HAVE_SAME_PRODUCT_VERSION. The coordinator's
password goes to the coordinator only and is never logged.

pool.eject(host), on the coordinator: only a host that joined from another
simulator process (the simulator keeps the hosts it was started with), not
the coordinator, and without running guests (HOST_IN_USE).
"""

from __future__ import annotations

from xapisim import pool_membership, vdi_data, vhd
from xapisim.api import handler
from xapisim.context import CallContext
from xapisim.errors import XenAPIError
from xapisim.remote_xapi import RemoteXapi


def _assert_can_join(ctx: CallContext) -> None:
    store = ctx.store
    if len(store.refs("host")) > 1:
        raise XenAPIError("JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS")
    for rec in store.tables["VM"].values():
        if not rec["is_control_domain"] and rec["power_state"] in (
                "Running", "Paused", "Suspended"):
            raise XenAPIError("JOINING_HOST_CANNOT_HAVE_RUNNING_OR_SUSPENDED_VMS")
    for rec in store.tables["SR"].values():
        if rec["shared"] and rec["content_type"] != "iso":
            raise XenAPIError("JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS")


@handler("pool.join")
def pool_join(ctx: CallContext, master_address: str, master_username: str,
              master_password: str) -> None:
    sim = ctx.sim
    with ctx.store.lock:
        _assert_can_join(ctx)
        mine = pool_membership.joiner_description(sim)
    url = f"{sim.scheme}://{master_address}:{sim.port}"
    try:
        remote = RemoteXapi.login(url, master_username, master_password)
    except XenAPIError as e:
        if e.code in ("CANNOT_CONTACT_HOST", "VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED"):
            raise XenAPIError("JOINING_HOST_CONNECTION_FAILED") from None
        raise
    try:
        pool = remote.call("pool.get_all")[0]
        master = remote.call("pool.get_master", pool)
        theirs = remote.call("host.get_software_version", master).get("product_version", "")
        if theirs != mine["product_version"]:
            raise XenAPIError("POOL_JOINING_HOST_MUST_HAVE_SAME_PRODUCT_VERSION")
        ctx.work()
        added = remote.post_json("/_sim/pool/join_member", mine)
        for v in mine["vdis"]:
            _upload(sim, remote, v["uuid"], int(v["virtual_size"]), added["vdis"][v["uuid"]])
    finally:
        try:
            remote.call("session.logout")
        except XenAPIError:
            pass
    sim.log.info("pool: joined the pool of %s", master_address)
    pool_membership.become_member(sim, master_address)


def _upload(sim, remote: RemoteXapi, uuid: str, size: int, ref: str) -> None:
    """The disk's data, to the coordinator that keeps it from now on."""
    if not vdi_data.exists(sim, uuid):
        return
    with open(vdi_data.path(sim, uuid), "rb") as f:
        length = vhd.dynamic_size(f, size)
        f.seek(0)
        remote.put("/import_raw_vdi", {"vdi": ref, "format": "vhd"},
                   vhd.export_dynamic(f, size), length, "pool join: local disk")


@handler("pool.eject")
def pool_eject(ctx: CallContext, host: str) -> None:
    sim = ctx.sim
    with ctx.store.lock:
        pool_membership.assert_can_eject(sim, host)
    ctx.work()
    address = pool_membership.remove_member(sim, host)
    url = f"{sim.scheme}://{address}:{sim.port}"
    try:
        RemoteXapi(url, "").post_json("/_sim/pool/ejected", {})
    except XenAPIError as e:
        # as xapi: the host is out of the pool database either way
        sim.log.warning("pool: could not tell %s it was ejected: %s", address, e.code)
