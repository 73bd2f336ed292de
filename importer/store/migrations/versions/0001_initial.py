"""Organizations, teams, batches and members.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "organizations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "teams",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "organization_id",
            sa.Integer(),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("name_key", sa.String(200), nullable=False),
        sa.UniqueConstraint("organization_id", "name_key"),
    )
    op.create_table(
        "batches",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "organization_id",
            sa.Integer(),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("user_type", sa.String(20), nullable=False),
        sa.Column("file_name", sa.String(400), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("actor_email", sa.String(320), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("all_or_nothing", sa.Boolean(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("report_dir", sa.String(1000), nullable=True),
    )
    op.create_table(
        "members",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "organization_id",
            sa.Integer(),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(400), nullable=False),
        sa.Column("name_key", sa.String(400), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("email_key", sa.String(320), nullable=True),
        sa.Column("user_type", sa.String(20), nullable=False),
        sa.Column(
            "role",
            sa.Enum("Owner", "Admin", "Member", name="member_role", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("team_id", sa.Integer(), sa.ForeignKey("teams.id", ondelete="SET NULL"), nullable=True),
        sa.Column("team_ref", sa.Integer(), nullable=False, server_default="0"),
        sa.Column(
            "status",
            sa.Enum("pending", "active", name="member_status", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("batch_id", sa.String(40), sa.ForeignKey("batches.id", ondelete="SET NULL"), nullable=True),
        sa.Column("source_row", sa.Integer(), nullable=True),
        sa.Column("pin_hash", sa.String(200), nullable=True),
        sa.Column("password_hash", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("invited_at", sa.DateTime(), nullable=True),
        sa.Column("invite_error", sa.Text(), nullable=True),
        sa.Column("activated_at", sa.DateTime(), nullable=True),
    )
    op.create_index(
        "ux_members_org_email",
        "members",
        ["organization_id", "email_key"],
        unique=True,
        sqlite_where=sa.text("email_key IS NOT NULL"),
        postgresql_where=sa.text("email_key IS NOT NULL"),
    )
    op.create_index(
        "ux_members_org_name_team",
        "members",
        ["organization_id", "name_key", "team_ref"],
        unique=True,
        sqlite_where=sa.text("email_key IS NULL"),
        postgresql_where=sa.text("email_key IS NULL"),
    )
    op.create_index("ix_members_batch", "members", ["batch_id", "source_row"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("members")
    op.drop_table("batches")
    op.drop_table("teams")
    op.drop_table("organizations")
