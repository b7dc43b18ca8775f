"""Initial schema: instances, faults, actions and events, tracked tasks,
compute nodes and services.

Revision ID: 0001_initial
Revises:
Create Date: 2025-01-01 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from compute_agent.db.types import JSONDocument, UTCDateTime

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("vm_state", sa.String(32), nullable=False),
        sa.Column("task_state", sa.String(32), nullable=True),
        sa.Column("power_state", sa.Integer, nullable=False),
        sa.Column("progress", sa.Integer, nullable=False),
        sa.Column("flavor", JSONDocument(), nullable=True),
        sa.Column("image", JSONDocument(), nullable=True),
        sa.Column("networks", JSONDocument(), nullable=True),
        sa.Column("metadata", JSONDocument(), nullable=True),
        sa.Column("vm_ref", sa.String(255), nullable=True),
        sa.Column("shutdown_reason", sa.String(255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("launched_at", UTCDateTime(), nullable=True),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("uuid", name="pk_instances"),
        **MYSQL,
    )
    op.create_index("ix_instances_host_vm_state", "instances", ["host", "vm_state"])

    op.create_table(
        "instance_faults",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("code", sa.String(255), nullable=False),
        sa.Column("params", JSONDocument(), nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_instance_faults"),
        sa.ForeignKeyConstraint(
            ["instance_uuid"], ["instances.uuid"], ondelete="CASCADE",
            name="fk_instance_faults_instance_uuid_instances",
        ),
        **MYSQL,
    )
    op.create_index(
        "ix_instance_faults_instance_uuid", "instance_faults", ["instance_uuid"]
    )

    op.create_table(
        "instance_actions",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(255), nullable=False),
        sa.Column("start_time", UTCDateTime(), nullable=False),
        sa.Column("finish_time", UTCDateTime(), nullable=True),
        sa.Column("result", sa.String(32), nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_instance_actions"),
        sa.ForeignKeyConstraint(
            ["instance_uuid"], ["instances.uuid"], ondelete="CASCADE",
            name="fk_instance_actions_instance_uuid_instances",
        ),
        sa.UniqueConstraint(
            "instance_uuid", "request_id", name="uq_instance_actions_instance_uuid_request_id"
        ),
        **MYSQL,
    )

    op.create_table(
        "instance_action_events",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("action_id", sa.Integer, nullable=False),
        sa.Column("event", sa.String(255), nullable=False),
        sa.Column("start_time", UTCDateTime(), nullable=False),
        sa.Column("finish_time", UTCDateTime(), nullable=True),
        sa.Column("result", sa.String(32), nullable=True),
        sa.Column("traceback", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_instance_action_events"),
        sa.ForeignKeyConstraint(
            ["action_id"], ["instance_actions.id"], ondelete="CASCADE",
            name="fk_instance_action_events_action_id_instance_actions",
        ),
        **MYSQL,
    )
    op.create_index(
        "ix_instance_action_events_action_id", "instance_action_events", ["action_id"]
    )

    op.create_table(
        "tracked_tasks",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("ref", sa.String(255), nullable=False),
        sa.Column("uuid", sa.String(36), nullable=True),
        sa.Column("dom0_host", sa.String(255), nullable=True),
        sa.Column("instance_uuid", sa.String(36), nullable=True),
        sa.Column("operation", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(255), nullable=True),
        sa.Column("agent_host", sa.String(255), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("progress", sa.Double, nullable=False),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("error", JSONDocument(), nullable=True),
        sa.Column("deadline", UTCDateTime(), nullable=True),
        sa.Column("extra", JSONDocument(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tracked_tasks"),
        sa.UniqueConstraint("ref", name="uq_tracked_tasks_ref"),
        **MYSQL,
    )
    op.create_index(
        "ix_tracked_tasks_agent_host_status", "tracked_tasks", ["agent_host", "status"]
    )
    op.create_index("ix_tracked_tasks_instance_uuid", "tracked_tasks", ["instance_uuid"])

    op.create_table(
        "compute_nodes",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("vcpus", sa.Integer, nullable=False),
        sa.Column("vcpus_used", sa.Integer, nullable=False),
        sa.Column("memory_mb", sa.Integer, nullable=False),
        sa.Column("memory_mb_used", sa.Integer, nullable=False),
        sa.Column("free_memory_mb", sa.Integer, nullable=False),
        sa.Column("local_gb", sa.Integer, nullable=False),
        sa.Column("local_gb_used", sa.Integer, nullable=False),
        sa.Column("running_vms", sa.Integer, nullable=False),
        sa.Column("hypervisor_type", sa.String(255), nullable=True),
        sa.Column("hypervisor_version", sa.String(255), nullable=True),
        sa.Column("hypervisor_hostname", sa.String(255), nullable=True),
        sa.Column("extra", JSONDocument(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_compute_nodes"),
        sa.UniqueConstraint("host", name="uq_compute_nodes_host"),
        **MYSQL,
    )

    op.create_table(
        "services",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("binary", sa.String(255), nullable=False),
        sa.Column("topic", sa.String(255), nullable=True),
        sa.Column("report_count", sa.Integer, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_services"),
        sa.UniqueConstraint("host", "binary", name="uq_services_host_binary"),
        **MYSQL,
    )


def downgrade() -> None:
    for table in (
        "services",
        "compute_nodes",
        "tracked_tasks",
        "instance_action_events",
        "instance_actions",
        "instance_faults",
        "instances",
    ):
        op.drop_table(table)
