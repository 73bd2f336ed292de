"""Activation: set-password tokens and each organization's password policy.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("organizations") as batch:
        batch.add_column(sa.Column("password_min_length", sa.Integer(), nullable=False, server_default="8"))
        batch.add_column(
            sa.Column("password_require_symbol", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "activation_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("member_id", sa.Integer(), sa.ForeignKey("members.id", ondelete="CASCADE"), nullable=False),
        sa.Column("token_hash", sa.String(128), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_activation_tokens_member_id", "activation_tokens", ["member_id"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_activation_tokens_member_id", table_name="activation_tokens")
    op.drop_table("activation_tokens")
    with op.batch_alter_table("organizations") as batch:
        batch.drop_column("password_require_symbol")
        batch.drop_column("password_min_length")
