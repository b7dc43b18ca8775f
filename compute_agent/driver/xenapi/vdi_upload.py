"""Writing a local file into a VDI through dom0's ``PUT /import_raw_vdi``
as a tracked task, with the image import's transfer path
(transfer_tasks.run_transfer, http_transfer.put_stream): the bytes stream
from the file in bounded chunks, never whole in memory, and the URL that
carries the session reference is never logged."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from compute_agent.driver.base import Operation
from compute_agent.driver.xenapi.http_transfer import put_stream
from compute_agent.driver.xenapi.session import SessionPool
from compute_agent.driver.xenapi.tasks import TaskRunner
from compute_agent.driver.xenapi.transfer_tasks import run_transfer

CHUNK = 1024 * 1024


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as src:
        while chunk := src.read(CHUNK):
            yield chunk


def upload_raw(pool: SessionPool, runner: TaskRunner, op: Operation, vdi: str,
               path: Path, label: str = "compute-agent VDI import") -> None:
    """Write ``path`` into ``vdi`` (raw), waiting for dom0's task."""
    size = os.path.getsize(path)

    def work(task_ref: str) -> int:
        with pool.session() as sess:
            query = {"session_id": sess.handle(), "vdi": vdi, "format": "raw",
                     "task_id": task_ref}
            return put_stream(sess.url, pool.settings.tls, "/import_raw_vdi", query,
                              _chunks(path), size)

    run_transfer(runner, op, label, work)
