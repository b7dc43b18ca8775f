"""Running dom0 host plugins with xapi's calling convention.

xapi runs ``/etc/xapi.d/plugins/<plugin>`` with one argument, the XML-RPC
methodCall ``fn(session_ref, {args})``, and reads an XML-RPC methodResponse
from its stdout. The simulator does the same with the files in
``sim.plugins_dir`` (run with this Python, whatever their shebang), in a
scratch dom0 root per host, ``<state_dir>/dom0root/<host uuid>/``, which
holds an ``etc/xensource-inventory`` like a real dom0's.

The plugin's environment: ``XAPISIM_DOM0_ROOT`` (that root; plugins meant
to run under the simulator join their dom0 paths to it, "/" on a real
dom0), ``XAPISIM_URL`` (the coordinator's URL: a dom0's local xapi
forwards API calls there), ``XAPISIM_XAPI_SOCKET`` (the host's local xapi
socket, ``var/lib/xcp/xapi`` in that root, which XenAPIPlugin's
``xapi_local()`` uses), ``XAPISIM_HOST_URL``, ``XAPISIM_HOST_UUID``,
``SSL_CERT_FILE`` under TLS, and ``PYTHONPATH`` starting with
xapisim/dom0lib (``import XenAPIPlugin``; ``import XenAPI`` is the
official SDK installed with the simulator).

Outcomes, as xapi maps them:
- missing plugin                    -> XENAPI_MISSING_PLUGIN [name]
- non-zero exit                     -> XENAPI_PLUGIN_FAILURE ["non-zero exit", stdout, stderr]
- a call no process can receive     -> XENAPI_PLUGIN_FAILURE ["non-zero exit", "", reason]
  (an argument past the kernel's limit: xapi's forkexecd child fails exec)
- killed (timeout, cancel)          -> XENAPI_PLUGIN_FAILURE ["signal: SIGKILL", stdout, stderr]
- output that is not a response     -> XENAPI_PLUGIN_FAILURE ["failed to parse plugin output",
                                       stdout, reason]
- an XML-RPC fault                  -> XENAPI_PLUGIN_FAILURE ["fault", code, reason]
- {Status: Failure, ErrorDescription: [code, params...]} -> that error, unchanged
- {Status: Success, Value: string}  -> the string
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading
import xmlrpc.client
from typing import TYPE_CHECKING

from xapisim.errors import XenAPIError

if TYPE_CHECKING:
    from xapisim.services import SimServices

DOM0LIB = pathlib.Path(__file__).resolve().parent / "dom0lib"
# xapi's Unix socket, relative to a dom0's root
LOCAL_SOCKET = pathlib.Path("var/lib/xcp/xapi")
# xapi has no limit; a test suite needs one
PLUGIN_TIMEOUT = 300.0


def dom0_root(sim: SimServices, host: str, create: bool = True) -> pathlib.Path:
    """The scratch root directory of ``host``'s simulated dom0."""
    store = sim.store
    with store.lock:
        rec = store.raw("host", host)
        uuid = rec["uuid"]
        dom0 = rec["control_domain"]
        dom0_uuid = store.raw("VM", dom0)["uuid"] if store.has("VM", dom0) else ""
    root = pathlib.Path(sim.state_dir) / "dom0root" / uuid
    if create:
        inventory = root / "etc" / "xensource-inventory"
        if not inventory.exists():
            inventory.parent.mkdir(parents=True, exist_ok=True)
            inventory.write_text(
                f"INSTALLATION_UUID='{uuid}'\nCONTROL_DOMAIN_UUID='{dom0_uuid}'\n"
                "MANAGEMENT_INTERFACE='xenbr0'\nBUILD_NUMBER='xapi-sim'\n"
            )
    return root


def find(sim: SimServices, name: str) -> pathlib.Path:
    """The plugin file called ``name``: only an entry of the plugins
    directory itself, as xapi checks (no paths, no ``..``)."""
    try:
        entries = os.listdir(sim.plugins_dir)
    except OSError:
        entries = []
    if name not in entries or not (pathlib.Path(sim.plugins_dir) / name).is_file():
        raise XenAPIError("XENAPI_MISSING_PLUGIN", name)
    return pathlib.Path(sim.plugins_dir) / name


def environment(sim: SimServices, host: str, root: pathlib.Path) -> dict[str, str]:
    env = dict(os.environ)
    path = [str(DOM0LIB)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env.update({
        "PYTHONPATH": os.pathsep.join(path),
        "XAPISIM_DOM0_ROOT": str(root),
        "XAPISIM_URL": sim.master_url,
        "XAPISIM_HOST_URL": f"{sim.scheme}://{sim.host_address(host)}:{sim.port}",
        "XAPISIM_HOST_UUID": sim.store.field("host", host, "uuid"),
        "XAPISIM_XAPI_SOCKET": str(root / LOCAL_SOCKET),
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    if sim.tls and sim.ca_file:
        env["SSL_CERT_FILE"] = str(sim.ca_file)
    return env


def call(sim: SimServices, host: str, session_ref: str, plugin: str, fn: str,
         args: dict[str, str], cancel: threading.Event | None = None,
         timeout: float | None = None) -> str:
    """Run ``plugin``'s ``fn`` on ``host`` and return its string result.
    ``cancel`` set while it runs kills it (TASK_CANCELLED is the caller's
    business)."""
    path = find(sim, plugin)
    root = dom0_root(sim, host)
    request = xmlrpc.client.dumps((session_ref, dict(args)), fn)
    try:
        proc = subprocess.Popen(
            [sys.executable, str(path), request],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=root, env=environment(sim, host, root), start_new_session=True,
        )
    except (ValueError, OSError) as e:
        # The call cannot become a process (a NUL byte in it, an argument
        # past the kernel's limit): xapi's forkexecd child fails its exec
        # and exits non-zero, which xapi reports as below.
        raise XenAPIError("XENAPI_PLUGIN_FAILURE", "non-zero exit", "",
                          f"cannot start plugin {plugin}: {_exec_failure(e)}") from None
    out, err, killed = _wait(proc, cancel, PLUGIN_TIMEOUT if timeout is None else timeout)
    stdout = out.decode("utf-8", "replace")
    stderr = err.decode("utf-8", "replace")
    if killed is not None:
        raise XenAPIError("XENAPI_PLUGIN_FAILURE", f"signal: {killed}", stdout, stderr)
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise XenAPIError("XENAPI_PLUGIN_FAILURE", f"signal: {name}", stdout, stderr)
    if proc.returncode != 0:
        raise XenAPIError("XENAPI_PLUGIN_FAILURE", "non-zero exit", stdout, stderr)
    return parse_response(stdout)


def _exec_failure(e: Exception) -> str:
    """Why exec failed, without the arguments (they may hold secrets)."""
    if isinstance(e, OSError) and e.errno is not None:
        return os.strerror(e.errno)
    return "an argument contains a NUL byte" if "null" in str(e) else type(e).__name__


def _wait(proc: subprocess.Popen, cancel: threading.Event | None,
          timeout: float) -> tuple[bytes, bytes, str | None]:
    """Collect the output, killing the plugin (its whole process group) if
    it outlives ``timeout`` or ``cancel`` is set. Returns (out, err,
    the signal's name if we killed it)."""
    waited = 0.0
    step = 0.1
    while True:
        try:
            out, err = proc.communicate(timeout=step)
            return out, err, None
        except subprocess.TimeoutExpired:
            waited += step
            if waited >= timeout or (cancel is not None and cancel.is_set()):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                out, err = proc.communicate()
                return out, err, "SIGKILL"


def parse_response(output: str) -> str:
    try:
        params, _ = xmlrpc.client.loads(output)
    except xmlrpc.client.Fault as f:
        raise XenAPIError("XENAPI_PLUGIN_FAILURE", "fault", str(f.faultCode),
                          f.faultString) from None
    except Exception as e:  # expat errors, ValueError, ...: not a methodResponse
        raise XenAPIError("XENAPI_PLUGIN_FAILURE", "failed to parse plugin output", output,
                          str(e)) from None
    envelope = params[0] if len(params) == 1 else None
    if isinstance(envelope, dict) and envelope.get("Status") == "Success":
        value = envelope.get("Value")
        if isinstance(value, str):
            return value
        raise XenAPIError("XENAPI_PLUGIN_FAILURE", "failed to parse plugin output", output,
                          "the result is not a string")
    if isinstance(envelope, dict) and envelope.get("Status") == "Failure":
        desc = envelope.get("ErrorDescription")
        if isinstance(desc, list) and desc and all(isinstance(d, str) for d in desc):
            raise XenAPIError(desc[0], *desc[1:])
    raise XenAPIError("XENAPI_PLUGIN_FAILURE", "unexpected XMLRPC result", output, "")
