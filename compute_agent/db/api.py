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

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from oslo_db import exception as db_exc
from sqlalchemy.engine import Connection, Engine

from compute_agent import exceptions
from compute_agent.db import engine as db_engine
from compute_agent.db import errors, migration, models
from compute_agent.db.guard import GuardedCalls, RetryPolicy, _api, reason_of
from compute_agent.db.types import format_time, parse_time, utcnow


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

# The instance dict of the RPC contract, in this order (DESIGN.md).
RPC_INSTANCE_KEYS = (
    "uuid", "name", "host", "vm_state", "task_state", "power_state", "progress", "fault",
    "created_at", "updated_at", "launched_at", "flavor", "image",
)
ACTION_RESULTS = ("success", "error")

_instances = models.Instance.__table__
_faults = models.InstanceFault.__table__
_actions = models.InstanceAction.__table__
_events = models.InstanceActionEvent.__table__
_tasks = models.TrackedTask.__table__
_nodes = models.ComputeNode.__table__
_services = models.Service.__table__

# Columns a caller may set; ids and bookkeeping columns are the API's job.
_INSTANCE_FIELDS = frozenset(_instances.c.keys())
_TASK_FIELDS = frozenset(_tasks.c.keys()) - {"id"}
_NODE_FIELDS = frozenset(_nodes.c.keys()) - {"id", "host", "extra", "created_at", "updated_at"}
_JSON_DEFAULTS = {"flavor": dict, "image": dict, "networks": list, "metadata": dict}


# --------------------------------------------------------------------------- dict shapes

def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """Row mapping -> dict with datetimes rendered as ISO-8601 'Z' strings."""
    return {k: format_time(v) if isinstance(v, dt.datetime) else v for k, v in row.items()}


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


def is_alive(updated_at: dt.datetime | str | None, down_time: float,
             now: dt.datetime | None = None) -> bool:
    """Whether a service whose last heartbeat was at ``updated_at`` is up."""
    if updated_at is None:
        return False
    now = now or utcnow()
    return (now - parse_time(updated_at)).total_seconds() <= down_time


def _check_fields(values: Mapping[str, Any], allowed: Iterable[str], what: str) -> None:
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise exceptions.InvalidInput(unknown[0], f"not a field of {what}")


# What a duplicate key raises: oslo.db's translation, or SQLAlchemy's own
# where the translation does not apply (a savepoint's release).
DUPLICATE = (sa.exc.IntegrityError, db_exc.DBDuplicateEntry, db_exc.DBReferenceError)


# --------------------------------------------------------------------------- the API

class Database(GuardedCalls):
    """Thread-safe access to the agent's database; see the module docstring."""

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
        head = migration.head()
        try:
            current = migration.current(self.engine)
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
        return _plain(row) if internal else instance_to_dict(row)

    @_api
    def create_instance(self, values: dict[str, Any], internal: bool = False) -> dict[str, Any]:
        """Insert an instance; ``uuid`` is required. Raises InstanceExists."""
        _check_fields(values, _INSTANCE_FIELDS, "an instance")
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
        _check_fields(values, _INSTANCE_FIELDS - {"uuid", "created_at"}, "an instance")
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
        return _plain(row)

    @_api
    def get_instance_faults(self, uuid: str) -> list[dict[str, Any]]:
        """Faults of the instance, newest first."""
        with self._read() as conn:
            rows = conn.execute(sa.select(_faults).where(_faults.c.instance_uuid == uuid)
                                .order_by(_faults.c.id.desc())).mappings()
            return [_plain(r) for r in rows]

    # -- actions and events -----------------------------------------------------------

    def _action_row(self, conn: Connection, uuid: str, request_id: str) -> dict[str, Any]:
        query = sa.select(_actions).where(
            _actions.c.instance_uuid == uuid, _actions.c.request_id == request_id)
        row = conn.execute(query).mappings().first()
        if row is None:
            raise errors.InstanceActionNotFound(uuid, request_id)
        return dict(row)

    def _action_with_events(self, conn: Connection, action: dict[str, Any]) -> dict[str, Any]:
        events = conn.execute(sa.select(_events).where(_events.c.action_id == action["id"])
                              .order_by(_events.c.id)).mappings()
        out = _plain(action)
        out["events"] = [_plain({k: v for k, v in e.items() if k != "action_id"})
                         for e in events]
        return out

    @_api
    def action_start(self, uuid: str, action: str, request_id: str) -> dict[str, Any]:
        """Record the start of a request's action. Starting the same request
        again returns the existing record (a retried request is one action)."""
        with self._write() as conn:
            self._instance_row(conn, uuid)
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(_actions).values(
                        instance_uuid=uuid, action=action, request_id=request_id,
                        start_time=utcnow()))
            except DUPLICATE:
                pass  # already recorded by an earlier delivery of the same request
            return self._action_with_events(conn, self._action_row(conn, uuid, request_id))

    @_api
    def action_finish(self, uuid: str, request_id: str, result: str,
                      message: str | None = None) -> dict[str, Any]:
        if result not in ACTION_RESULTS:
            raise exceptions.InvalidInput("result", f"must be one of {ACTION_RESULTS}")
        with self._write() as conn:
            action = self._action_row(conn, uuid, request_id)
            conn.execute(sa.update(_actions).where(_actions.c.id == action["id"]).values(
                finish_time=utcnow(), result=result, message=message))
            return self._action_with_events(conn, self._action_row(conn, uuid, request_id))

    @_api
    def action_event_start(self, uuid: str, request_id: str, event: str) -> dict[str, Any]:
        with self._write() as conn:
            action = self._action_row(conn, uuid, request_id)
            result = conn.execute(sa.insert(_events).values(
                action_id=action["id"], event=event, start_time=utcnow()))
            return self._event(conn, result.inserted_primary_key[0])

    @_api
    def action_event_finish(self, uuid: str, request_id: str, event: str, result: str,
                            traceback: str | None = None) -> dict[str, Any]:
        """Finish the latest unfinished event of that name (recording one
        that starts and finishes now if it was never started)."""
        if result not in ACTION_RESULTS:
            raise exceptions.InvalidInput("result", f"must be one of {ACTION_RESULTS}")
        now = utcnow()
        with self._write() as conn:
            action = self._action_row(conn, uuid, request_id)
            event_id = conn.execute(
                sa.select(_events.c.id).where(
                    _events.c.action_id == action["id"], _events.c.event == event,
                    _events.c.finish_time.is_(None)).order_by(_events.c.id.desc()).limit(1)
            ).scalar()
            if event_id is None:
                event_id = conn.execute(sa.insert(_events).values(
                    action_id=action["id"], event=event, start_time=now)).inserted_primary_key[0]
            conn.execute(sa.update(_events).where(_events.c.id == event_id).values(
                finish_time=now, result=result, traceback=traceback))
            return self._event(conn, event_id)

    @staticmethod
    def _event(conn: Connection, event_id: int) -> dict[str, Any]:
        row = conn.execute(sa.select(_events).where(_events.c.id == event_id)).mappings().one()
        return _plain({k: v for k, v in row.items() if k != "action_id"})

    @_api
    def list_actions(self, uuid: str) -> list[dict[str, Any]]:
        """Actions of the instance, oldest first, each with its ``events``."""
        with self._read() as conn:
            rows = conn.execute(sa.select(_actions).where(_actions.c.instance_uuid == uuid)
                                .order_by(_actions.c.id)).mappings()
            return [self._action_with_events(conn, dict(r)) for r in rows]

    # -- tracked dom0 tasks -----------------------------------------------------------

    @_api
    def add_tracked_task(self, values: dict[str, Any]) -> dict[str, Any]:
        """Record a dom0 task before waiting on it; ``ref`` is required.
        Raises TrackedTaskExists for a ref that is already tracked."""
        _check_fields(values, _TASK_FIELDS, "a tracked task")
        if not values.get("ref"):
            raise exceptions.InvalidInput("ref", "required")
        now = utcnow()
        row = {"status": "pending", "progress": 0.0, "created_at": now, "updated_at": now,
               **values}
        try:
            with self._write() as conn:
                conn.execute(sa.insert(_tasks).values(**row))
                return self._task(conn, values["ref"])  # type: ignore[return-value]
        except DUPLICATE as exc:
            raise errors.TrackedTaskExists(values["ref"]) from exc

    @staticmethod
    def _task(conn: Connection, ref: str) -> dict[str, Any] | None:
        row = conn.execute(sa.select(_tasks).where(_tasks.c.ref == ref)).mappings().first()
        return None if row is None else _plain(row)

    @_api
    def update_tracked_task(self, ref: str, values: dict[str, Any]) -> dict[str, Any]:
        """Update a tracked task. Raises TrackedTaskNotFound."""
        _check_fields(values, _TASK_FIELDS - {"ref", "created_at"}, "a tracked task")
        values = {"updated_at": utcnow(), **values}
        with self._write() as conn:
            conn.execute(sa.update(_tasks).where(_tasks.c.ref == ref).values(**values))
            task = self._task(conn, ref)
        if task is None:
            raise errors.TrackedTaskNotFound(ref)
        return task

    @_api
    def bind_tracked_task(self, intent_ref: str, ref: str,
                          values: dict[str, Any] | None = None) -> dict[str, Any]:
        """Give a recorded intent (a row under a placeholder ref, written
        before its Async call) the ref of the task the call started.
        Raises TrackedTaskNotFound if no row has ``intent_ref``."""
        values = {**(values or {}), "ref": ref, "updated_at": utcnow()}
        _check_fields(values, _TASK_FIELDS - {"created_at"}, "a tracked task")
        with self._write() as conn:
            conn.execute(sa.update(_tasks).where(_tasks.c.ref == intent_ref).values(**values))
            task = self._task(conn, ref)
        if task is None:
            raise errors.TrackedTaskNotFound(intent_ref)
        return task

    @_api
    def get_tracked_task(self, ref: str) -> dict[str, Any] | None:
        with self._read() as conn:
            return self._task(conn, ref)

    @_api
    def list_tracked_tasks(self, agent_host: str | None = None, status: str | None = "pending",
                           instance_uuid: str | None = None) -> list[dict[str, Any]]:
        """Tracked tasks, oldest first; each filter given as None is not applied."""
        query = sa.select(_tasks).order_by(_tasks.c.created_at, _tasks.c.id)
        if agent_host is not None:
            query = query.where(_tasks.c.agent_host == agent_host)
        if status is not None:
            query = query.where(_tasks.c.status == status)
        if instance_uuid is not None:
            query = query.where(_tasks.c.instance_uuid == instance_uuid)
        with self._read() as conn:
            return [_plain(r) for r in conn.execute(query).mappings()]

    # -- compute nodes and services ---------------------------------------------------

    @_api
    def upsert_compute_node(self, host: str, resources: dict[str, Any]) -> dict[str, Any]:
        """Create or replace the host's resource report. Keys beyond the
        known columns are kept too (in ``extra``) and returned flat."""
        columns: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in resources.items():
            if key in _NODE_FIELDS:
                columns[key] = _coerce(_nodes.c[key], value)
            else:
                extra[key] = value
        now = utcnow()
        columns["updated_at"] = now
        if extra:  # a report without extra keys leaves earlier ones alone
            columns["extra"] = extra
        with self._write() as conn:
            _update_or_insert(
                conn,
                sa.update(_nodes).where(_nodes.c.host == host).values(**columns),
                sa.insert(_nodes).values(host=host, created_at=now, **columns),
            )
            row = conn.execute(sa.select(_nodes).where(_nodes.c.host == host)).mappings().one()
        return _node_dict(row)

    @_api
    def list_compute_nodes(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            rows = conn.execute(sa.select(_nodes).order_by(_nodes.c.host)).mappings()
            return [_node_dict(r) for r in rows]

    @_api
    def service_heartbeat(self, host: str, binary: str, topic: str) -> dict[str, Any]:
        """Create the service record or bump its updated_at and report_count."""
        now = utcnow()
        where = (_services.c.host == host, _services.c.binary == binary)
        with self._write() as conn:
            _update_or_insert(
                conn,
                sa.update(_services).where(*where).values(
                    topic=topic, updated_at=now, report_count=_services.c.report_count + 1),
                sa.insert(_services).values(host=host, binary=binary, topic=topic,
                                            report_count=1, disabled=False,
                                            created_at=now, updated_at=now),
            )
            row = conn.execute(sa.select(_services).where(*where)).mappings().one()
        return _plain(row)

    @_api
    def set_service_disabled(self, host: str, binary: str, disabled: bool) -> dict[str, Any]:
        """Take a service out of scheduling (or back in); it must exist."""
        where = (_services.c.host == host, _services.c.binary == binary)
        with self._write() as conn:
            conn.execute(sa.update(_services).where(*where).values(disabled=bool(disabled)))
            row = conn.execute(sa.select(_services).where(*where)).mappings().first()
        if row is None:
            raise exceptions.InvalidInput("host", f"no service {binary} on {host}")
        return _plain(row)

    @_api
    def list_services(self, down_time: int = 60) -> list[dict[str, Any]]:
        """Services, each with ``alive``: a heartbeat within ``down_time`` s."""
        now = utcnow()
        with self._read() as conn:
            rows = conn.execute(sa.select(_services)
                                .order_by(_services.c.host, _services.c.binary)).mappings()
            return [{**_plain(r), "alive": is_alive(r["updated_at"], down_time, now)}
                    for r in rows]


# --------------------------------------------------------------------------- helpers

def _coerce(column: sa.Column[Any], value: Any) -> Any:
    """Drivers report numbers and versions loosely; PostgreSQL will not cast."""
    if value is None:
        return None
    if isinstance(column.type, sa.Integer):
        return int(value)
    if isinstance(column.type, sa.String):
        return str(value)
    return value


def _node_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    extra = row["extra"] or {}
    out = {**extra, **_plain({k: v for k, v in row.items() if k != "extra"})}
    return out


def _update_or_insert(conn: Connection, update: sa.Update, insert: sa.Insert) -> None:
    """Portable upsert keyed on a unique constraint: UPDATE, and INSERT if no
    row matched; a concurrent INSERT that won makes us UPDATE again."""
    if conn.execute(update).rowcount:
        return
    try:
        with conn.begin_nested():
            conn.execute(insert)
    except DUPLICATE:
        conn.execute(update)
