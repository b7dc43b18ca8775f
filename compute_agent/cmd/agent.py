"""``compute-agent``: the daemon.

The concurrency backend is chosen first, from the command line and the
configuration files, before any module that could create a lock, a thread or
a socket is imported; everything else is imported afterwards, inside main().

Exit status: 0 after a graceful stop, 2 for a bad configuration, 3 when the
database is not migrated (or unreachable).
"""

from __future__ import annotations

import sys

EXIT_CONFIG = 2
EXIT_DATABASE = 3


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)

    from compute_agent.process import concurrency  # standard library only

    try:
        backend = concurrency.backend_from_argv(argv[1:])
    except ValueError as exc:
        print(f"compute-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    concurrency.setup(backend)

    from compute_agent.process import sdnotify

    # Before oslo.service/cotyledon: they would send READY=1 too early and
    # then unset NOTIFY_SOCKET; the agent sends it once it really serves.
    sd = sdnotify.Notifier.from_environment(unset=True)
    return _run(argv, backend, sd)


def _run(argv: list[str], backend: str, sd: object) -> int:
    from oslo_config import cfg
    from oslo_log import log as logging

    from compute_agent import exceptions
    from compute_agent.conf import CONF
    from compute_agent.process import gmr, version
    from compute_agent.process.log_setup import setup_logging
    from compute_agent.rpc import transport as rpc_transport

    logging.register_options(CONF)
    rpc_transport.set_agent_defaults(CONF)
    try:
        CONF(argv[1:], project="compute-agent", version=version.version_string())
    except (cfg.Error, ValueError) as exc:
        print(f"compute-agent: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(CONF)
    log = logging.getLogger("compute_agent.cmd.agent")
    if CONF.concurrency_backend != backend:
        print(f"compute-agent: concurrency_backend is {CONF.concurrency_backend} in the "
              f"parsed configuration but {backend} was selected at start-up; set it in a "
              "--config-file or on the command line", file=sys.stderr)
        return EXIT_CONFIG
    gmr.setup(CONF)

    from compute_agent.db.api import Database

    db = Database.from_conf(CONF)
    problem = None
    try:
        db.check_migrated()
    except exceptions.DatabaseNotMigrated as exc:
        problem = f"the database is not migrated: {exc.message}"
    except exceptions.ComputeAgentError as exc:
        problem = exc.message
    finally:
        db.dispose()  # nothing open may cross the launcher's fork
    if problem is not None:
        # On stderr always (an operator at a terminal, systemd's journal);
        # into the log too when the log goes somewhere else.
        print(f"compute-agent: Refusing to start: {problem}", file=sys.stderr)
        if CONF.log_file or CONF.use_journal or CONF.use_syslog:
            log.error("Refusing to start: %s", problem)
        return EXIT_DATABASE

    from oslo_service import service as os_service

    from compute_agent.service import ComputeService

    executor = "eventlet" if backend == "eventlet" else None
    svc = ComputeService(CONF, sd_notifier=sd, executor=executor)
    log.info("Starting compute-agent %s on %s (backend %s)", version.version_string(),
             CONF.host, backend)
    launcher = os_service.launch(CONF, svc, workers=1, restart_method="mutate")
    _hook_reload(launcher, sd)
    rc = launcher.wait()
    return int(rc or 0)


def _hook_reload(launcher: object, sd: object) -> None:
    """Tell systemd about SIGHUP reloads handled by cotyledon's master (the
    threading launcher); the re-forked worker sends READY=1 when it serves."""
    manager = getattr(launcher, "_manager", None)
    register = getattr(manager, "register_hooks", None)
    if register is not None:
        register(on_reload=lambda *args: sd.reloading())  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
