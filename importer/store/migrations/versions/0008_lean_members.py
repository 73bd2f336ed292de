"""A leaner members table for the bulk path: two indexes an import paid for on every row are gone.

- ix_members_batch (batch_id, source_row): a text batch id and a row number in an index entry for
  every imported member (19% of the SQLite insert's CPU on a million rows). A batch's members are
  found instead through the range of member ids it wrote, kept on the batch
  (batches.first_member_id, last_member_id: every member of the batch has an id in it; NULL when
  the batch wrote none), and the primary key: `batch_id = ? AND id BETWEEN first AND last`.
  Existing batches get their range from their members here, set-based.
- ix_members_team_page (team_id, id): pages of one team now walk ix_members_org_page and keep
  the team's rows (one page of a team holding an eighth of the members reads about 400 index
  entries); deleting a team scans for its members once.

The organization's pages (ix_members_org_page), the unique indexes and every foreign key stay.
Down: the two indexes come back and the range columns go.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.add_column("batches", sa.Column("first_member_id", sa.Integer(), nullable=True))
    op.add_column("batches", sa.Column("last_member_id", sa.Integer(), nullable=True))
    # One pass over the batch index, while it is still there.
    op.execute(
        """
        UPDATE batches SET
            first_member_id = (SELECT MIN(m.id) FROM members m WHERE m.batch_id = batches.id),
            last_member_id = (SELECT MAX(m.id) FROM members m WHERE m.batch_id = batches.id)
        """
    )
    op.drop_index("ix_members_batch", table_name="members")
    op.drop_index("ix_members_team_page", table_name="members")


def downgrade() -> None:
    """Revert this revision."""
    op.create_index(
        "ix_members_team_page",
        "members",
        ["team_id", "id"],
        sqlite_where=sa.text("team_id IS NOT NULL"),
        postgresql_where=sa.text("team_id IS NOT NULL"),
    )
    op.create_index("ix_members_batch", "members", ["batch_id", "source_row"])
    if op.get_bind().dialect.name == "sqlite":
        # No index or constraint names them: SQLite (3.35+) drops them in place.
        op.execute("ALTER TABLE batches DROP COLUMN last_member_id")
        op.execute("ALTER TABLE batches DROP COLUMN first_member_id")
    else:
        op.drop_column("batches", "last_member_id")
        op.drop_column("batches", "first_member_id")
