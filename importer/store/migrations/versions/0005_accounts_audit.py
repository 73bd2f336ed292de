"""Accounts (one password per address, across organizations), deactivated members, audit events,
and the indexes that page through a million members.

Every member with a password becomes an account, one per address (emails.email_key), or joins
the one its address already has: when two memberships of one address had different passwords,
the account keeps the password of the most recently activated one (activated_at, then the
highest id), and the other password is no longer accepted. The account's created_at is the
address's first activation. Each membership of the address that is active (also an active
membership without a password, such as an Owner made by `org create`) links to the account;
pending ones link when they are accepted. members.password_hash stays (nothing is lost, and the
activation code of this release still writes it); accounts.password_hash is the one to check.

Indexes for keyset paging (`WHERE organization_id = ? [AND filter] AND id > ? ORDER BY id
LIMIT n`): (organization_id, id); (organization_id, status, id) for the statuses an import never
writes (partial, so a bulk import pays nothing for it); (team_id, id) where there is a team;
account_id where there is one. audit_events: (organization_id, id), newest first.

Downgrade: deactivated members become active (or pending, if never activated), a membership
that only its account held a password for gets that password back, then the new tables, columns
and indexes go.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _key_type() -> sa.types.TypeEngine[str]:
    if op.get_bind().dialect.name == "postgresql":
        return sa.String(320, collation="C")
    return sa.String(320)


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", _key_type(), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("password_changed_at", sa.DateTime(), nullable=False),
    )
    # A plain ADD COLUMN, NULL for every existing row: no rebuild of a million-row table. SQLite
    # takes a REFERENCES clause there (Alembic would rebuild the table to add the constraint). No ON
    # DELETE: an account is never deleted (and SQLAlchemy reads no ON DELETE of an inline clause).
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE members ADD COLUMN account_id INTEGER REFERENCES accounts (id)")
    else:
        op.add_column(
            "members",
            sa.Column(
                "account_id",
                sa.Integer(),
                sa.ForeignKey("accounts.id", name="fk_members_account_id"),
                nullable=True,
            ),
        )
    op.add_column("members", sa.Column("deactivated_at", sa.DateTime(), nullable=True))
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(330), nullable=False),
        sa.Column(
            "organization_id",
            sa.Integer(),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("action", sa.Enum(name="audit_action", native_enum=False, length=40), nullable=False),
        sa.Column("subject", sa.String(400), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index("ix_audit_events_org", "audit_events", ["organization_id", "id"])
    _carry_passwords_over()
    op.create_index("ix_members_org_page", "members", ["organization_id", "id"])
    op.create_index(
        "ix_members_org_status_page",
        "members",
        ["organization_id", "status", "id"],
        sqlite_where=sa.text("status <> 'pending'"),
        postgresql_where=sa.text("status <> 'pending'"),
    )
    op.create_index(
        "ix_members_team_page",
        "members",
        ["team_id", "id"],
        sqlite_where=sa.text("team_id IS NOT NULL"),
        postgresql_where=sa.text("team_id IS NOT NULL"),
    )
    op.create_index(
        "ix_members_account",
        "members",
        ["account_id"],
        sqlite_where=sa.text("account_id IS NOT NULL"),
        postgresql_where=sa.text("account_id IS NOT NULL"),
    )


def _carry_passwords_over() -> None:
    """Set-based (a window over the members with a password), never a loop over rows in Python."""
    op.execute(
        """
        INSERT INTO accounts (email, email_key, password_hash, created_at, password_changed_at)
        SELECT email, email_key, password_hash, first_at, last_at FROM (
            SELECT email, email_key, password_hash,
                   COALESCE(activated_at, created_at) AS last_at,
                   MIN(COALESCE(activated_at, created_at)) OVER (PARTITION BY email_key) AS first_at,
                   ROW_NUMBER() OVER (
                       PARTITION BY email_key
                       ORDER BY COALESCE(activated_at, created_at) DESC, id DESC
                   ) AS newest
            FROM members
            WHERE password_hash IS NOT NULL AND email_key IS NOT NULL AND email IS NOT NULL
        ) ranked
        WHERE newest = 1
        """
    )
    op.execute(
        """
        UPDATE members SET account_id = (
            SELECT accounts.id FROM accounts WHERE accounts.email_key = members.email_key
        )
        WHERE email_key IS NOT NULL
          AND (password_hash IS NOT NULL OR status = 'active')
          AND EXISTS (SELECT 1 FROM accounts WHERE accounts.email_key = members.email_key)
        """
    )


def downgrade() -> None:
    """Revert this revision."""
    op.execute(
        "UPDATE members SET status = CASE WHEN activated_at IS NULL THEN 'pending' ELSE 'active' END "
        "WHERE status = 'deactivated'"
    )
    op.execute(
        """
        UPDATE members SET password_hash = (
            SELECT accounts.password_hash FROM accounts WHERE accounts.id = members.account_id
        )
        WHERE account_id IS NOT NULL AND password_hash IS NULL
        """
    )
    for index in (
        "ix_members_account",
        "ix_members_team_page",
        "ix_members_org_status_page",
        "ix_members_org_page",
    ):
        op.drop_index(index, table_name="members")
    op.drop_index("ix_audit_events_org", table_name="audit_events")
    op.drop_table("audit_events")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite drops a column only when no constraint names it: the table is rebuilt without it.
        with op.batch_alter_table("members", recreate="always") as batch:
            batch.drop_column("account_id")
            batch.drop_column("deactivated_at")
    else:
        op.drop_constraint("fk_members_account_id", "members", type_="foreignkey")
        op.drop_column("members", "account_id")
        op.drop_column("members", "deactivated_at")
    op.drop_table("accounts")
