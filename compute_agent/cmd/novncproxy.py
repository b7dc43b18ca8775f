"""``compute-agent-novncproxy``: browser consoles.

Serves noVNC's page and relays each console websocket to the VM's VNC
console on dom0 (compute_agent.console.proxy), after checking the token
get_vnc_console issued against the database. It reads the agent's
configuration: [database] for the tokens, [xenserver] for how to reach and
log in to dom0, [console] for where to listen and what to serve.

Runs with plain threads. Exit status: 0 on SIGTERM/SIGINT, 2 for a bad
configuration, 3 when the database is not migrated (or unreachable).
"""

from __future__ import annotations

import signal
import sys
import threading

EXIT_CONFIG = 2
EXIT_DATABASE = 3
PROG = "compute-agent-novncproxy"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    from oslo_config import cfg
    from oslo_log import log as logging

    from compute_agent import exceptions
    from compute_agent.conf import CONF
    from compute_agent.process import version
    from compute_agent.process.log_setup import setup_logging

    logging.register_options(CONF)
    try:
        CONF(argv[1:], project="compute-agent", version=version.version_string())
    except (cfg.Error, ValueError) as exc:
        print(f"{PROG}: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(CONF)
    log = logging.getLogger("compute_agent.cmd.novncproxy")

    from compute_agent.console.proxy import make_server
    from compute_agent.console.tokens import ConsoleTokens
    from compute_agent.db.api import Database
    from compute_agent.driver.xenapi.driver import settings_from_conf

    try:
        settings = settings_from_conf(CONF)
    except exceptions.ComputeAgentError as exc:
        print(f"{PROG}: configuration error: {exc.message}", file=sys.stderr)
        return EXIT_CONFIG
    db = Database.from_conf(CONF)
    try:
        db.check_migrated()
    except exceptions.ComputeAgentError as exc:
        print(f"{PROG}: Refusing to start: {exc.message}", file=sys.stderr)
        return EXIT_DATABASE
    server = make_server(CONF.console.novncproxy_host, CONF.console.novncproxy_port,
                         ConsoleTokens(db), settings, CONF.console.novnc_web,
                         float(CONF.console.dom0_connect_timeout))

    def stop(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever, which runs in this thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    log.info("%s %s serving %s on %s:%s", PROG, version.version_string(),
             CONF.console.novnc_web, host, port)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
