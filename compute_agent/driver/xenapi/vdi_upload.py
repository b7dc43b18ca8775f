"""Writing a local file into a VDI through dom0's ``PUT /import_raw_vdi``,
as a tracked task (TaskRunner.run_http): the bytes stream from the file in
bounded chunks, never whole in memory. The URL carries the session
reference, so it is never logged."""

from __future__ import annotations

import http.client
import logging
import os
import urllib.parse
from pathlib import Path

from compute_agent import exceptions
from compute_agent.driver.base import Operation
from compute_agent.driver.xenapi.session import SessionPool
from compute_agent.driver.xenapi.tasks import TaskRunner

LOG = logging.getLogger(__name__)
CHUNK = 1024 * 1024
HTTP_TIMEOUT = 60.0


def _connection(pool: SessionPool) -> http.client.HTTPConnection:
    url = urllib.parse.urlsplit(pool.url)
    if url.scheme == "https":
        return http.client.HTTPSConnection(url.hostname or "", url.port or 443,
                                           timeout=HTTP_TIMEOUT,
                                           context=pool.settings.tls.context())
    return http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=HTTP_TIMEOUT)


def upload_raw(pool: SessionPool, runner: TaskRunner, op: Operation, vdi: str,
               path: Path) -> None:
    """Write ``path`` into ``vdi`` (raw), waiting for dom0's task."""
    size = os.path.getsize(path)

    def transfer(task: str, session: str) -> None:
        query = urllib.parse.urlencode({"session_id": session, "vdi": vdi, "format": "raw",
                                        "task_id": task})
        conn = _connection(pool)
        try:
            conn.putrequest("PUT", f"/import_raw_vdi?{query}")
            conn.putheader("Content-Length", str(size))
            conn.putheader("Content-Type", "application/octet-stream")
            conn.endheaders()
            with open(path, "rb") as src:
                while chunk := src.read(CHUNK):
                    conn.send(chunk)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                # dom0 failed the task with the reason; the runner reports it
                LOG.info("import_raw_vdi answered HTTP %s", resp.status)
        except OSError as e:
            raise exceptions.HypervisorUnavailable(
                urllib.parse.urlsplit(pool.url).netloc, f"import_raw_vdi: {e}") from None
        finally:
            conn.close()

    runner.run_http(op, "compute-agent VDI import", transfer)
