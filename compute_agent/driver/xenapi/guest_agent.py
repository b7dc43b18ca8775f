"""The guest agent, reached through the dom0 plugin ``guest_agent``
(etc/xapi.d/plugins): admin password, file injection, network reset.

The protocol is the XenAPI guest agent's (see the plugin and
docs/guest-agent.md). The password is sent encrypted under a key agreed
with the guest by Diffie-Hellman (``key_init``): AES-128-CBC with key and
IV from OpenSSL's EVP_BytesToKey (MD5, no salt) of the shared secret,
base64, as the agents expect. The plain password exists only in this
process's memory; it is in no log, error or plugin argument.

Every plugin call is an ``Async.host.call_plugin`` task (tracked), bounded by
``[xenserver] agent_timeout`` in dom0 and a little more here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import uuid as uuidlib
from typing import Any

from compute_agent import exceptions
from compute_agent.driver.base import Operation
from compute_agent.driver.xenapi.session import SessionPool
from compute_agent.driver.xenapi.tasks import TaskRunner

LOG = logging.getLogger(__name__)

PLUGIN = "guest_agent"
DH_PRIME = 162259276829213363391578010288127
DH_BASE = 5
# dom0's timeout expires first; this margin covers the plugin's start-up.
CALL_MARGIN_S = 15.0


class GuestAgentTimeout(exceptions.ComputeAgentError):
    """params: instance uuid, command, seconds."""

    code = "GUEST_AGENT_TIMEOUT"
    msg_fmt = "The guest agent of instance {0} did not answer {1} within {2} s"


class GuestAgentError(exceptions.ComputeAgentError):
    """params: the agent's return code, its message."""

    code = "GUEST_AGENT_ERROR"
    msg_fmt = "The guest agent refused: {0} {1}"


def evp_key_iv(secret: str) -> tuple[bytes, bytes]:
    """OpenSSL's EVP_BytesToKey (MD5, one round, no salt): key, IV."""
    pw = secret.encode()
    d1 = hashlib.md5(pw).digest()
    d2 = hashlib.md5(d1 + pw).digest()
    return d1, d2


def encrypt(shared: int, text: str) -> str:
    # Imported here: most agents never set a password, and cryptography
    # costs ~1 MB (and its 5 MB library mapped) in every agent that loads it.
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key, iv = evp_key_iv(str(shared))
    padder = padding.PKCS7(128).padder()
    data = padder.update(text.encode()) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(enc.update(data) + enc.finalize()).decode()


class GuestAgent:
    def __init__(self, pool: SessionPool, runner: TaskRunner, timeout: float):
        self.pool = pool
        self.runner = runner
        self.timeout = timeout

    def _call(self, op: Operation, vm_rec: dict[str, Any], command: str,
              args: dict[str, str]) -> dict[str, str]:
        if vm_rec.get("power_state") != "Running":
            raise exceptions.InstanceInvalidState(op.instance_uuid, "power_state",
                                                  str(vm_rec.get("power_state")).lower(),
                                                  "running")
        request = {"dom_id": str(vm_rec["domid"]), "id": str(uuidlib.uuid4()),
                   "timeout": f"{self.timeout:g}", **args}
        try:
            out = self.runner.run(op, "host.call_plugin", vm_rec["resident_on"], PLUGIN,
                                  command, request, timeout=self.timeout + CALL_MARGIN_S)
        except exceptions.HypervisorError as e:
            if e.code == "AGENT_TIMEOUT":
                raise GuestAgentTimeout(op.instance_uuid, command, f"{self.timeout:g}") from None
            raise
        try:
            reply = json.loads(out)
            return {"returncode": str(reply["returncode"]), "message": str(reply["message"])}
        except (ValueError, KeyError, TypeError):
            raise GuestAgentError("", "unreadable reply") from None

    def _expect(self, reply: dict[str, str], success: str) -> str:
        if reply["returncode"] != success:
            raise GuestAgentError(reply["returncode"], reply["message"])
        return reply["message"]

    def set_password(self, op: Operation, vm_rec: dict[str, Any], password: str) -> None:
        private = secrets.randbelow(DH_PRIME - 2) + 1
        public = pow(DH_BASE, private, DH_PRIME)
        theirs = self._expect(self._call(op, vm_rec, "key_init", {"pub": str(public)}), "D0")
        try:
            shared = pow(int(theirs), private, DH_PRIME)
        except ValueError:
            raise GuestAgentError("D0", "bad public key from the guest") from None
        self._expect(self._call(op, vm_rec, "password",
                                {"enc_pass": encrypt(shared, password)}), "0")

    def inject_file(self, op: Operation, vm_rec: dict[str, Any], path: str,
                    contents: bytes) -> None:
        args = {"b64_path": base64.b64encode(path.encode()).decode(),
                "b64_contents": base64.b64encode(contents).decode()}
        self._expect(self._call(op, vm_rec, "inject_file", args), "0")

    def reset_network(self, op: Operation, vm_rec: dict[str, Any],
                      interfaces: list[dict[str, Any]]) -> None:
        """Write each interface's settings to vm-data/networking, then ask
        the agent to re-read them."""
        for iface in interfaces:
            args = {"dom_id": str(vm_rec["domid"]), "mac": iface["mac"],
                    "value": json.dumps(iface, sort_keys=True)}
            self.runner.run(op, "host.call_plugin", vm_rec["resident_on"], PLUGIN,
                            "write_networking", args)
        self._expect(self._call(op, vm_rec, "resetnetwork", {}), "0")
