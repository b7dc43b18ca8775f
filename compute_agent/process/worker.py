"""Keeping the launcher process light.

The daemon runs as two processes: oslo.service's launcher (cotyledon's
master, which handles signals and re-forks the worker after a crash or a
SIGHUP) and the worker it forks, which does all the work. Whatever the
master has imported before the fork is shared with the worker only until
either writes to it (a reference count, the garbage collector's
bookkeeping), after which both pay for their copy; so the master imports
nothing it does not need itself:

- :class:`DeferredService` is what the launcher is given: it imports and
  builds the real service in the worker, when the launcher starts it there.
- :func:`run_in_child` runs a check that needs heavy imports (the database
  schema check needs SQLAlchemy and a database driver) in a short-lived
  child, so the master never imports them.
- :func:`freeze_before_fork` moves what the master did import out of the
  garbage collector's reach, so the worker's collections do not un-share it.
"""

from __future__ import annotations

import gc
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from oslo_service.backend.base import ServiceBase


class DeferredService(ServiceBase):
    """A service built by ``factory()`` on its first ``start`` in the
    process that runs it; ``stop``, ``wait`` and ``reset`` go to it."""

    def __init__(self, factory: Callable[[], Any]):
        super().__init__()
        self._factory = factory
        self.service: Any = None

    def start(self) -> None:
        if self.service is None:
            self.service = self._factory()
        self.service.start()

    def stop(self, graceful: bool = False) -> None:
        if self.service is not None:
            self.service.stop(graceful)

    def wait(self) -> None:
        if self.service is not None:
            self.service.wait()

    def reset(self) -> None:
        if self.service is not None:
            self.service.reset()


def run_in_child(fn: Callable[[], int]) -> int:
    """Run ``fn`` in a forked child and return its exit status: what ``fn``
    returns, 1 if it raised (the traceback goes to stderr). What ``fn``
    imports stays in the child. Call before any thread is started."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never return into the caller's code
        status = 1
        try:
            status = int(fn())
        except BaseException:  # noqa: BLE001 - reported, then the child ends
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status)


def freeze_before_fork() -> None:
    """Collect garbage, then move every object left to the collector's
    permanent generation (never examined again, in this process or its
    forks). Call right before the launcher forks."""
    gc.collect()
    gc.freeze()
