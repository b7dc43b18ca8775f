"""compute-agent-manage: administrative commands.

    compute-agent-manage [--config-file F] db sync      create or upgrade the schema to head
    compute-agent-manage [--config-file F] db version   print the current and head revisions

The database is ``[database] connection``. Exit status: 0 on success, 1 when
the database cannot be reached or the command fails, 2 on a usage error.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from oslo_config import cfg
from oslo_db import exception as db_exc

from compute_agent import conf as _conf  # noqa: F401 - registers the option groups
from compute_agent.db import engine as db_engine
from compute_agent.db import errors, migration
from compute_agent.db.guard import reason_of
from compute_agent.process import version

PROG = "compute-agent-manage"


def db_sync(conf: cfg.ConfigOpts) -> int:
    url = conf.database.connection
    before = migration.current(url)
    head = migration.head()
    if before == head:
        print(f"Database already at revision {head}; nothing to do.")
        return 0
    migration.upgrade(url)
    print(f"Database upgraded from {before or 'empty'} to revision {migration.current(url)}.")
    return 0


def db_version(conf: cfg.ConfigOpts) -> int:
    current = migration.current(conf.database.connection)
    head = migration.head()
    print(f"current: {current or 'none'}")
    print(f"head: {head}")
    return 0


def _add_command_parsers(subparsers) -> None:
    db = subparsers.add_parser("db", help="Database schema commands.")
    actions = db.add_subparsers(dest="action", metavar="{sync,version}")
    actions.required = True
    sync = actions.add_parser(
        "sync", help="Create the schema or upgrade it to the latest revision (idempotent).")
    sync.set_defaults(func=db_sync)
    version = actions.add_parser("version", help="Print the current and the latest revision.")
    version.set_defaults(func=db_version)


category_opt = cfg.SubCommandOpt(
    "category", title="Commands", help="Available categories", handler=_add_command_parsers)


def main(argv: Sequence[str] | None = None, conf: cfg.ConfigOpts | None = None) -> int:
    conf = conf if conf is not None else cfg.CONF
    conf.register_cli_opt(category_opt)
    conf(list(sys.argv[1:] if argv is None else argv), project="compute-agent", prog=PROG,
         version=version.version_string())
    func: Callable[[cfg.ConfigOpts], int] = conf.category.func
    url = conf.database.connection
    try:
        return func(conf)
    except (sa.exc.DBAPIError, db_exc.DBError) as exc:
        reason = errors.DatabaseUnavailable(db_engine.safe_url(url), reason_of(exc))
        print(f"{PROG}: {reason.message}", file=sys.stderr)
        return 1
    except sa.exc.ArgumentError as exc:
        print(f"{PROG}: invalid [database] connection {db_engine.safe_url(url)}: {exc}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
