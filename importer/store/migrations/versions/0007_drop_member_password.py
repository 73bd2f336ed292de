"""The password lives in the account only: members.password_hash is dropped.

Members activated by the activation code of 0005-0006 (which still wrote members.password_hash and
made no account) are carried over first, set-based: an address without an account gets one with
its newest password; a member whose address has an account is linked to it, and the account takes
the member's password when that one was set later (the one its owner last chose). Down: the column
comes back, filled from each linked member's account.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    # A newer password than the account's, set through a membership the account did not know of.
    op.execute(
        """
        UPDATE accounts SET
            password_hash = (
                SELECT m.password_hash FROM members m
                WHERE m.email_key = accounts.email_key AND m.account_id IS NULL
                  AND m.password_hash IS NOT NULL AND m.email IS NOT NULL
                ORDER BY COALESCE(m.activated_at, m.created_at) DESC, m.id DESC LIMIT 1
            ),
            password_changed_at = (
                SELECT MAX(COALESCE(m.activated_at, m.created_at)) FROM members m
                WHERE m.email_key = accounts.email_key AND m.account_id IS NULL
                  AND m.password_hash IS NOT NULL AND m.email IS NOT NULL
            )
        WHERE password_changed_at < (
            SELECT MAX(COALESCE(m.activated_at, m.created_at)) FROM members m
            WHERE m.email_key = accounts.email_key AND m.account_id IS NULL
                  AND m.password_hash IS NOT NULL AND m.email IS NOT NULL
        )
        """
    )
    # Addresses with a password and no account: an account each, with the newest password.
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
              AND account_id IS NULL
              AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.email_key = members.email_key)
        ) ranked
        WHERE newest = 1
        """
    )
    op.execute(
        """
        UPDATE members SET account_id = (
            SELECT accounts.id FROM accounts WHERE accounts.email_key = members.email_key
        )
        WHERE account_id IS NULL AND email_key IS NOT NULL
          AND (password_hash IS NOT NULL OR status = 'active')
          AND EXISTS (SELECT 1 FROM accounts WHERE accounts.email_key = members.email_key)
        """
    )
    # Neither an index nor a constraint names the column: SQLite (3.35+) drops it in place.
    op.execute("ALTER TABLE members DROP COLUMN password_hash")


def downgrade() -> None:
    """Revert this revision."""
    op.add_column("members", sa.Column("password_hash", sa.String(200), nullable=True))
    op.execute(
        """
        UPDATE members SET password_hash = (
            SELECT accounts.password_hash FROM accounts WHERE accounts.id = members.account_id
        )
        WHERE account_id IS NOT NULL
        """
    )
