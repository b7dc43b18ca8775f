"""Options of the [database] group: oslo.db's standard ones.

The agent's engines come from oslo.db (compute_agent/db/engine.py), so its
[database] options are oslo.db's, under their usual names, with the
agent's defaults where they differ: a SQLite file under ``state_path``,
and retries of transient errors short enough for an RPC call (a write the
agent must not lose, an operation's outcome, is retried for longer by the
manager itself). The options oslo.db has that the agent does not use
(``slave_connection``, ``asyncio_*``, ``backend``, ``use_db_reconnect``)
are left out.
"""

import copy

from oslo_config import cfg
from oslo_db import options as oslo_db_options

database_group = cfg.OptGroup(
    "database",
    title="Database options",
    help="Where the agent keeps instances, actions, tracked dom0 tasks, compute "
    "nodes and services. SQLite suits a single agent; use PostgreSQL or MariaDB "
    "when several agents or clients share the database. These are oslo.db's "
    "options; engine set-up, error translation and the retry of transient "
    "disconnects and deadlocks are oslo.db's.",
)

# oslo.db's options the agent honours, and the defaults it gives them.
_USED = {
    "connection": None,
    "connection_debug": None,
    "connection_trace": None,
    "connection_parameters": None,
    "connection_recycle_time": None,
    "max_pool_size": None,
    "max_overflow": None,
    "pool_timeout": None,
    "mysql_sql_mode": None,
    "mysql_wsrep_sync_wait": None,
    "sqlite_synchronous": None,
    # An RPC worker waits at most about 1 + 2 + 2 s for a database that
    # dropped its connections before the caller gets DATABASE_UNAVAILABLE.
    "db_max_retries": 3,
    "db_retry_interval": 1,
    "db_inc_retry_interval": None,
    "db_max_retry_interval": 2,
}


def _agent_opts() -> list[cfg.Opt]:
    by_name = {opt.name: opt for opt in oslo_db_options.database_opts}
    out: list[cfg.Opt] = []
    for name, default in _USED.items():
        opt = copy.deepcopy(by_name[name])
        if name == "connection":
            opt.default = "sqlite:///$state_path/compute-agent.sqlite"
            opt.help = (
                "SQLAlchemy URL of the database, for example "
                "sqlite:////var/lib/compute-agent/compute-agent.sqlite, "
                "postgresql+psycopg2://user:pass@host/compute_agent or "
                "mysql+pymysql://user:pass@host/compute_agent?charset=utf8mb4. "
                "Marked secret because it may carry a password.")
        elif default is not None:
            opt.default = default
        out.append(opt)
    out.append(cfg.IntOpt(
        "pool_size", min=1, deprecated_for_removal=True,
        deprecated_reason="oslo.db's max_pool_size is the standard name.",
        help="Size of the connection pool for server databases; use max_pool_size."))
    return out


DATABASE_OPTS = _agent_opts()


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(database_group)
    conf.register_opts(DATABASE_OPTS, group=database_group)


def list_opts() -> dict[cfg.OptGroup, list[cfg.Opt]]:
    return {database_group: DATABASE_OPTS}
