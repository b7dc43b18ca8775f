"""Console tokens for the noVNC proxy (issue 11).

Revision ID: 0002_console_tokens
Revises: 0001_initial
Create Date: 2026-11-30 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from compute_agent.db.types import UTCDateTime

revision: str = "0002_console_tokens"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "console_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("console_location", sa.Text(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_uuid"], ["instances.uuid"],
            name="fk_console_tokens_instance_uuid_instances", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash", name="pk_console_tokens"),
        **MYSQL,
    )
    op.create_index("ix_console_tokens_instance_uuid", "console_tokens", ["instance_uuid"])
    op.create_index("ix_console_tokens_expires_at", "console_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_table("console_tokens")
