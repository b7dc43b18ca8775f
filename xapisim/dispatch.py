"""From a decoded call to a handler: method lookup, parameter count and
types, session check, pool-member refusal, faults, sync or Async."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from xapisim import api
from xapisim.api import generic
from xapisim.context import CallContext
from xapisim.errors import XenAPIError
from xapisim.introspection import LIST_METHODS, served_messages
from xapisim.wire_values import check_params, plain

if TYPE_CHECKING:
    from xapisim.services import SimServices

LOGIN = "session.login_with_password"
LOCAL_LOGIN = "session.slave_local_login_with_password"
LOGOUTS = ("session.logout", "session.local_logout")
# What a member's xapi answers itself, even on its local socket
MEMBER_LOCAL = (LOCAL_LOGIN, "session.local_logout")

# Trailing parameters xapi added in later releases with a default, so that
# older clients may leave them out. The published data model does not carry
# these defaults; this table holds the ones clients are known to omit.
TRAILING_DEFAULTS: dict[str, list[object]] = {
    "VM.snapshot": [[]],  # ignore_vdis
    "host.evacuate": ["OpaqueRef:NULL", 0],  # network, evacuate_batch_size
}


class Dispatcher:
    def __init__(self, sim: SimServices):
        self.sim = sim
        api.load_all()
        self._cache: dict[str, Any] = {}
        self._methods: list[str] | None = None

    def list_methods(self) -> list[str]:
        """system.listMethods: every message served (see introspection)."""
        if self._methods is None:
            declared = [m.wire_name for c in self.sim.model.classes.values()
                        for m in c.messages.values()]
            self._methods = served_messages(declared, self.handler_for,
                                            (LOGIN, LOCAL_LOGIN, *LOGOUTS))
        return list(self._methods)

    def handler_for(self, wire_name: str):
        """The handler for a declared message, or None if unimplemented."""
        if wire_name in self._cache:
            return self._cache[wire_name]
        fn = api.HANDLERS.get(wire_name)
        if fn is None:
            msg = self.sim.model.message(wire_name)
            if msg is not None and msg.implicit:
                fn = generic.resolve(msg, self.sim.model.classes[msg.cls])
        self._cache[wire_name] = fn
        return fn

    def call(self, host_ref: str, method: str, params: list[Any], *,
             local_socket: bool = False, peer_root: bool = False) -> Any:
        """``method`` received by ``host_ref``'s listener, or its local Unix
        socket (``local_socket``; ``peer_root``: the caller is dom0's root,
        whom xapi logs in without credentials). On a member, xapi forwards
        what arrives on the local socket to the coordinator instead of
        answering HOST_IS_SLAVE."""
        sim = self.sim
        delay = sim.faults.latency(method)
        if delay > 0:
            time.sleep(delay)
        is_async = method.startswith("Async.")
        name = method[6:] if is_async else method
        # Rules on "Async.X" fail the call itself; a rule on the plain name
        # fails a synchronous call, or the task of an Async one.
        sim.faults.before_call(method)
        if sim.coordinator_address:
            # this host joined a pool of another simulator process
            raise XenAPIError("HOST_IS_SLAVE", sim.coordinator_address)
        # xapi's dispatcher refuses any parameter XML could not carry first
        check_params(params)
        params = plain(params)
        if method == LIST_METHODS:
            return self.list_methods()

        if (local_socket and host_ref != sim.master_ref and name not in api.MEMBER_ALLOWED
                and name not in MEMBER_LOCAL):
            host_ref = sim.master_ref  # forwarded, as xapi does for its Unix socket
        if name in (LOGIN, LOCAL_LOGIN) and not is_async:
            return self._login(host_ref, name, params, trusted=local_socket and peer_root)

        msg = sim.model.message(name)
        if msg is None:
            raise XenAPIError("MESSAGE_METHOD_UNKNOWN", method)
        params = _fill_defaults(name, params, len(msg.params))
        if len(params) != len(msg.params):
            raise XenAPIError(
                "MESSAGE_PARAMETER_COUNT_MISMATCH", method, len(msg.params), len(params)
            )
        session = None
        if msg.needs_session:
            session = sim.sessions.validate(params[0])
            params = params[1:]
            decl = msg.params[1:]
        else:
            decl = msg.params
        if name in LOGOUTS:
            sim.sessions.destroy(session)
            return None
        if host_ref != sim.master_ref and name not in api.MEMBER_ALLOWED:
            raise XenAPIError("HOST_IS_SLAVE", sim.host_address(sim.master_ref))
        args = [sim.model.coerce(p.type, v, p.name) for p, v in zip(decl, params, strict=True)]
        fn = self.handler_for(name)
        if fn is None:
            raise XenAPIError("NOT_IMPLEMENTED", name)
        ctx = CallContext(sim, name, session, host_ref)
        if is_async:
            return sim.tasks.spawn(ctx, _failing_first(sim, name, fn), args)
        return fn(ctx, *args)

    def _login(self, host_ref: str, name: str, params: list[Any], trusted: bool = False) -> str:
        sim = self.sim
        if name == LOGIN:
            # version and originator are optional on the wire
            if not 2 <= len(params) <= 4:
                raise XenAPIError("MESSAGE_PARAMETER_COUNT_MISMATCH", name, 4, len(params))
            uname, pwd, *rest = params
            originator = rest[1] if len(rest) > 1 else ""
            if not all(isinstance(p, str) for p in params):
                raise XenAPIError("FIELD_TYPE_ERROR", "uname")
            if host_ref != sim.master_ref:
                raise XenAPIError("HOST_IS_SLAVE", sim.host_address(sim.master_ref))
            return sim.sessions.login(host_ref, uname, pwd, originator, trusted=trusted)
        if len(params) != 2:
            raise XenAPIError("MESSAGE_PARAMETER_COUNT_MISMATCH", name, 2, len(params))
        if not all(isinstance(p, str) for p in params):
            raise XenAPIError("FIELD_TYPE_ERROR", "uname")
        return sim.sessions.login(host_ref, params[0], params[1], "", local=True,
                                  trusted=trusted)


def _fill_defaults(name: str, params: list[Any], expected: int) -> list[Any]:
    defaults = TRAILING_DEFAULTS.get(name)
    missing = expected - len(params)
    if not defaults or missing <= 0 or missing > len(defaults):
        return params
    return [*params, *defaults[len(defaults) - missing:]]


def _failing_first(sim: SimServices, name: str, fn):
    def run(ctx: CallContext, *args: Any) -> Any:
        sim.faults.before_task(name)
        return fn(ctx, *args)

    return run
