"""Keeping the launcher light (process/worker.py): a check in a forked child,
the service built where it runs, the collector's objects frozen before a
fork. Real forks and subprocesses, no mocks."""

from __future__ import annotations

import gc
import subprocess
import sys

from compute_agent.process import worker


def test_run_in_child_returns_the_childs_status_and_keeps_its_imports():
    code = (
        "import sys\n"
        "from compute_agent.process import worker\n"
        "def check():\n"
        "    import xml.dom.minidom\n"
        "    return 3 if 'xml.dom.minidom' in sys.modules else 9\n"
        "status = worker.run_in_child(check)\n"
        "print(status, 'xml.dom.minidom' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == ["3", "False"]


def test_run_in_child_reports_an_exception_as_status_1(capfd):
    def broken() -> int:
        raise RuntimeError("no database here")

    assert worker.run_in_child(broken) == 1
    assert "RuntimeError: no database here" in capfd.readouterr().err


def test_run_in_child_returns_0_for_a_passing_check():
    assert worker.run_in_child(lambda: 0) == 0


class Recorder:
    def __init__(self, calls: list[str]):
        self.calls = calls

    def start(self) -> None:
        self.calls.append("start")

    def stop(self, graceful: bool = False) -> None:
        self.calls.append(f"stop graceful={graceful}")

    def wait(self) -> None:
        self.calls.append("wait")

    def reset(self) -> None:
        self.calls.append("reset")


def test_deferred_service_builds_on_first_start_only():
    calls: list[str] = []

    def build() -> Recorder:
        calls.append("build")
        return Recorder(calls)

    svc = worker.DeferredService(build)
    svc.stop(True)  # stopped before it ever started: nothing to stop
    svc.wait()
    svc.reset()
    assert calls == [] and svc.service is None
    svc.start()
    svc.wait()
    svc.reset()
    svc.stop(True)
    svc.start()
    assert calls == ["build", "start", "wait", "reset", "stop graceful=True", "start"]


def test_freeze_before_fork_moves_objects_out_of_the_collectors_reach():
    try:
        worker.freeze_before_fork()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
