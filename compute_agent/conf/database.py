"""Options of the [database] group."""

from oslo_config import cfg

database_group = cfg.OptGroup(
    "database",
    title="Database options",
    help="Where the agent keeps instances, actions, tracked dom0 tasks, compute "
    "nodes and services. SQLite suits a single agent; use PostgreSQL or MariaDB "
    "when several agents or clients share the database.",
)

DATABASE_OPTS = [
    cfg.StrOpt(
        "connection",
        default="sqlite:///$state_path/compute-agent.sqlite",
        secret=True,
        help="SQLAlchemy URL of the database, for example "
        "sqlite:////var/lib/compute-agent/compute-agent.sqlite, "
        "postgresql+psycopg2://user:pass@host/compute_agent or "
        "mysql+pymysql://user:pass@host/compute_agent?charset=utf8mb4. "
        "Marked secret because it may carry a password.",
    ),
    cfg.BoolOpt(
        "connection_debug",
        default=False,
        help="Log every SQL statement the agent sends. Verbose; for debugging only.",
    ),
    cfg.IntOpt(
        "pool_size",
        default=None,
        min=1,
        help="Size of the connection pool for server databases (PostgreSQL, "
        "MariaDB). Unset uses SQLAlchemy's default. Ignored for SQLite.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(database_group)
    conf.register_opts(DATABASE_OPTS, group=database_group)


def list_opts() -> dict[cfg.OptGroup, list[cfg.Opt]]:
    return {database_group: DATABASE_OPTS}
