"""The database API the manager, the recovery code and the client use.

Every method opens its own short transaction on a pooled connection, so one
``Database`` object can be shared by any number of threads, and returns plain
dicts (never ORM objects) whose timestamps are ISO-8601 UTC strings with a
``Z`` suffix, ready for JSON. ``compute_agent.db.types.parse_time`` turns them
back into datetimes.

State changes that must not clobber a concurrent writer go through
``update_instance`` with ``expected_task_state`` / ``expected_vm_state``:
the check and the write are one ``UPDATE ... WHERE`` statement, so of two
racing writers exactly one wins and the other gets ``UnexpectedTaskState``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from oslo_db import exception as db_exc
from sqlalchemy.engine import Connection, Engine

from compute_agent import exceptions
from compute_agent.db import engine as db_engine
from compute_agent.db import errors, models, schema_version
from compute_agent.db.action_records import ACTION_RESULTS, ActionRecords
from compute_agent.db.guard import GuardedCalls, RetryPolicy, _api, reason_of
from compute_agent.db.host_records import HostRecords
from compute_agent.db.rows import DUPLICATE, check_fields, is_alive, plain
from compute_agent.db.task_records import TrackedTaskRecords
from compute_agent.db.types import format_time, utcnow


class _AnyState:
    """Sentinel: the update is not guarded on this attribute."""

    _instance: _AnyState | None = None

    def __new__(cls) -> _AnyState:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _AnyState()
_plain = plain  # the name instance_migrations.py and attachments use
__all__ = ["ACTION_RESULTS", "ANY", "DUPLICATE", "Database", "instance_to_dict", "is_alive",
           "plain"]

# The instance dict of the RPC contract, in this order (DESIGN.md).
RPC_INSTANCE_KEYS = (
    "uuid", "name", "host", "vm_state", "task_state", "power_state", "progress", "fault",
    "created_at", "updated_at", "launched_at", "flavor", "image",
)

_instances = models.Instance.__table__
_faults = models.InstanceFault.__table__

# Columns a caller may set; ids and bookkeeping columns are the API's job.
_INSTANCE_FIELDS = frozenset(_instances.c.keys())
_JSON_DEFAULTS = {"flavor": dict, "image": dict, "networks": list, "metadata": dict}


# --------------------------------------------------------------------------- dict shapes

def _fault_dict(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"code": row["code"], "params": list(row["params"] or []), "message": row["message"]}


def instance_to_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """The RPC instance dict (exactly RPC_INSTANCE_KEYS) from an internal
    instance dict such as ``get_instance(uuid, internal=True)`` returns."""
    out: dict[str, Any] = {}
    for key in RPC_INSTANCE_KEYS:
        value = row.get(key)
        if key in ("created_at", "updated_at", "launched_at"):
            value = format_time(value)
        elif key in ("flavor", "image"):
            value = dict(value or {})
        elif key in ("power_state", "progress"):
            value = int(value or 0)
        elif key == "fault" and value is not None:
            value = _fault_dict(value)
        out[key] = value
    return out


def _expected_values(expected: Any) -> tuple[Any, ...]:
    if isinstance(expected, (list, tuple, set, frozenset)):
        return tuple(expected)
    return (expected,)


def _describe(expected: Any) -> str:
    return "|".join(str(v) for v in _expected_values(expected))


def _state_matches(column: sa.Column[Any], expected: Any) -> sa.ColumnElement[bool]:
    """SQL condition: column equals one of the expected values (None = NULL)."""
    values = _expected_values(expected)
    concrete = [v for v in values if v is not None]
    conditions: list[sa.ColumnElement[bool]] = []
    if concrete:
        conditions.append(column.in_(concrete))
    if len(concrete) != len(values):
        conditions.append(column.is_(None))
    if not conditions:  # an empty tuple matches nothing
        return sa.false()
    return sa.or_(*conditions)


# --------------------------------------------------------------------------- the API

class Database(GuardedCalls, ActionRecords, TrackedTaskRecords, HostRecords):
    """Thread-safe access to the agent's database; see the module docstring.
    Instances and faults are here; actions (action_records.py), tracked
    tasks (task_records.py) and compute nodes and services (host_records.py)
    come in as mixins."""

    def __init__(self, url: str, debug: bool | int = False, pool_size: int | None = None,
                 retry: RetryPolicy | None = None, **engine_options: Any):
        self.url = url
        self.engine: Engine = db_engine.make_engine(url, debug=debug, pool_size=pool_size,
                                                    **engine_options)
        self._guard_api(retry or RetryPolicy(), db_engine.safe_url(url))

    @classmethod
    def from_conf(cls, conf: Any) -> Database:
        """Build from the [database] options (oslo.db's) of a ConfigOpts."""
        d = conf.database
        options = {k: getattr(d, k) for k in (
            "max_overflow", "pool_timeout", "connection_recycle_time", "mysql_sql_mode",
            "mysql_wsrep_sync_wait", "sqlite_synchronous", "connection_trace",
            "connection_parameters")}
        retry = RetryPolicy(d.db_max_retries, float(d.db_retry_interval),
                            bool(d.db_inc_retry_interval), float(d.db_max_retry_interval))
        return cls(d.connection, debug=d.connection_debug,
                   pool_size=d.max_pool_size or d.pool_size, retry=retry, **options)

    def __repr__(self) -> str:
        return f"Database({db_engine.safe_url(self.url)})"

    def dispose(self) -> None:
        self.engine.dispose()

    def _read(self):
        return db_engine.transaction(self.engine, write=False)

    def _write(self):
        return db_engine.transaction(self.engine, write=True)

    # -- schema -----------------------------------------------------------------------

    def check_migrated(self) -> None:
        """Raise DatabaseNotMigrated(current, head) unless the schema is at
        the head revision, DatabaseUnavailable if the database cannot be
        reached."""
        head = schema_version.HEAD
        try:
            with self.engine.connect() as conn:
                current = schema_version.current(conn)
        except (sa.exc.DBAPIError, db_exc.DBError) as exc:
            raise errors.DatabaseUnavailable(
                db_engine.safe_url(self.url), reason_of(exc)) from exc
        if current != head:
            raise exceptions.DatabaseNotMigrated(current or "none", head)

    # -- instances --------------------------------------------------------------------

    def _instance_row(self, conn: Connection, uuid: str) -> dict[str, Any]:
        query = sa.select(_instances).where(_instances.c.uuid == uuid)
        row = conn.execute(query).mappings().first()
        if row is None:
            raise exceptions.InstanceNotFound(uuid)
        result = dict(row)
        fault = conn.execute(
            sa.select(_faults).where(_faults.c.instance_uuid == uuid)
            .order_by(_faults.c.id.desc()).limit(1)
        ).mappings().first()
        result["fault"] = _fault_dict(fault)
        return result

    @staticmethod
    def _shape(row: dict[str, Any], internal: bool) -> dict[str, Any]:
        return plain(row) if internal else instance_to_dict(row)

    @_api
    def create_instance(self, values: dict[str, Any], internal: bool = False) -> dict[str, Any]:
        """Insert an instance; ``uuid`` is required. Raises InstanceExists."""
        check_fields(values, _INSTANCE_FIELDS, "an instance")
        if not values.get("uuid"):
            raise exceptions.InvalidInput("uuid", "required")
        now = utcnow()
        row = {"created_at": now, "updated_at": now, **values}
        for key, factory in _JSON_DEFAULTS.items():
            if row.get(key) is None:
                row[key] = factory()
        try:
            with self._write() as conn:
                conn.execute(sa.insert(_instances).values(**row))
                result = self._instance_row(conn, values["uuid"])
        except DUPLICATE as exc:
            raise exceptions.InstanceExists(values["uuid"]) from exc
        return self._shape(result, internal)

    @_api
    def get_instance(self, uuid: str, internal: bool = False) -> dict[str, Any]:
        """The instance (also when deleted). Raises InstanceNotFound.
        ``internal=True`` returns every column plus ``fault``."""
        with self._read() as conn:
            return self._shape(self._instance_row(conn, uuid), internal)

    @_api
    def count_instances(self, host: str | None = None,
                        include_deleted: bool = False) -> dict[str, int]:
        """vm_state -> how many instances (of ``host``) are in it."""
        query = sa.select(_instances.c.vm_state, sa.func.count()).group_by(
            _instances.c.vm_state)
        if host is not None:
            query = query.where(_instances.c.host == host)
        if not include_deleted:
            query = query.where(_instances.c.vm_state != "deleted")
        with self._read() as conn:
            return {state: int(n) for state, n in conn.execute(query).all()}

    @_api
    def list_instances(self, host: str | None = None, include_deleted: bool = False,
                       internal: bool = False, vm_state: str | None = None,
                       limit: int | None = None, marker: str | None = None
                       ) -> list[dict[str, Any]]:
        """Instances, oldest first (created_at, then uuid). ``vm_state``
        filters (``deleted`` included when asked for); ``limit`` and
        ``marker`` (the uuid of the last instance of the previous page) page
        through them. An unknown marker is INVALID_INPUT [marker, reason]."""
        query = sa.select(_instances).order_by(_instances.c.created_at, _instances.c.uuid)
        if host is not None:
            query = query.where(_instances.c.host == host)
        if vm_state is not None:
            query = query.where(_instances.c.vm_state == vm_state)
        elif not include_deleted:
            query = query.where(_instances.c.vm_state != "deleted")
        if limit is not None:
            query = query.limit(limit)
        latest = (
            sa.select(sa.func.max(_faults.c.id)).group_by(_faults.c.instance_uuid).scalar_subquery()
        )
        with self._read() as conn:
            if marker is not None:
                after = conn.execute(sa.select(_instances.c.created_at, _instances.c.uuid)
                                     .where(_instances.c.uuid == marker)).first()
                if after is None:
                    raise exceptions.InvalidInput("marker", "no instance has this uuid")
                query = query.where(sa.or_(
                    _instances.c.created_at > after[0],
                    sa.and_(_instances.c.created_at == after[0], _instances.c.uuid > after[1])))
            rows = [dict(r) for r in conn.execute(query).mappings()]
            uuids = [r["uuid"] for r in rows]
            faults: dict[str, dict[str, Any] | None] = {}
            if uuids:
                fault_rows = conn.execute(
                    sa.select(_faults).where(_faults.c.id.in_(latest),
                                             _faults.c.instance_uuid.in_(uuids))
                ).mappings()
                faults = {f["instance_uuid"]: _fault_dict(f) for f in fault_rows}
        for row in rows:
            row["fault"] = faults.get(row["uuid"])
        return [self._shape(r, internal) for r in rows]

    @_api
    def update_instance(self, uuid: str, values: dict[str, Any], expected_task_state: Any = ANY,
                        expected_vm_state: Any = ANY, internal: bool = False) -> dict[str, Any]:
        """Update an instance, guarded by compare-and-set when ``expected_*``
        is given (a value, None, or a tuple/list of values).

        Raises InstanceNotFound, InstanceInvalidState(uuid, 'vm_state',
        actual, expected) or UnexpectedTaskState(uuid, expected, actual)."""
        check_fields(values, _INSTANCE_FIELDS - {"uuid", "created_at"}, "an instance")
        values = dict(values)
        values.setdefault("updated_at", utcnow())
        if values.get("vm_state") == "deleted" and "deleted_at" not in values:
            values["deleted_at"] = values["updated_at"]
        stmt = sa.update(_instances).where(_instances.c.uuid == uuid).values(**values)
        if expected_task_state is not ANY:
            stmt = stmt.where(_state_matches(_instances.c.task_state, expected_task_state))
        if expected_vm_state is not ANY:
            stmt = stmt.where(_state_matches(_instances.c.vm_state, expected_vm_state))
        with self._write() as conn:
            if conn.execute(stmt).rowcount == 1:
                return self._shape(self._instance_row(conn, uuid), internal)
            actual = self._instance_row(conn, uuid)  # raises InstanceNotFound
        if expected_vm_state is not ANY and actual["vm_state"] not in _expected_values(
                expected_vm_state):
            raise exceptions.InstanceInvalidState(
                uuid, "vm_state", actual["vm_state"], _describe(expected_vm_state))
        # Either the task_state did not match, or a writer changed the row and
        # changed it back between our UPDATE and this read: both lost the race.
        raise exceptions.UnexpectedTaskState(
            uuid, _describe(expected_task_state), actual["task_state"])

    # -- faults -----------------------------------------------------------------------

    @_api
    def add_instance_fault(self, uuid: str, code: str, params: list[Any],
                           message: str) -> dict[str, Any]:
        with self._write() as conn:
            self._instance_row(conn, uuid)  # raises InstanceNotFound
            result = conn.execute(sa.insert(_faults).values(
                instance_uuid=uuid, code=code, params=[str(p) for p in params or []],
                message=message, created_at=utcnow()))
            fault_id = result.inserted_primary_key[0]
            row = conn.execute(sa.select(_faults).where(_faults.c.id == fault_id)).mappings().one()
        return plain(row)

    @_api
    def get_instance_faults(self, uuid: str) -> list[dict[str, Any]]:
        """Faults of the instance, newest first."""
        with self._read() as conn:
            rows = conn.execute(sa.select(_faults).where(_faults.c.instance_uuid == uuid)
                                .order_by(_faults.c.id.desc())).mappings()
            return [plain(r) for r in rows]
