"""members.email_key recomputed: the domain compared as email-validator normalizes it (IDNA).

Until now an address's key was the address as NFC, then lower-case, so `ann@bücher.de` and
`ann@xn--bcher-kva.de` (or a domain typed in full-width letters) were two members. The key is
now emails.email_key: the local part as before, the domain IDNA-normalized. Only keys that can
change are recomputed: those with a non-ASCII character or a punycode (`xn--`) label; a plain
ASCII key is already its own new form.

A mailbox already created twice under two spellings stays two members (a migration never
deletes a member): the member whose key already is the new form keeps it, or else the oldest;
the other keeps its old key, and later imports of either spelling find the first.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from importer.addresses import email_key
from importer.values import text_key

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_members = sa.table(
    "members",
    sa.column("id", sa.Integer),
    sa.column("organization_id", sa.Integer),
    sa.column("email", sa.String),
    sa.column("email_key", sa.String),
)


def upgrade() -> None:
    """Apply this revision."""
    _rekey(email_key)


def downgrade() -> None:
    """Revert this revision: keys back to NFC, then lower-case (never a collision: that form is finer)."""
    _rekey(text_key)


def _rekey(key_of: Callable[[str], str]) -> None:
    """Set each member's email_key to key_of(email) where that changes it and no one else has it."""
    conn = op.get_bind()
    changes: list[tuple[int, int, str]] = []
    rows = conn.execute(
        sa.select(_members.c.id, _members.c.organization_id, _members.c.email, _members.c.email_key)
        .where(_members.c.email_key.is_not(None), _members.c.email.is_not(None))
        .order_by(_members.c.id)
        .execution_options(yield_per=10_000)  # streamed: a big table is never held whole
    )
    for member_id, org_id, email, old in rows:
        if old.isascii() and "xn--" not in old and email.isascii() and "xn--" not in email.lower():
            continue  # ASCII without punycode: every form of it is the address, lower-cased
        new = key_of(email)
        if new != old:
            changes.append((member_id, org_id, new))
    taken = sa.select(_members.c.id).where(
        _members.c.organization_id == sa.bindparam("org_id"), _members.c.email_key == sa.bindparam("key")
    )
    for member_id, org_id, new in changes:
        if conn.execute(taken, {"org_id": org_id, "key": new}).first() is None:
            conn.execute(sa.update(_members).where(_members.c.id == member_id).values(email_key=new))
