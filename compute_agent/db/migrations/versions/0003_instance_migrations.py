"""instance_migrations: one row per move of an instance between hosts.

Revision ID: 0003_instance_migrations
Revises: 0002_console_tokens
Create Date: 2026-11-30 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from compute_agent.db.types import JSONDocument, UTCDateTime

revision: str = "0003_instance_migrations"
down_revision: str | None = "0002_console_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "instance_migrations",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("request_id", sa.String(255), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("source_host", sa.String(255), nullable=False),
        sa.Column("dest_host", sa.String(255), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("dest_info", JSONDocument(), nullable=True),
        sa.Column("error", JSONDocument(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_instance_migrations"),
        **MYSQL,
    )
    op.create_index("ix_instance_migrations_instance_uuid_status", "instance_migrations",
                    ["instance_uuid", "status"])


def downgrade() -> None:
    op.drop_index("ix_instance_migrations_instance_uuid_status",
                  table_name="instance_migrations")
    op.drop_table("instance_migrations")
