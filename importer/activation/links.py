"""A link handed over directly rather than emailed: the new Owner's, which `org create` shows once."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session

from importer.accounts.audit import CLI_PREFIX, record
from importer.activation.tokens import (
    ACTIVATION_DAYS,
    activation_link,
    check_base_url,
    format_moment,
    hash_token,
    naive_utc,
    new_token,
)
from importer.errors import NotFoundError
from importer.store.models import ActivationToken, AuditAction, Member, Role, Status
from importer.store.orgs import find_organization


@dataclass(frozen=True, slots=True)
class IssuedLink:
    """A fresh activation link for one pending member, shown once (only its hash is kept)."""

    member_id: int
    email: str
    organization: str
    link: str
    expires_at: dt.datetime

    @property
    def expires_on(self) -> str:
        """The expiry in words, as the emails state it."""
        return format_moment(self.expires_at)


def issue_owner_link(
    engine: Engine,
    org_ref: str,
    *,
    base_url: str,
    actor: str = CLI_PREFIX,
    now: dt.datetime | None = None,
) -> IssuedLink:
    """A new activation link for the organization's pending Owner, to hand over directly.

    It counts as the Owner's invitation (a send run then leaves the Owner alone unless it resends,
    which replaces this link); any older link of the Owner stops working; audited as sent.
    """
    base = check_base_url(base_url)
    at = naive_utc(now)
    token = new_token()
    with Session(engine) as session, session.begin():
        org = find_organization(session, org_ref)
        owner = session.scalar(
            select(Member)
            .where(
                Member.organization_id == org.id,
                Member.role == Role.OWNER,
                Member.status == Status.PENDING,
                Member.email.is_not(None),
            )
            .order_by(Member.id)
            .limit(1)
        )
        if owner is None or owner.email is None:
            raise NotFoundError(f"{org.name} has no pending Owner: its Owner has already activated.")
        session.execute(
            update(ActivationToken)
            .where(
                ActivationToken.member_id == owner.id,
                ActivationToken.used_at.is_(None),
                ActivationToken.revoked_at.is_(None),
            )
            .values(revoked_at=at)
        )
        expires_at = at + dt.timedelta(days=ACTIVATION_DAYS)
        session.execute(
            insert(ActivationToken).values(
                member_id=owner.id, token_hash=hash_token(token), created_at=at, expires_at=expires_at
            )
        )
        again = owner.invited_at is not None
        owner.invited_at = at
        owner.invite_error = None
        record(
            session,
            actor=actor,
            action=AuditAction.INVITATION_RESENT if again else AuditAction.INVITATION_SENT,
            organization_id=org.id,
            subject=owner.email,
            detail="the Owner's activation link, shown once",
            at=at,
        )
        return IssuedLink(
            member_id=owner.id,
            email=owner.email,
            organization=org.name,
            link=activation_link(base, token=token),
            expires_at=expires_at,
        )
