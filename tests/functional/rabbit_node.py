"""A RabbitMQ node of a test's own: ``rabbitmq-server`` on free ports with
its node name, database, logs, configuration and plugins in a temporary
directory, so a test can stop and restart its broker without touching the
machine's shared one (which keeps 5672, its node name and its files).

The Debian package's ``rabbitmq-server`` runs as root here (CI runs as
root); its scripts are called directly, not through the wrapper that
switches to the ``rabbitmq`` user.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid as uuidlib
from pathlib import Path

from tests.functional.harness import free_port, kill_group, tail

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
BOOT_LIMIT_S = 90.0  # a bound for the node to boot on a loaded machine


class RabbitNode:
    def __init__(self, workdir: Path):
        self.dir = workdir / "rabbit"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = f"ca-test-{uuidlib.uuid4().hex[:8]}@localhost"
        self.port = free_port()
        self.url = f"rabbit://guest:guest@127.0.0.1:{self.port}/"
        self.log = self.dir / "node.log"
        (self.dir / "enabled_plugins").write_text("[].\n")  # no management listener
        (self.dir / "env.conf").write_text("")  # not /etc/rabbitmq/rabbitmq-env.conf
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
            "loopback_users.guest = true\n")
        self.proc: subprocess.Popen | None = None

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_LOGS": "-",
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
            "HOME": str(self.dir),  # its own Erlang cookie
        })
        return env

    def start(self) -> RabbitNode:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([str(SERVER)], env=self._env(), stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + BOOT_LIMIT_S
        while not self._accepts():
            if self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: {tail(self.log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"rabbitmq-server did not boot: {tail(self.log)}")
            time.sleep(0.2)
        return self

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM: the node shuts down (its port refuses connections)."""
        if self.proc is not None and self.proc.poll() is None:
            kill_group(self.proc, signal.SIGTERM, wait=30)
        self.proc = None
