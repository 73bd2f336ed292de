"""Signed-in sessions, kept in web_sessions: the cookie holds a random id, the table its SHA-256.

A new id at every sign-in (an id seen before signing in is never promoted); a session unused for
the idle time is gone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from importer.store.models import Account, Member, Organization, WebSession, utcnow
from importer.values import Role, Status

SESSION_COOKIE = "importer_session"
# last_seen_at is written at most this often: a page view is not a write each time.
_TOUCH_EVERY = dt.timedelta(minutes=1)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class Membership:
    """One organization the signed-in account is an active member of."""

    organization_id: int
    organization: str
    role: Role
    member_id: int

    @property
    def admin(self) -> bool:
        """Owner or Admin: may use the organization's admin pages."""
        return self.role in (Role.OWNER, Role.ADMIN)


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is signed in: the account and its active memberships."""

    account_id: int
    email: str
    memberships: tuple[Membership, ...]

    @property
    def admin_of(self) -> tuple[Membership, ...]:
        """The organizations this account administers."""
        return tuple(m for m in self.memberships if m.admin)

    def membership(self, organization_id: int) -> Membership | None:
        """The account's membership of that organization, if active."""
        return next((m for m in self.memberships if m.organization_id == organization_id), None)


def start_session(engine: Engine, *, account_id: int) -> str:
    """A new session for the account; returns the id for the cookie (stored only hashed)."""
    token = secrets.token_urlsafe(32)
    with Session(engine) as session, session.begin():
        session.add(WebSession(token_hash=_hash(token), account_id=account_id))
    return token


def end_session(engine: Engine, token: str) -> None:
    """Forget a session (signing out)."""
    with Session(engine) as session, session.begin():
        session.execute(delete(WebSession).where(WebSession.token_hash == _hash(token)))


def memberships(session: Session, account_id: int) -> tuple[Membership, ...]:
    """The account's active memberships, oldest organization first."""
    rows = session.execute(
        select(Member.organization_id, Organization.name, Member.role, Member.id)
        .join(Organization, Organization.id == Member.organization_id)
        .where(Member.account_id == account_id, Member.status == Status.ACTIVE)
        .order_by(Member.organization_id)
    ).all()
    return tuple(Membership(org_id, name, role, member_id) for org_id, name, role, member_id in rows)


def viewer_of(engine: Engine, token: str, *, idle_seconds: int) -> Viewer | None:
    """The signed-in account of a session id, or None (unknown, or idle too long: then removed)."""
    now = utcnow()
    with Session(engine) as session, session.begin():
        row = session.scalar(select(WebSession).where(WebSession.token_hash == _hash(token)))
        if row is None:
            return None
        if now - row.last_seen_at > dt.timedelta(seconds=idle_seconds):
            session.delete(row)
            return None
        if now - row.last_seen_at > _TOUCH_EVERY:
            row.last_seen_at = now
        account = session.get(Account, row.account_id)
        if account is None:
            return None
        return Viewer(account.id, account.email, memberships(session, account.id))
