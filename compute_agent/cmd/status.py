"""compute-agent-status: is this host ready to run (or upgrade) the agent?

    compute-agent-status [--config-file F] upgrade check [--json] [--timeout S]

Checks, one line each: the configuration can be read and every value is
valid; the database is reachable and at the schema revision the installed
code needs; dom0 accepts a XenAPI login with the configured URL, credentials
and TLS settings; the message broker accepts a connection.

Exit status, as nova-status: 0 all checks passed, 1 at least one warning and
no failure, 2 at least one failure. The checks only read: nothing is created
or migrated, and no secret is printed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from oslo_config import cfg

from compute_agent import conf as _conf  # noqa: F401 - registers the option groups
from compute_agent.checks import Code, Result, failure, first_line, overall
from compute_agent.checks import config as config_check
from compute_agent.checks import database as database_check
from compute_agent.checks import dom0 as dom0_check
from compute_agent.process import concurrency, version

PROG = "compute-agent-status"
DEFAULT_TIMEOUT = 5.0

_READ_ERRORS = (
    cfg.ConfigFilesNotFoundError,  # also ConfigFilesPermissionDeniedError
    cfg.ConfigFileParseError,
    cfg.ConfigDirNotFoundError,
    OSError,  # e.g. a directory given as --config-file
)


def _add_command_parsers(subparsers) -> None:
    upgrade = subparsers.add_parser("upgrade", help="Upgrade readiness checks.")
    actions = upgrade.add_subparsers(dest="action", metavar="{check}")
    actions.required = True
    check = actions.add_parser(
        "check", help="Check configuration, database, dom0 and broker; exit 0, 1 or 2.")
    check.add_argument("--json", action="store_true", help="Print the results as JSON.")
    check.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT,
        help=f"Seconds to wait for each service (default {DEFAULT_TIMEOUT}).")


category_opt = cfg.SubCommandOpt(
    "category", title="Commands", help="Available categories", handler=_add_command_parsers)


def run_checks(conf: cfg.ConfigOpts, timeout: float) -> list[Result]:
    # oslo.messaging fixes oslo.service's concurrency backend when imported; this
    # command only needs plain threads (and must not pull in eventlet).
    # (A caller that already chose, such as a test runner, keeps its choice.)
    from oslo_service import backend as service_backend

    if concurrency.selected() is None and service_backend.get_backend_type() is None:
        concurrency.setup(concurrency.THREADING)
    from compute_agent.checks import broker as broker_check

    checks: list[tuple[str, Callable[[], Result]]] = [
        (config_check.NAME, lambda: config_check.check(conf)),
        (database_check.NAME, lambda: database_check.check(conf.database.connection, timeout)),
        (dom0_check.NAME,
         lambda: dom0_check.check(conf.xenserver, conf.compute_driver, timeout)),
        (broker_check.NAME, lambda: broker_check.check(conf, timeout)),
    ]
    results = []
    for name, run in checks:
        try:
            results.append(run())
        except config_check.VALUE_ERRORS:
            results.append(failure(name, "not checked: an option it needs is invalid (see config)"))
        except Exception as exc:  # one broken check must not hide the others
            results.append(failure(name, f"check could not run: {first_line(exc)}"))
    return results


def render(results: list[Result], as_json: bool, out: TextIO) -> None:
    code = overall(results)
    if as_json:
        json.dump({"result": code.name, "code": int(code),
                   "checks": [r.to_dict() for r in results]}, out, indent=2)
        out.write("\n")
        return
    width = max(len(r.name) for r in results)
    for r in results:
        out.write(f"{r.label:<8} {r.name:<{width}}  {r.detail}\n")
    out.write(f"{PROG}: {code.name.lower()}\n")


def main(
    argv: Sequence[str] | None = None,
    conf: cfg.ConfigOpts | None = None,
    default_config_files: list[str] | None = None,
    out: TextIO | None = None,
) -> int:
    conf = conf if conf is not None else cfg.CONF
    out = out if out is not None else sys.stdout
    args = list(sys.argv[1:] if argv is None else argv)
    conf.register_cli_opt(category_opt)
    try:
        conf(args, project="compute-agent", prog=PROG, version=version.version_string(),
             default_config_files=default_config_files)
    except _READ_ERRORS as exc:
        # The command line itself parsed (argparse exits on usage errors), so
        # the JSON request, if any, is known only from argv.
        render([config_check.unreadable(exc)], "--json" in args, out)
        return int(Code.FAILURE)
    results = run_checks(conf, conf.category.timeout)
    render(results, conf.category.json, out)
    return int(overall(results))


if __name__ == "__main__":
    sys.exit(main())
