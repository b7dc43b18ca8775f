"""host.call_plugin: run a dom0 plugin on a host (see xapisim.plugins)."""

from __future__ import annotations

from xapisim import plugins, sr_files
from xapisim.api import handler
from xapisim.context import CallContext
from xapisim.errors import XenAPIError


@handler("host.call_plugin")
def host_call_plugin(ctx: CallContext, host: str, plugin: str, fn: str,
                     args: dict[str, str]) -> str:
    sim = ctx.sim
    ctx.store.raw("host", host)
    if host in sim.failed_hosts:
        # xapi forwards the call to that host and cannot reach it
        raise XenAPIError("HOST_OFFLINE", host)
    # a plugin may write into the file-based SRs plugged on the host
    sr_files.ensure_mounts(sim, host)
    try:
        return plugins.call(sim, host, ctx.session_ref, plugin, fn, args,
                            cancel=ctx.cancel_requested)
    except XenAPIError:
        ctx.check_cancel()  # killed because the task was cancelled: say so
        raise
