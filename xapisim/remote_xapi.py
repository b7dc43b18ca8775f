"""A client for another pool's xapi, as one xapi talks to another during a
cross-pool migration: XML-RPC calls to the remote coordinator with the
session that ``host.migrate_receive`` put in the token, and the HTTP
handlers (``/import_raw_vdi``, ``/import_metadata``) whose outcome is on a
remote task.

Errors come back as XenAPIError: the remote's own error unchanged, or
CANNOT_CONTACT_HOST [address] when the remote cannot be reached, as xapi
reports a connection reset to the other pool."""

from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import xmlrpc.client
from collections.abc import Iterable
from typing import Any

from xapisim.errors import XenAPIError

TIMEOUT = 30.0
# how long a remote HTTP handler's task may take to settle after the upload
TASK_SETTLE_TIMEOUT = 60.0


class _Transport(xmlrpc.client.Transport):
    def make_connection(self, host):
        conn = super().make_connection(host)
        conn.timeout = TIMEOUT
        return conn


class _SafeTransport(xmlrpc.client.SafeTransport):
    def make_connection(self, host):
        conn = super().make_connection(host)
        conn.timeout = TIMEOUT
        return conn


def _unverified() -> ssl.SSLContext:
    # Deviation: pool-to-pool certificate trust is not modelled.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class RemoteXapi:
    """Calls on the remote pool's coordinator at ``master_url``."""

    def __init__(self, master_url: str, session_id: str):
        self.url = master_url.rstrip("/")
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise XenAPIError("VM_MIGRATE_CONTACT_REMOTE_SERVICE_FAILED")
        self.address = parts.hostname
        self.session = session_id
        transport = (_SafeTransport(context=_unverified()) if parts.scheme == "https"
                     else _Transport())
        self._proxy = xmlrpc.client.ServerProxy(self.url, transport=transport, allow_none=True)

    @classmethod
    def login(cls, url: str, username: str, password: str) -> RemoteXapi:
        """A new session on the pool at ``url`` (the password goes to that
        xapi only; it is never logged)."""
        remote = cls(url, "")
        try:
            reply = remote._proxy.session.login_with_password(username, password, "2.0",
                                                              "xapi-sim pool join")
        except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError):
            raise XenAPIError("CANNOT_CONTACT_HOST", remote.address) from None
        if reply.get("Status") != "Success":
            desc = [str(x) for x in reply.get("ErrorDescription") or ["INTERNAL_ERROR"]]
            raise XenAPIError(desc[0], *desc[1:])
        remote.session = reply["Value"]
        return remote

    def post_json(self, path: str, doc: Any) -> dict[str, Any]:
        """POST a JSON document to the other simulator's control API."""
        data = json.dumps(doc).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT,
                                        context=_unverified() if self.url.startswith("https")
                                        else None) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            detail = json.loads(e.read() or b"{}").get("error")
            if isinstance(detail, list) and detail:
                raise XenAPIError(str(detail[0]), *[str(x) for x in detail[1:]]) from None
            raise XenAPIError("INTERNAL_ERROR", str(detail or e.code)) from None
        except (OSError, ValueError):
            raise XenAPIError("CANNOT_CONTACT_HOST", self.address) from None

    # -- XML-RPC -------------------------------------------------------------
    def call(self, method: str, *args: Any) -> Any:
        """``method`` with the token's session first, as every API call."""
        try:
            reply = getattr(self._proxy, method)(self.session, *args)
        except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError):
            raise XenAPIError("CANNOT_CONTACT_HOST", self.address) from None
        if reply.get("Status") != "Success":
            desc = [str(x) for x in reply.get("ErrorDescription") or ["INTERNAL_ERROR"]]
            raise XenAPIError(desc[0], *desc[1:])
        return reply.get("Value")

    # -- HTTP handlers under a remote task -------------------------------------
    def put(self, path: str, query: dict[str, str], body: Iterable[bytes], length: int,
            label: str, base_url: str | None = None) -> str:
        """PUT ``body`` (``length`` bytes, in pieces) to ``path`` on
        ``base_url`` (default: the coordinator) under a new remote task;
        the task's result once it succeeds."""
        task = self.call("task.create", label, "cross-pool migration")
        try:
            q = dict(query, session_id=self.session, task_id=task)
            self._send(f"{base_url or self.url}{path}?{urllib.parse.urlencode(q)}", body, length)
            return self._task_result(task)
        finally:
            try:
                self.call("task.destroy", task)
            except XenAPIError:
                pass

    def url_for_sr(self, sr: str) -> str:
        """Where the data of remote ``sr`` is served: the coordinator if it
        (or nobody) has it attached, else a member that has, so that the
        upload is not redirected after its body went out."""
        pool = self.call("pool.get_all")[0]
        master = self.call("pool.get_master", pool)
        hosts = []
        for pbd in self.call("SR.get_PBDs", sr):
            rec = self.call("PBD.get_record", pbd)
            if rec.get("currently_attached"):
                hosts.append(rec["host"])
        if not hosts or master in hosts:
            return self.url
        parts = urllib.parse.urlsplit(self.url)
        address = self.call("host.get_address", hosts[0])
        return f"{parts.scheme}://{address}:{parts.port}"

    def _send(self, url: str, body: Iterable[bytes], length: int) -> None:
        parts = urllib.parse.urlsplit(url)
        kwargs: dict[str, Any] = {"timeout": TIMEOUT}
        if parts.scheme == "https":
            kwargs["context"] = _unverified()
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, **kwargs)
        else:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, **kwargs)
        try:
            conn.putrequest("PUT", f"{parts.path}?{parts.query}")
            conn.putheader("Content-Length", str(length))
            conn.putheader("Content-Type", "application/octet-stream")
            conn.endheaders()
            for piece in body:
                conn.send(piece)
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):
            # The handler may have refused early and closed: its task says why.
            pass
        finally:
            conn.close()

    def _task_result(self, task: str) -> str:
        deadline = time.monotonic() + TASK_SETTLE_TIMEOUT
        while True:
            rec = self.call("task.get_record", task)
            status = rec.get("status")
            if status == "success":
                return _decode(rec.get("result") or "")
            if status in ("failure", "cancelled"):
                info = [str(x) for x in rec.get("error_info") or ["INTERNAL_ERROR"]]
                raise XenAPIError(info[0], *info[1:])
            if time.monotonic() > deadline:
                raise XenAPIError("VM_MIGRATE_FAILED", "", "", "", "remote task did not finish")
            time.sleep(0.05)


def _decode(result: str) -> str:
    """A task's result is the XML-RPC encoding of the value (a ref here)."""
    text = result.strip()
    if not text.startswith("<value"):
        return text
    doc = f"<?xml version='1.0'?><methodResponse><params><param>{text}</param></params>" \
          "</methodResponse>"
    (value,), _ = xmlrpc.client.loads(doc)
    return str(value)


def json_body(doc: Any) -> tuple[list[bytes], int]:
    data = json.dumps(doc).encode()
    return [data], len(data)
