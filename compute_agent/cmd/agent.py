"""``compute-agent``: the daemon.

The concurrency backend is chosen first, from the command line and the
configuration files, before any module that could create a lock, a thread or
a socket is imported; everything else is imported afterwards, inside main().

The daemon is two processes: oslo.service's launcher (cotyledon's master:
signals, SIGHUP reloads, re-forking a worker that died) and the worker it
forks, which serves. The master imports only what it needs itself (the
configuration, logging, Guru Meditation Reports, the launcher); the database
check runs in a short-lived child and the service is imported and built in
the worker (process/worker.py says why).

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
    if backend == concurrency.THREADING:
        concurrency.keep_out_eventlet()
    concurrency.setup(backend)

    from compute_agent.process import sdnotify

    # Before oslo.service/cotyledon: they would send READY=1 too early and
    # then unset NOTIFY_SOCKET; the agent sends it once it really serves.
    sd = sdnotify.Notifier.from_environment(unset=True)
    return _run(argv, backend, sd)


def _run(argv: list[str], backend: str, sd: object) -> int:
    from oslo_config import cfg
    from oslo_log import log as logging

    from compute_agent.conf import CONF
    from compute_agent.process import gmr, version, worker
    from compute_agent.process.log_setup import setup_logging

    logging.register_options(CONF)
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

    # SQLAlchemy and the database driver stay in the child.
    status = worker.run_in_child(lambda: _check_database(CONF, log))
    if status:
        return status

    from oslo_service import service as os_service

    executor = "eventlet" if backend == "eventlet" else None

    def build() -> object:
        """In the worker: oslo.messaging's options (with the agent's
        defaults), then the service."""
        from compute_agent.rpc import transport as rpc_transport
        from compute_agent.service import ComputeService

        rpc_transport.set_agent_defaults(CONF)
        return ComputeService(CONF, sd_notifier=sd, executor=executor)

    log.info("Starting compute-agent %s on %s (backend %s)", version.version_string(),
             CONF.host, backend)
    launcher = os_service.launch(CONF, worker.DeferredService(build), workers=1,
                                 restart_method="mutate")
    _hook_reload(launcher, sd)
    worker.freeze_before_fork()
    rc = launcher.wait()
    return int(rc or 0)


def _check_database(conf: object, log: object) -> int:
    """0 when the database is reachable and migrated; else say why (stderr,
    and the log when it goes elsewhere) and return EXIT_DATABASE."""
    from compute_agent import exceptions
    from compute_agent.db.api import Database

    db = Database.from_conf(conf)
    problem = None
    try:
        db.check_migrated()
    except exceptions.DatabaseNotMigrated as exc:
        problem = f"the database is not migrated: {exc.message}"
    except exceptions.ComputeAgentError as exc:
        problem = exc.message
    finally:
        db.dispose()
    if problem is None:
        return 0
    # On stderr always (an operator at a terminal, systemd's journal);
    # into the log too when the log goes somewhere else.
    print(f"compute-agent: Refusing to start: {problem}", file=sys.stderr)
    if conf.log_file or conf.use_journal or conf.use_syslog:  # type: ignore[attr-defined]
        log.error("Refusing to start: %s", problem)  # type: ignore[attr-defined]
    return EXIT_DATABASE


def _hook_reload(launcher: object, sd: object) -> None:
    """Tell systemd about SIGHUP reloads handled by cotyledon's master (the
    threading launcher); the re-forked worker sends READY=1 when it serves."""
    manager = getattr(launcher, "_manager", None)
    register = getattr(manager, "register_hooks", None)
    if register is not None:
        register(on_reload=lambda *args: sd.reloading())  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
