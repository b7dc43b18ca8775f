"""``xapi-sim``: run the simulator as a process.

    xapi-sim --listen 127.0.0.1:8080 [--hosts N] [--user root --password PW]
             [--task-duration S] [--state-dir DIR] [--plugins-dir DIR]
             [--tls] [--persist] [-v]

The first line on stdout is ``xapi-sim: serving <url> (pool of N hosts:
<addresses>)``; with --tls the second names the CA file clients should
trust. Logs go to stderr (requests at debug level with -v; session refs in
query strings are masked, passwords never logged). SIGTERM or SIGINT stops
it cleanly with exit status 0.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
import threading

from xapisim import log_redaction
from xapisim.server import Simulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="xapi-sim", description="A XenAPI (xapi) simulator.")
    p.add_argument("--listen", default="127.0.0.1:8080", metavar="ADDR:PORT",
                   help="coordinator address and port (members take the next addresses, "
                        "same port; port 0 picks a free one); default %(default)s")
    p.add_argument("--hosts", type=int, default=1, metavar="N", help="hosts in the pool")
    p.add_argument("--user", default="root", help="user name accepted at login")
    p.add_argument("--password", default=os.environ.get("XAPISIM_PASSWORD", "password"),
                   help="its password (default: $XAPISIM_PASSWORD or 'password'); a "
                        "command line is visible to every user (ps): prefer "
                        "--password-file or the environment")
    p.add_argument("--password-file", metavar="FILE",
                   help="read the password from the first line of FILE instead")
    p.add_argument("--task-duration", type=float, default=0.5, metavar="S",
                   help="seconds each operation takes (default %(default)s)")
    p.add_argument("--state-dir", metavar="DIR",
                   help="VDI data, dom0 roots, TLS files, database (default: a temp dir)")
    p.add_argument("--plugins-dir", metavar="DIR",
                   help="host plugins (default: the project's etc/xapi.d/plugins)")
    p.add_argument("--tls", action="store_true", help="serve HTTPS with a generated cert")
    p.add_argument("--persist", action="store_true",
                   help="keep the object database in --state-dir across restarts")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = p.parse_args(argv)
    host, sep, port = args.listen.rpartition(":")
    try:
        ipaddress.ip_address(host)
        if not sep or not 0 <= int(port) <= 65535:
            raise ValueError
    except ValueError:
        p.error(f"--listen wants IP:PORT (e.g. 127.0.0.1:8080), not {args.listen!r}")
    if args.hosts < 1:
        p.error("--hosts must be at least 1")
    if args.persist and not args.state_dir:
        p.error("--persist needs --state-dir")
    if args.task_duration < 0:
        p.error("--task-duration must not be negative")
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as f:
                args.password = f.readline().rstrip("\r\n")
        except OSError as e:
            p.error(f"--password-file: {e.strerror}")
    return args


def setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(log_redaction.RedactSecrets())  # the loggers redact too
    root = logging.getLogger("xapisim")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sim = Simulator(
        listen=args.listen, hosts=args.hosts, users={args.user: args.password},
        task_duration=args.task_duration, state_dir=args.state_dir,
        plugins_dir=args.plugins_dir, tls=args.tls, persist=args.persist,
    )
    try:
        sim.start()
    except OSError as e:
        print(f"xapi-sim: cannot listen on {', '.join(sim.addresses)} port {sim.port}: {e}",
              file=sys.stderr)
        return 1
    print(f"xapi-sim: serving {sim.url} (pool of {len(sim.addresses)} "
          f"host{'s' if len(sim.addresses) > 1 else ''}: {', '.join(sim.addresses)})", flush=True)
    if sim.ca_file:
        print(f"xapi-sim: CA certificate {sim.ca_file}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        logging.getLogger("xapisim").info("stopping")
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
