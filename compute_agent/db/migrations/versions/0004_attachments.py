"""Volume and port attachments (issue 10).

Revision ID: 0004_attachments
Revises: 0003_instance_migrations
Create Date: 2026-11-30 07:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from compute_agent.db.types import UTCDateTime

revision: str = "0004_attachments"
down_revision: str | None = "0003_instance_migrations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "volume_attachments",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("volume_id", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("device", sa.String(32), nullable=True),
        sa.Column("target_portal", sa.String(255), nullable=True),
        sa.Column("target_iqn", sa.String(255), nullable=True),
        sa.Column("target_lun", sa.Integer, nullable=True),
        sa.Column("sr_uuid", sa.String(36), nullable=True),
        sa.Column("vdi_uuid", sa.String(36), nullable=True),
        sa.Column("vbd_uuid", sa.String(36), nullable=True),
        sa.Column("request_id", sa.String(255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_volume_attachments"),
        sa.ForeignKeyConstraint(
            ["instance_uuid"], ["instances.uuid"], ondelete="CASCADE",
            name="fk_volume_attachments_instance_uuid_instances",
        ),
        sa.UniqueConstraint("instance_uuid", "volume_id",
                            name="uq_volume_attachments_instance_uuid_volume_id"),
        **MYSQL,
    )
    op.create_index("ix_volume_attachments_host_status", "volume_attachments",
                    ["host", "status"])
    op.create_table(
        "port_attachments",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("port_id", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("mac_address", sa.String(17), nullable=True),
        sa.Column("network", sa.String(255), nullable=True),
        sa.Column("device", sa.String(32), nullable=True),
        sa.Column("vif_uuid", sa.String(36), nullable=True),
        sa.Column("request_id", sa.String(255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_port_attachments"),
        sa.ForeignKeyConstraint(
            ["instance_uuid"], ["instances.uuid"], ondelete="CASCADE",
            name="fk_port_attachments_instance_uuid_instances",
        ),
        sa.UniqueConstraint("port_id", name="uq_port_attachments_port_id"),
        **MYSQL,
    )
    op.create_index("ix_port_attachments_host_status", "port_attachments", ["host", "status"])
    op.create_index("ix_port_attachments_instance_uuid", "port_attachments",
                    ["instance_uuid"])


def downgrade() -> None:
    op.drop_table("port_attachments")
    op.drop_table("volume_attachments")
