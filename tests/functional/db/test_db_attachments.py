"""The attachment tables' API (compute_agent.db.attachments) on real
SQLite, PostgreSQL and MariaDB: uniqueness (a volume once per instance, a
port once anywhere), updates, listing filters and the cascade with the
instance."""

from __future__ import annotations

import uuid as uuidlib

import pytest
import sqlalchemy as sa

from compute_agent.db import models
from compute_agent.db.attachments import AttachmentExists, AttachmentNotFound, AttachmentTable


def instance(database, host="h1") -> str:
    uuid = str(uuidlib.uuid4())
    database.create_instance({"uuid": uuid, "name": "vm", "host": host})
    return uuid


def test_rows_unique_update_list_and_cascade(database):
    volumes, ports = AttachmentTable(database, "volume"), AttachmentTable(database, "port")
    a, b = instance(database), instance(database)
    row = volumes.add({"instance_uuid": a, "volume_id": "v1", "host": "h1",
                       "target_portal": "192.0.2.1:3260", "target_iqn": "iqn.x:1",
                       "target_lun": 0})
    assert (row["status"], row["target_lun"]) == ("attaching", 0)
    with pytest.raises(AttachmentExists) as e:
        volumes.add({"instance_uuid": a, "volume_id": "v1", "host": "h1"})
    assert e.value.params == ["volume", "v1", a]
    volumes.add({"instance_uuid": b, "volume_id": "v1", "host": "h1"})  # the table allows it
    ports.add({"instance_uuid": a, "port_id": "p1", "host": "h1"})
    with pytest.raises(AttachmentExists) as e:
        ports.add({"instance_uuid": b, "port_id": "p1", "host": "h1"})
    assert e.value.params == ["port", "p1", a]
    updated = volumes.update(a, "v1", {"status": "attached", "device": "xvdb"})
    assert (updated["status"], updated["device"]) == ("attached", "xvdb")
    with pytest.raises(AttachmentNotFound):
        volumes.update(a, "nope", {"status": "attached"})
    assert [r["volume_id"] for r in volumes.list(a)] == ["v1"]
    assert len(volumes.list(host="h1")) == 2 and volumes.list(status="attaching")[0][
        "instance_uuid"] == b
    assert volumes.find("v1", b)["instance_uuid"] == b
    assert volumes.delete(b, "v1") is True and volumes.delete(b, "v1") is False
    with database.engine.begin() as conn:  # the rows go with their instance
        conn.execute(sa.delete(models.Instance.__table__).where(
            models.Instance.__table__.c.uuid == a))
    assert volumes.list(a) == [] and ports.list(a) == []
