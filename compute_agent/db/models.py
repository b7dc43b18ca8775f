"""SQLAlchemy 2 declarative models of the agent's tables.

The Alembic migrations under ``migrations/versions`` create exactly these
tables; a functional test compares the migrated schema with this metadata
on every backend so the two cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from compute_agent.db.types import JSONDocument, UTCDateTime, utcnow

# Deterministic constraint names, so later migrations can drop or alter
# constraints by name on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# MariaDB: InnoDB for transactions and row locks, utf8mb4 for any name.
MYSQL_TABLE_ARGS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime()}


class Instance(Base):
    """One instance this agent (or a peer sharing the database) manages."""

    __tablename__ = "instances"
    __table_args__ = (
        sa.Index("ix_instances_host_vm_state", "host", "vm_state"),
        MYSQL_TABLE_ARGS,
    )

    uuid: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255), default="")
    host: Mapped[str | None] = mapped_column(sa.String(255))
    vm_state: Mapped[str] = mapped_column(sa.String(32), default="building")
    task_state: Mapped[str | None] = mapped_column(sa.String(32))
    power_state: Mapped[int] = mapped_column(sa.Integer, default=0)
    progress: Mapped[int] = mapped_column(sa.Integer, default=0)
    flavor: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument())
    image: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument())
    networks: Mapped[list[Any] | None] = mapped_column(JSONDocument())
    # "metadata" is reserved on declarative classes; the column keeps the name.
    instance_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONDocument())
    vm_ref: Mapped[str | None] = mapped_column(sa.String(255))
    shutdown_reason: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    launched_at: Mapped[dt.datetime | None]
    deleted_at: Mapped[dt.datetime | None]


class InstanceFault(Base):
    """A structured error (code + params) recorded against an instance."""

    __tablename__ = "instance_faults"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    instance_uuid: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("instances.uuid", ondelete="CASCADE"), index=True
    )
    code: Mapped[str] = mapped_column(sa.String(255))
    params: Mapped[list[Any] | None] = mapped_column(JSONDocument())
    message: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class InstanceAction(Base):
    """One request (identified by its request id) acting on an instance."""

    __tablename__ = "instance_actions"
    __table_args__ = (
        sa.UniqueConstraint("instance_uuid", "request_id"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    instance_uuid: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("instances.uuid", ondelete="CASCADE")
    )
    action: Mapped[str] = mapped_column(sa.String(64))
    request_id: Mapped[str] = mapped_column(sa.String(255))
    start_time: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finish_time: Mapped[dt.datetime | None]
    result: Mapped[str | None] = mapped_column(sa.String(32))
    message: Mapped[str | None] = mapped_column(sa.Text)


class InstanceActionEvent(Base):
    """A step of an action (e.g. ``compute_spawn``) with its own outcome."""

    __tablename__ = "instance_action_events"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    action_id: Mapped[int] = mapped_column(
        sa.ForeignKey("instance_actions.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(sa.String(255))
    start_time: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finish_time: Mapped[dt.datetime | None]
    result: Mapped[str | None] = mapped_column(sa.String(32))
    traceback: Mapped[str | None] = mapped_column(sa.Text)


class TrackedTask(Base):
    """A dom0 (xapi) task the agent started, written before it is waited on
    so that a restarted agent can find and resolve it."""

    __tablename__ = "tracked_tasks"
    __table_args__ = (
        sa.Index("ix_tracked_tasks_agent_host_status", "agent_host", "status"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(sa.String(255), unique=True)
    uuid: Mapped[str | None] = mapped_column(sa.String(36))
    dom0_host: Mapped[str | None] = mapped_column(sa.String(255))
    instance_uuid: Mapped[str | None] = mapped_column(sa.String(36), index=True)
    operation: Mapped[str | None] = mapped_column(sa.String(64))
    request_id: Mapped[str | None] = mapped_column(sa.String(255))
    agent_host: Mapped[str | None] = mapped_column(sa.String(255))
    status: Mapped[str] = mapped_column(sa.String(32), default="pending")
    progress: Mapped[float] = mapped_column(sa.Double, default=0.0)
    result: Mapped[str | None] = mapped_column(sa.Text)
    error: Mapped[list[Any] | None] = mapped_column(JSONDocument())
    deadline: Mapped[dt.datetime | None]
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument())
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]


class ComputeNode(Base):
    """The resources of one compute host, as last reported by its agent."""

    __tablename__ = "compute_nodes"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(sa.String(255), unique=True)
    vcpus: Mapped[int] = mapped_column(sa.Integer, default=0)
    vcpus_used: Mapped[int] = mapped_column(sa.Integer, default=0)
    memory_mb: Mapped[int] = mapped_column(sa.Integer, default=0)
    memory_mb_used: Mapped[int] = mapped_column(sa.Integer, default=0)
    free_memory_mb: Mapped[int] = mapped_column(sa.Integer, default=0)
    local_gb: Mapped[int] = mapped_column(sa.Integer, default=0)
    local_gb_used: Mapped[int] = mapped_column(sa.Integer, default=0)
    running_vms: Mapped[int] = mapped_column(sa.Integer, default=0)
    hypervisor_type: Mapped[str | None] = mapped_column(sa.String(255))
    hypervisor_version: Mapped[str | None] = mapped_column(sa.String(255))
    hypervisor_hostname: Mapped[str | None] = mapped_column(sa.String(255))
    # Resource keys beyond the columns above, kept so drivers can report more.
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument())
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Service(Base):
    """A running agent process and its heartbeat."""

    __tablename__ = "services"
    __table_args__ = (
        sa.UniqueConstraint("host", "binary"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(sa.String(255))
    binary: Mapped[str] = mapped_column(sa.String(255))
    topic: Mapped[str | None] = mapped_column(sa.String(255))
    report_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    disabled: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class InstanceMigration(Base):
    """One move of an instance between hosts (live or cold), as both agents
    see it: the source agent writes it before it asks anything of the
    destination, and each side's recovery reads it to learn where the
    instance was going and how far it got."""

    __tablename__ = "instance_migrations"
    __table_args__ = (
        sa.Index("ix_instance_migrations_instance_uuid_status", "instance_uuid", "status"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    instance_uuid: Mapped[str] = mapped_column(sa.String(36))
    request_id: Mapped[str | None] = mapped_column(sa.String(255))
    kind: Mapped[str] = mapped_column(sa.String(32))  # live | cold | resize
    source_host: Mapped[str] = mapped_column(sa.String(255))
    dest_host: Mapped[str] = mapped_column(sa.String(255))
    # preparing -> migrating -> completed | failed
    status: Mapped[str] = mapped_column(sa.String(32))
    # What the destination answered (pool, host ref, SR, network; never the
    # migrate_receive token, which holds a session).
    dest_info: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument())
    error: Mapped[list[Any] | None] = mapped_column(JSONDocument())
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class VolumeAttachment(Base):
    """A block-storage volume attached (or being attached or detached) to
    an instance. The target's portal, IQN and LUN are kept (never its CHAP
    credentials) so that the SR can be found and released after a crash."""

    __tablename__ = "volume_attachments"
    __table_args__ = (
        sa.UniqueConstraint("instance_uuid", "volume_id"),
        sa.Index("ix_volume_attachments_host_status", "host", "status"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    instance_uuid: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("instances.uuid", ondelete="CASCADE")
    )
    volume_id: Mapped[str] = mapped_column(sa.String(255))
    host: Mapped[str | None] = mapped_column(sa.String(255))
    # attaching, attached, detaching
    status: Mapped[str] = mapped_column(sa.String(32), default="attaching")
    device: Mapped[str | None] = mapped_column(sa.String(32))
    target_portal: Mapped[str | None] = mapped_column(sa.String(255))
    target_iqn: Mapped[str | None] = mapped_column(sa.String(255))
    target_lun: Mapped[int | None] = mapped_column(sa.Integer)
    sr_uuid: Mapped[str | None] = mapped_column(sa.String(36))
    vdi_uuid: Mapped[str | None] = mapped_column(sa.String(36))
    vbd_uuid: Mapped[str | None] = mapped_column(sa.String(36))
    request_id: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PortAttachment(Base):
    """A network port (a VIF in dom0) attached to an instance."""

    __tablename__ = "port_attachments"
    __table_args__ = (
        sa.UniqueConstraint("port_id"),
        sa.Index("ix_port_attachments_host_status", "host", "status"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    instance_uuid: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("instances.uuid", ondelete="CASCADE"), index=True
    )
    port_id: Mapped[str] = mapped_column(sa.String(255))
    host: Mapped[str | None] = mapped_column(sa.String(255))
    status: Mapped[str] = mapped_column(sa.String(32), default="attaching")
    mac_address: Mapped[str | None] = mapped_column(sa.String(17))
    network: Mapped[str | None] = mapped_column(sa.String(255))
    device: Mapped[str | None] = mapped_column(sa.String(32))
    vif_uuid: Mapped[str | None] = mapped_column(sa.String(36))
    request_id: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
class ConsoleToken(Base):
    """A console token get_vnc_console issued: only its SHA-256 is kept (the
    token is a secret the browser holds), the instance it opens, where dom0
    serves that console, and when it expires or was used (once)."""

    __tablename__ = "console_tokens"
    __table_args__ = (
        sa.Index("ix_console_tokens_expires_at", "expires_at"),
        MYSQL_TABLE_ARGS,
    )

    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    instance_uuid: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("instances.uuid", ondelete="CASCADE"), index=True
    )
    host: Mapped[str] = mapped_column(sa.String(255))
    console_location: Mapped[str] = mapped_column(sa.Text)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
