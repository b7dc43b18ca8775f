"""Pure logic of the database layer: dict shapes, time handling, guards."""

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from compute_agent.db import api, host_records, models, rows
from compute_agent.db.types import UTCDateTime, format_time, parse_time

UTC = dt.UTC


def test_instance_to_dict_has_exactly_the_contract_keys():
    row = {
        "uuid": "u", "name": "n", "host": "h", "vm_state": "active", "task_state": None,
        "power_state": 1, "progress": 100,
        "fault": {"code": "X", "params": ["a"], "message": "m"},
        "created_at": dt.datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "updated_at": "2025-01-02T03:04:05+00:00", "launched_at": None,
        "flavor": {"vcpus": 1}, "image": None,
        "networks": [], "metadata": {}, "vm_ref": "OpaqueRef:x", "deleted_at": None,
    }
    out = api.instance_to_dict(row)
    assert list(out) == list(api.RPC_INSTANCE_KEYS)
    assert out["created_at"] == "2025-01-02T03:04:05.000006Z"
    assert out["updated_at"] == "2025-01-02T03:04:05.000000Z"
    assert out["launched_at"] is None
    assert out["image"] == {}
    assert out["fault"] == {"code": "X", "params": ["a"], "message": "m"}
    assert "vm_ref" not in out and "networks" not in out


def test_instance_to_dict_copies_json_fields():
    flavor = {"vcpus": 2}
    out = api.instance_to_dict({"flavor": flavor, "image": {}})
    out["flavor"]["vcpus"] = 3
    assert flavor == {"vcpus": 2}


@pytest.mark.parametrize("value,expected", [
    ("2025-01-02T03:04:05Z", dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("2025-01-02T05:04:05+02:00", dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
    (dt.datetime(2025, 1, 2, 3, 4, 5), dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
])
def test_parse_time_gives_aware_utc(value, expected):
    parsed = parse_time(value)
    assert parsed == expected and parsed.tzinfo is UTC


def test_format_time_round_trips():
    now = dt.datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    text = format_time(now)
    assert text == "2025-06-01T10:00:00.123456Z"
    assert parse_time(text) == now
    assert format_time(None) is None


def test_utc_datetime_stores_naive_utc_and_returns_aware():
    col = UTCDateTime()
    local = dt.datetime(2025, 1, 1, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert col.process_bind_param(local, sqlite.dialect()) == dt.datetime(2025, 1, 1, 0, 0)
    back = col.process_result_value(dt.datetime(2025, 1, 1, 0, 0), sqlite.dialect())
    assert back == dt.datetime(2025, 1, 1, 0, 0, tzinfo=UTC)


def test_utc_datetime_keeps_microseconds_on_mariadb():
    ddl = str(sa.schema.CreateTable(models.Instance.__table__).compile(dialect=mysql.dialect()))
    assert "created_at DATETIME(6) NOT NULL" in ddl
    assert "ENGINE=InnoDB" in ddl and "CHARSET=utf8mb4" in ddl
    assert "flavor JSON" in ddl


def _compile(clause, dialect=postgresql.dialect()):
    return str(clause.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def test_state_guard_sql():
    col = models.Instance.__table__.c.task_state
    assert _compile(api._state_matches(col, "spawning")) == "instances.task_state IN ('spawning')"
    assert _compile(api._state_matches(col, None)) == "instances.task_state IS NULL"
    assert _compile(api._state_matches(col, ("a", None))) == (
        "instances.task_state IN ('a') OR instances.task_state IS NULL")
    assert _compile(api._state_matches(col, [])) == "false"


def test_any_is_a_singleton_sentinel():
    assert api.ANY is api._AnyState()
    assert repr(api.ANY) == "ANY"


def test_describe_expected_states():
    assert api._describe("spawning") == "spawning"
    assert api._describe(None) == "None"
    assert api._describe(("a", None)) == "a|None"


def test_is_alive():
    now = dt.datetime(2025, 1, 1, 0, 1, 0, tzinfo=UTC)
    assert rows.is_alive("2025-01-01T00:00:00Z", 60, now)
    assert not rows.is_alive("2025-01-01T00:00:00Z", 59, now)
    assert not rows.is_alive(None, 60, now)


def test_unknown_fields_are_refused():
    with pytest.raises(api.exceptions.InvalidInput) as err:
        rows.check_fields({"uuid": 1, "colour": 2}, {"uuid"}, "an instance")
    assert err.value.params == ["colour", "not a field of an instance"]


def test_coerce_loose_driver_values():
    nodes = models.ComputeNode.__table__
    assert host_records._coerce(nodes.c.memory_mb, "2048") == 2048
    assert host_records._coerce(nodes.c.hypervisor_version, 8002001) == "8002001"
    assert host_records._coerce(nodes.c.hypervisor_type, None) is None
