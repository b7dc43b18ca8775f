"""instance_migrations against real SQLite, PostgreSQL and MariaDB."""

import uuid as uuidlib

import pytest

from compute_agent import exceptions
from compute_agent.db import instance_migrations as im


def test_lifecycle_and_compare_and_set(database):
    rows = im.InstanceMigrations(database)
    uuid = str(uuidlib.uuid4())
    row = rows.create(uuid, "live", "xen-01", "xen-02", request_id="req-1")
    assert row["status"] == im.PREPARING and row["dest_info"] is None
    assert rows.active_for(uuid)["id"] == row["id"]
    assert [r["id"] for r in rows.list_active("xen-02")] == [row["id"]]
    row = rows.update(row["id"], {"status": im.MIGRATING,
                                  "dest_info": {"pool": "p2", "sr": "OpaqueRef:x"}},
                      expected_status=im.PREPARING)
    assert row["dest_info"] == {"pool": "p2", "sr": "OpaqueRef:x"}
    with pytest.raises(im.MigrationChanged) as err:
        rows.update(row["id"], {"status": im.FAILED}, expected_status=im.PREPARING)
    assert err.value.params[1:] == [im.PREPARING, im.MIGRATING]
    rows.update(row["id"], {"status": im.COMPLETED}, expected_status=im.ACTIVE)
    assert rows.active_for(uuid) is None
    assert rows.list_active("xen-01") == []
    assert [r["status"] for r in rows.list_for(uuid)] == [im.COMPLETED]


def test_bad_input_is_structured(database):
    rows = im.InstanceMigrations(database)
    with pytest.raises(exceptions.InvalidInput):
        rows.create(str(uuidlib.uuid4()), "teleport", "a", "b")
    row = rows.create(str(uuidlib.uuid4()), "cold", "a", "b")
    with pytest.raises(exceptions.InvalidInput):
        rows.update(row["id"], {"source_host": "c"})
