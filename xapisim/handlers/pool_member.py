"""The simulator's side channel between simulator processes for pools
(what xapi does with internal calls under the pool secret), under the
control API's prefix:

POST /_sim/pool/join_member  {joining host, its local SR and VDIs}  (coordinator)
POST /_sim/pool/ejected      {}                                     (ejected host)
"""

from __future__ import annotations

import json

from xapisim import pool_membership
from xapisim.errors import XenAPIError
from xapisim.handlers import route

MAX_BODY = 4 * 1024 * 1024


def _reply(req, status: int, doc: dict) -> None:
    req.send(status, json.dumps(doc, sort_keys=True).encode(), "application/json")


@route("POST", "/_sim/pool/join_member")
def join_member(req) -> None:
    n = req.content_length or 0
    try:
        if n <= 0 or n > MAX_BODY:
            raise ValueError("body length")
        doc = json.loads(req.rfile.read(n))
        _reply(req, 200, {"ok": True, **pool_membership.add_member(req.sim, doc)})
    except XenAPIError as e:
        _reply(req, 409, {"error": e.description})
    except (ValueError, KeyError, TypeError) as e:
        _reply(req, 400, {"error": f"bad join request: {e.__class__.__name__}"})


@route("POST", "/_sim/pool/ejected")
def ejected(req) -> None:
    n = req.content_length or 0
    if n:
        req.rfile.read(min(n, MAX_BODY))
    pool_membership.reset_standalone(req.sim)
    _reply(req, 200, {"ok": True})
