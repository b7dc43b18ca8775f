"""Can the agent log in to dom0 with its configured URL, credentials and TLS?"""

from __future__ import annotations

import ipaddress
import urllib.parse

from compute_agent import exceptions
from compute_agent.checks import Result, failure, success, warning
from compute_agent.driver.xenapi.errors import redact_url
from compute_agent.driver.xenapi.session import (
    ConnectionSettings,
    Coordinator,
    XenAPISession,
)
from compute_agent.driver.xenapi.transport import TLSSettings

NAME = "dom0"
ORIGINATOR = "compute-agent-status"


def check(xenserver, compute_driver: str, timeout: float) -> Result:
    """``xenserver`` is the ``[xenserver]`` option group."""
    if compute_driver != "xenapi":
        return success(NAME, f"not used: compute_driver = {compute_driver}")
    url = xenserver.connection_url
    if not url:
        return failure(NAME, "[xenserver] connection_url is not set")
    shown = redact_url(url)
    settings = ConnectionSettings(
        url=url,
        username=xenserver.connection_username,
        password=xenserver.connection_password or "",
        login_timeout=timeout,
        call_timeout=timeout,
        tls=TLSSettings(ca_file=xenserver.ca_file or None, insecure=xenserver.insecure),
        originator=ORIGINATOR,
    )
    session = XenAPISession(settings, Coordinator(url))
    try:
        session.login()
    except exceptions.HypervisorUnavailable as exc:
        reason = exc.params[1] if len(exc.params) > 1 else exc.message
        hint = ""
        if "certificate" in reason.lower():
            hint = "; set [xenserver] ca_file to the pool's CA or certificate (docs/install.md)"
        return failure(NAME, f"{shown} is unreachable: {reason}{hint}")
    except exceptions.HypervisorError as exc:
        if exc.code == "SESSION_AUTHENTICATION_FAILED":
            return failure(NAME, f"{shown} rejected user {settings.username}: check "
                                 "[xenserver] connection_username and connection_password")
        return failure(NAME, f"{shown} refused the login: {exc.code} {exc.params}")
    try:
        product = _product(session)
    finally:
        session.logout()

    where = f"{shown} ({product})" if product else shown
    notes = _warnings(url, xenserver.insecure)
    if session.url != url:
        notes.append(f"it is a pool member; the coordinator is {redact_url(session.url)}, "
                     "point connection_url there")
    if notes:
        return warning(NAME, f"logged in to {where} as {settings.username}, but "
                             + "; ".join(notes))
    return success(NAME, f"logged in to {where} as {settings.username}")


def _product(session: XenAPISession) -> str:
    """'XCP-ng 8.3.0' or similar; empty when dom0 does not say."""
    try:
        pool = session.call("pool.get_all")[0]
        coordinator = session.call("pool.get_master", pool)
        version = session.call("host.get_software_version", coordinator)
    except (exceptions.ComputeAgentError, IndexError, TypeError):
        return ""
    brand = version.get("product_brand") or version.get("platform_name") or ""
    number = version.get("product_version") or version.get("platform_version") or ""
    return f"{brand} {number}".strip()


def _warnings(url: str, insecure: bool) -> list[str]:
    parts = urllib.parse.urlsplit(url)
    notes = []
    if parts.scheme == "https" and insecure:
        notes.append("TLS certificate checks are off ([xenserver] insecure = true)")
    if parts.scheme == "http" and not _host_local(parts.hostname or ""):
        notes.append("plain HTTP sends the dom0 password unencrypted; use https")
    return notes


def _host_local(host: str) -> bool:
    """Loopback or link-local (169.254.0.1 is xapi on the host-internal network)."""
    if host == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return addr.is_loopback or addr.is_link_local
