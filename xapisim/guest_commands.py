"""The simulated guest agent's command channel, over the domain's xenstore.

The protocol is the one the XenAPI guest agent (nova's "agent" plugin and
the Linux/Windows agents) speaks: the host writes a JSON request
``{"name": ..., "value": ...}`` to ``/local/domain/<domid>/data/host/<id>``;
the agent answers with ``{"returncode": ..., "message": ...}`` at
``.../data/guest/<id>`` and removes the request. Commands:

- ``version``: returncode "0", message the agent's version.
- ``key_init``: value is the host's Diffie-Hellman public number (prime
  162259276829213363391578010288127, generator 5); the reply is "D0" with
  the agent's public number. Both sides then hold the shared secret.
- ``password``: value is the new password encrypted with AES-128-CBC under
  the shared secret (key and IV from OpenSSL's EVP_BytesToKey, MD5, no
  salt), base64: the password itself never crosses xenstore. Needs a
  key_init first (else returncode "500").
- ``file_inject``: value ``{b64_path, b64_contents}``.
- ``resetnetwork``: the agent re-reads ``vm-data/networking/*`` (one JSON
  document per interface, keyed by MAC without colons).

How each VM's agent behaves is set through the control API (``POST
/_sim/guest_agent``): ``present`` (default), ``absent`` (never answers),
``slow`` (answers after ``delay`` seconds) or ``failing`` (answers every
command but key_init with ``error`` = [returncode, message]). What the
guest ended up with (password, files, network) is readable with ``POST
/_sim/guest_agent/inspect`` for tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

if TYPE_CHECKING:
    from xapisim.xenstore import HostXenstore

DH_PRIME = 162259276829213363391578010288127
DH_BASE = 5
AGENT_VERSION = "1.0.0"
MODES = ("present", "absent", "slow", "failing")


@dataclass
class Behaviour:
    mode: str = "present"
    delay: float = 0.0
    error: tuple[str, str] = ("500", "simulated agent failure")


@dataclass
class GuestState:
    """What the guest holds: for tests' inspection, never logged."""

    password: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    network: dict[str, Any] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    shared: int | None = field(default=None, repr=False)


def evp_key_iv(secret: str) -> tuple[bytes, bytes]:
    """OpenSSL's EVP_BytesToKey with MD5, one round, no salt: key, IV."""
    pw = secret.encode()
    d1 = hashlib.md5(pw).digest()
    d2 = hashlib.md5(d1 + pw).digest()
    return d1, d2


def decrypt(shared: int, text: str) -> str:
    key, iv = evp_key_iv(str(shared))
    raw = base64.b64decode("".join(text.split()), validate=True)
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = dec.update(raw) + dec.finalize()
    unpad = padding.PKCS7(128).unpadder()
    return (unpad.update(padded) + unpad.finalize()).decode()


class GuestAgents:
    """The agents of every running domain, with their behaviour settings."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._behaviour: dict[str, Behaviour] = {}  # VM uuid or "*" -> behaviour
        self._guests: dict[str, GuestState] = {}  # VM uuid -> state

    # -- control API ------------------------------------------------------------------
    def configure(self, vm_uuid: str, mode: str, delay: float = 0.0,
                  error: tuple[str, str] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        with self._lock:
            self._behaviour[vm_uuid or "*"] = Behaviour(
                mode, max(0.0, delay), error or ("500", "simulated agent failure"))

    def inspect(self, vm_uuid: str) -> dict[str, Any]:
        with self._lock:
            g = self._guests.get(vm_uuid) or GuestState()
            return {"password": g.password, "files": dict(g.files),
                    "network": dict(g.network), "commands": list(g.commands)}

    def reset(self) -> None:
        with self._lock:
            self._behaviour.clear()

    def _behaviour_of(self, vm_uuid: str) -> Behaviour:
        with self._lock:
            return self._behaviour.get(vm_uuid) or self._behaviour.get("*") or Behaviour()

    # -- domains --------------------------------------------------------------------------
    def domain_started(self, xs: HostXenstore, vm_uuid: str, domid: int) -> None:
        """The agent of a new domain starts watching for requests (the
        shared key does not survive the domain)."""
        with self._lock:
            self._guests.setdefault(vm_uuid, GuestState()).shared = None
        base = f"/local/domain/{domid}"
        xs.watch(f"{base}/data/host",
                 lambda path, value: self._on_request(xs, vm_uuid, base, path, value))

    def _on_request(self, xs: HostXenstore, vm_uuid: str, base: str, path: str,
                    value: str) -> None:
        request_id = path.rsplit("/", 1)[-1]
        behaviour = self._behaviour_of(vm_uuid)
        if behaviour.mode == "absent":
            return
        delay = behaviour.delay if behaviour.mode == "slow" else 0.0

        def answer() -> None:
            reply = self._handle(xs, vm_uuid, base, value, behaviour)
            try:
                xs.rm(path)
            except Exception:
                pass  # the host gave up and removed it
            xs.write(f"{base}/data/guest/{request_id}", json.dumps(reply))

        t = threading.Timer(delay, answer) if delay > 0 else threading.Thread(target=answer)
        t.daemon = True
        t.start()

    def _handle(self, xs: HostXenstore, vm_uuid: str, base: str, text: str,
                behaviour: Behaviour) -> dict[str, str]:
        try:
            request = json.loads(text)
            name, value = request["name"], request.get("value", "")
        except (ValueError, KeyError, TypeError):
            return {"returncode": "500", "message": "bad request"}
        with self._lock:
            guest = self._guests.setdefault(vm_uuid, GuestState())
            guest.commands.append(str(name))
        if name == "key_init":
            return self._key_init(guest, value)
        if behaviour.mode == "failing":
            return {"returncode": behaviour.error[0], "message": behaviour.error[1]}
        if name == "version":
            return {"returncode": "0", "message": AGENT_VERSION}
        if name == "password":
            if guest.shared is None:
                return {"returncode": "500", "message": "key_init first"}
            try:
                password = decrypt(guest.shared, str(value))
            except (ValueError, binascii.Error, UnicodeDecodeError):
                return {"returncode": "500", "message": "cannot decrypt the password"}
            with self._lock:
                guest.password = password
            return {"returncode": "0", "message": ""}
        if name == "file_inject":
            try:
                file_path = base64.b64decode(value["b64_path"], validate=True).decode()
                contents = base64.b64decode(value["b64_contents"], validate=True).decode(
                    "utf-8", "replace")
            except (KeyError, TypeError, ValueError, binascii.Error):
                return {"returncode": "500", "message": "bad file_inject request"}
            with self._lock:
                guest.files[file_path] = contents
            return {"returncode": "0", "message": ""}
        if name == "resetnetwork":
            network: dict[str, Any] = {}
            root = f"{base}/vm-data/networking"
            if xs.exists(root):
                for key in xs.ls(root):
                    try:
                        network[key] = json.loads(xs.read(f"{root}/{key}"))
                    except ValueError:
                        network[key] = xs.read(f"{root}/{key}")
            with self._lock:
                guest.network = network
            return {"returncode": "0", "message": ""}
        return {"returncode": "404", "message": f"unknown command {name}"}

    def _key_init(self, guest: GuestState, value: Any) -> dict[str, str]:
        try:
            host_public = int(str(value))
        except ValueError:
            return {"returncode": "500", "message": "bad public key"}
        private = secrets.randbelow(DH_PRIME - 2) + 1
        public = pow(DH_BASE, private, DH_PRIME)
        with self._lock:
            guest.shared = pow(host_public, private, DH_PRIME)
        return {"returncode": "D0", "message": str(public)}
