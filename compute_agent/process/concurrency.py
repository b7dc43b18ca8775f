"""Choosing the concurrency backend before anything else is imported.

``[DEFAULT] concurrency_backend`` decides between native threads and
eventlet. Eventlet must monkey-patch the standard library before any module
that creates locks, threads or sockets is imported (oslo.messaging imports
oslo.service, which fixes its backend on import), so the option is read here
from the command line and the configuration files with nothing but the
standard library, ahead of oslo.config.
"""

from __future__ import annotations

import configparser
import glob
import os
import sys
import warnings
from collections.abc import Sequence

THREADING = "threading"
EVENTLET = "eventlet"
BACKENDS = (THREADING, EVENTLET)
PROJECT = "compute-agent"

_OPTION = "concurrency_backend"
_selected: str | None = None


def _default_config_files(project: str = PROJECT) -> list[str]:
    """The files oslo.config reads when no --config-file is given."""
    dirs = [os.path.expanduser(f"~/.{project}"), os.path.expanduser("~"),
            f"/etc/{project}", "/etc"]
    for directory in dirs:
        path = os.path.join(directory, f"{project}.conf")
        if os.path.exists(path):
            return [path]
    return []


def _scan_argv(argv: Sequence[str]) -> tuple[list[str], str | None]:
    """Config files/dirs in command line order, and the option's CLI value."""
    files: list[str] = []
    cli_value = None
    explicit_files = False
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if name in ("--config-file", "--config_file", "--config-dir", "--config_dir"):
            if not eq:
                i += 1
                value = args[i] if i < len(args) else ""
            if "dir" in name:
                files.extend(sorted(glob.glob(os.path.join(value, "*.conf"))))
            else:
                files.append(value)
                explicit_files = True
        elif name in (f"--{_OPTION}", f"--{_OPTION.replace('_', '-')}"):
            if not eq:
                i += 1
                value = args[i] if i < len(args) else ""
            cli_value = value
        i += 1
    if not explicit_files:
        files = _default_config_files() + files
    return files, cli_value


def backend_from_argv(argv: Sequence[str]) -> str:
    """The backend the command line and configuration files ask for
    (command line first, then the last file that sets it, else threading)."""
    files, cli_value = _scan_argv(argv)
    value = cli_value
    if value is None:
        for path in files:
            parser = configparser.RawConfigParser(strict=False)
            try:
                parser.read(path)
            except (configparser.Error, OSError, UnicodeDecodeError):
                continue  # oslo.config reports unreadable files properly later
            if parser.has_option("DEFAULT", _OPTION):
                value = parser.get("DEFAULT", _OPTION).strip()
    value = (value or THREADING).strip()
    if value not in BACKENDS:
        raise ValueError(f"concurrency_backend must be one of {BACKENDS}, not {value!r}")
    return value


def setup(backend: str) -> None:
    """Apply the backend: monkey-patch for eventlet, then tell oslo.service.
    Call once per process, before importing oslo.messaging or the agent."""
    global _selected
    if backend not in BACKENDS:
        raise ValueError(f"unknown concurrency backend {backend!r}")
    if _selected is not None:
        if _selected != backend:
            raise RuntimeError(f"concurrency backend already set to {_selected}")
        return
    if backend == EVENTLET:
        import eventlet

        eventlet.monkey_patch()  # psycopg2 is made green by compute_agent.db.green
    else:
        # futurist imports eventlet when it is installed, which warns that
        # eventlet is deprecated: irrelevant when eventlet is not used.
        warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    from oslo_service import backend as service_backend

    service_backend.init_backend(service_backend.BackendType(backend))
    _selected = backend


def keep_out_eventlet() -> None:
    """Make ``import eventlet`` fail in this process (ImportError), for a
    process that runs on native threads for good (the daemon). Libraries
    import it only when it is installed (futurist, oslo.utils'
    eventletutils) and work without it; importing it for nothing costs
    ~300 modules and ~11 MB in each of the daemon's processes. Call before
    :func:`setup`; does nothing once eventlet is imported."""
    sys.modules.setdefault("eventlet", None)  # type: ignore[arg-type]


def selected() -> str | None:
    return _selected

