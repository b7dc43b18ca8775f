"""Helpers shared by the XenAPI driver's functional tests (a module of its
own, not conftest, so that test modules can import it by a unique name)."""

from __future__ import annotations

import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

import XenAPI

from compute_agent.driver.base import Operation

USER = "root"
PASSWORD = "password"


class RecordingListener:
    """A TaskListener that remembers every call, in order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def _add(self, name: str, *args: Any) -> None:
        with self.lock:
            self.calls.append((name, args))

    def task_intent(self, op, method):
        intent = f"intent:{method}:{len(self.calls)}"
        self._add("intent", op.name, intent, method)
        return intent

    def task_started(self, op, task_ref, task_uuid, dom0_host, intent=None):
        self._add("started", op.name, task_ref, task_uuid, dom0_host, intent)

    def task_uuid_known(self, op, task_ref, task_uuid):
        self._add("uuid", op.name, task_ref, task_uuid)

    def task_not_started(self, op, intent, error):
        self._add("not_started", op.name, intent, error)

    def task_progress(self, op, task_ref, progress):
        self._add("progress", op.name, task_ref, progress)

    def task_finished(self, op, task_ref, status, result, error):
        self._add("finished", op.name, task_ref, status, result, error)

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        with self.lock:
            return [args for name, args in self.calls if name == kind]


def make_instance(name: str | None = None, **flavor: int) -> dict[str, Any]:
    uuid = str(uuidlib.uuid4())
    return {
        "uuid": uuid,
        "name": name or f"inst-{uuid[:8]}",
        "flavor": {"vcpus": flavor.get("vcpus", 2), "memory_mb": flavor.get("memory_mb", 512),
                   "root_gb": flavor.get("root_gb", 5)},
        "image": {"id": None, "url": None, "disk_format": None},  # a blank root disk
        "networks": [],
        "metadata": {},
    }


def op_for(instance: dict[str, Any], name: str, timeout: float | None = None) -> Operation:
    return Operation(instance["uuid"], name, f"req-{uuidlib.uuid4()}", timeout)


def login(url: str, **kw: Any) -> XenAPI.Session:
    session = XenAPI.Session(url, **kw)
    session.xenapi.login_with_password(USER, PASSWORD, "2.0", "driver-tests")
    return session


def logout(session: XenAPI.Session) -> None:
    try:
        session.xenapi.session.logout()
    except Exception:  # xapi may have been restarted or stopped by the test
        pass




def wait_until(pred: Callable[[], Any], timeout: float = 5.0, step: float = 0.02) -> Any:
    """pred()'s first truthy value, polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


def no_tasks_left(xapi) -> None:
    """Finished tasks are destroyed in the background, soon after."""
    wait_until(lambda: xapi.xenapi.task.get_all() == [])
