"""The real OpenStack Glance as a test fixture.

:class:`GlanceProcess` runs Glance's WSGI app (``glance.wsgi.api:application``)
under gunicorn from the project's own Glance virtualenv (``.glance-venv``,
built by ``make glance-venv``; ``CA_GLANCE_VENV`` names another), on a free
port, with SQLite and the file store in the test's directory and the
paste pipeline that needs no Keystone (``unauthenticated-context``).

It counts requests from gunicorn's access log (``downloads(image_id)``),
uploads images through the plain v2 API, and can be killed at any moment
(``kill()``: SIGKILL of its process group, as a store that dies mid-stream).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.functional.agent_stack import AgentStack
from tests.functional.harness import START_LIMIT_S, free_port, kill_group, tail, wait_until

REPO = Path(__file__).resolve().parents[2]
# Counting requests in the access log: quiet for this long means settled.
LOG_QUIET_S = 0.5
LOG_SETTLE_S = 5.0


def glance_venv() -> Path:
    """The Glance virtualenv; the test fails (it is never skipped) when
    it has not been built."""
    venv = Path(os.environ.get("CA_GLANCE_VENV") or REPO / ".glance-venv")
    if not (venv / "bin" / "gunicorn").exists() or not (venv / "bin" / "glance-manage").exists():
        pytest.fail(f"no Glance virtualenv at {venv}: run 'make glance-venv' first")
    return venv


GLANCE_CONF = """\
[DEFAULT]
node_staging_uri = file://{staging}
enabled_import_methods = []
hashing_algorithm = {hashing}
workers = 1
[database]
connection = sqlite:///{db}
[glance_store]
stores = file
default_store = file
filesystem_store_datadir = {data}
[oslo_concurrency]
lock_path = {locks}
[oslo_policy]
enforce_scope = False
enforce_new_defaults = False
[paste_deploy]
flavor =
[image_format]
# Glance inspects uploads and refuses one whose content does not look like
# its disk_format; random test data sometimes looks like an MBR disk, and
# the tests also need images in formats they cannot cheaply build.
require_image_format_match = False
"""


class GlanceProcess:
    """Glance API on ``127.0.0.1:<free port>``; ``url`` is its endpoint."""

    def __init__(self, workdir: Path, hashing: str = "sha512"):
        self.venv = glance_venv()
        self.dir = workdir / f"glance-{free_port()}"
        self.conf_dir = self.dir / "etc"
        self.access_log = self.dir / "access.log"
        self.error_log = self.dir / "gunicorn.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        for sub in ("etc", "data", "staging", "locks"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "glance-api.conf").write_text(GLANCE_CONF.format(
            staging=self.dir / "staging", hashing=hashing, db=self.dir / "glance.sqlite",
            data=self.dir / "data", locks=self.dir / "locks"))
        shutil.copy(self.venv / "etc" / "glance" / "glance-api-paste.ini", self.conf_dir)
        self._env = dict(os.environ, OS_GLANCE_CONFIG_DIR=str(self.conf_dir))
        self._env.pop("PYTHONPATH", None)  # Glance's venv, not the agent's code
        done = subprocess.run(
            [str(self.venv / "bin" / "glance-manage"), "--config-file",
             str(self.conf_dir / "glance-api.conf"), "db_sync"],
            capture_output=True, text=True, env=self._env, timeout=120)
        assert done.returncode == 0, f"glance-manage db_sync: {done.stderr[-2000:]}"

    def start(self) -> GlanceProcess:
        with open(self.error_log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.venv / "bin" / "gunicorn"), "-w", "1", "--threads", "8",
                 "-b", f"127.0.0.1:{self.port}", "--timeout", "300",
                 "--access-logfile", str(self.access_log),
                 "--access-logformat", '%(m)s %(U)s %(s)s',
                 "glance.wsgi.api:application"],
                stdout=log, stderr=subprocess.STDOUT, env=self._env, cwd=self.dir,
                start_new_session=True)
        wait_until(self._up, START_LIMIT_S, "Glance to serve", 0.1)
        return self

    def _up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"gunicorn exited {self.proc.returncode}: {tail(self.error_log)}")
        try:
            with urllib.request.urlopen(f"{self.url}/v2/images", timeout=2) as r:
                return r.status == 200
        except (OSError, urllib.error.HTTPError):
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            kill_group(self.proc, signal.SIGTERM, wait=10)

    def restart(self) -> None:
        """Start again after stop() or kill(): same port, same images."""
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL: Glance dies mid-whatever it was doing."""
        if self.proc is not None:
            kill_group(self.proc)

    # -- what Glance saw ---------------------------------------------------------------
    def requests(self) -> list[tuple[str, str, str]]:
        """(method, path, status) of every request answered so far."""
        try:
            lines = self.access_log.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [tuple(line.split(" ", 2)) for line in lines if line.count(" ") >= 2]

    def downloads(self, image_id: str) -> int:
        """How many times the image's data was asked for. gunicorn writes a
        request's line after the response went out, so a client may hold
        every byte before the line exists: the count is read until it has
        not changed for LOG_QUIET_S (at most LOG_SETTLE_S)."""
        # gunicorn logs the path Glance's version negotiation rewrote (no /v2)
        path = f"/images/{image_id}/file"

        def count() -> int:
            return sum(1 for m, p, _ in self.requests() if m == "GET" and p.endswith(path))

        seen, quiet_since = count(), time.monotonic()
        give_up = quiet_since + LOG_SETTLE_S
        while time.monotonic() - quiet_since < LOG_QUIET_S and time.monotonic() < give_up:
            time.sleep(0.05)
            now = count()
            if now != seen:
                seen, quiet_since = now, time.monotonic()
        return seen

    # -- plain v2 API, for test set-up --------------------------------------------------
    def api(self, method: str, path: str, body: Any = None, data: bytes | None = None,
            content_type: str = "application/json") -> Any:
        if body is not None:
            data = json.dumps(body).encode()
        if method == "PATCH":
            content_type = "application/openstack-images-v2.1-json-patch"
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                     headers={"Content-Type": content_type})
        with urllib.request.urlopen(req, timeout=60) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def create_image(self, data: bytes | Path, disk_format: str = "raw", name: str = "test",
                     **extra: Any) -> dict:
        """An active image holding ``data`` (bytes, or a file streamed)."""
        image = self.api("POST", "/v2/images", {"name": name, "disk_format": disk_format,
                                                "container_format": "bare", **extra})
        if isinstance(data, Path):
            with open(data, "rb") as f:
                req = urllib.request.Request(
                    f"{self.url}/v2/images/{image['id']}/file", data=f, method="PUT",
                    headers={"Content-Type": "application/octet-stream",
                             "Content-Length": str(data.stat().st_size)})
                urllib.request.urlopen(req, timeout=600).close()
        else:
            self.api("PUT", f"/v2/images/{image['id']}/file", data=data,
                     content_type="application/octet-stream")
        return self.api("GET", f"/v2/images/{image['id']}")

    def image(self, image_id: str) -> dict | None:
        try:
            return self.api("GET", f"/v2/images/{image_id}")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def images(self) -> list[dict]:
        return self.api("GET", "/v2/images?limit=1000")["images"]

    def image_data(self, image_id: str) -> bytes:
        with urllib.request.urlopen(f"{self.url}/v2/images/{image_id}/file", timeout=60) as r:
            return r.read()

    def corrupt(self, image_id: str) -> None:
        """Flip a byte of the stored file: Glance's record (size, checksums)
        no longer matches what it serves."""
        path = self.dir / "data" / image_id
        with open(path, "r+b") as f:
            first = f.read(1)
            f.seek(0)
            f.write(bytes([first[0] ^ 0xFF]))


def sha512(data: bytes) -> str:
    return hashlib.sha512(data).hexdigest()


@pytest.fixture(scope="session")
def glance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GlanceProcess]:
    """One real Glance for a test session (tests that kill it restart it)."""
    with running_glance(tmp_path_factory.mktemp("glance")) as g:
        yield g


@contextlib.contextmanager
def running_glance(workdir: Path, **kwargs: Any) -> Iterator[GlanceProcess]:
    glance = GlanceProcess(workdir, **kwargs).start()
    try:
        yield glance
    finally:
        glance.stop()


@contextlib.contextmanager
def glance_agent(workdir: Path, glance: GlanceProcess, name: str,
                 options: dict[str, dict[str, Any]] | None = None) -> Iterator[AgentStack]:
    """The agent stack (agent_stack.py) on SQLite, serving RPC on its own
    exchange (``ca_<name>``) and reading images from ``glance``, started;
    stopped after."""
    with AgentStack(workdir, name, task_duration=0.05,
                    options={"glance": {"auth_type": "none", "endpoint_override": glance.url},
                             **(options or {})}) as stack:
        yield stack.start()
