"""Activating: a pending member sets a password from the token of an activation email."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from importer.accounts.passwords import PasswordPolicy, hash_password
from importer.activation.tokens import format_moment, hash_token, naive_utc, token_from
from importer.errors import (
    ActivationError,
    Remedy,
)
from importer.store.models import ActivationToken, Member, Status

# The member cannot fix these: an admin can, by sending a new link (Remedy.RESEND_INVITATION).
_RESEND_HINT = "ask your admin to send a new one"


@dataclass(frozen=True, slots=True)
class ActivatedMember:
    """The member an activation made active."""

    member_id: int
    name: str
    email: str
    organization: str


def _usable_token(session: Session, token_hash: str, *, at: dt.datetime) -> tuple[ActivationToken, Member]:
    """The token row (locked) and its member; an ActivationError says why it cannot be used."""
    row = session.scalar(
        select(ActivationToken).where(ActivationToken.token_hash == token_hash).with_for_update()
    )
    if row is None:
        raise ActivationError(
            "This activation link is not valid: check that the whole link was copied from the "
            f"email, or {_RESEND_HINT}.",
            remedy=Remedy.RESEND_INVITATION,
        )
    if row.used_at is not None:
        raise ActivationError(
            f"This activation link has already been used (on {format_moment(row.used_at)}); "
            "sign in with your email and password."
        )
    member = session.get_one(Member, row.member_id, with_for_update=True)
    if member.status is not Status.PENDING:
        raise ActivationError("This account is already active; sign in with your email and password.")
    if row.revoked_at is not None:
        raise ActivationError(
            "This activation link was replaced by a newer one: use the link in the most recent "
            f"email, or {_RESEND_HINT}.",
            remedy=Remedy.RESEND_INVITATION,
        )
    if at >= row.expires_at:
        raise ActivationError(
            f"This activation link expired on {format_moment(row.expires_at)}; {_RESEND_HINT}.",
            remedy=Remedy.RESEND_INVITATION,
        )
    return row, member


def check_token(engine: Engine, token: str, *, now: dt.datetime | None = None) -> ActivatedMember:
    """The pending member a token (or pasted link) would activate; an ActivationError says why not.

    For asking the password only once the link is known to work: `activate` checks again.
    """
    with Session(engine) as session:
        _, member = _usable_token(session, hash_token(token_from(token)), at=naive_utc(now))
        return ActivatedMember(
            member_id=member.id,
            name=member.name,
            email=member.email or "",
            organization=member.organization.name,
        )


def activate(engine: Engine, token: str, password: str, *, now: dt.datetime | None = None) -> ActivatedMember:
    """Set a pending member's password from an activation token; the member becomes active."""
    token_hash = hash_token(token_from(token))
    at = naive_utc(now)
    with Session(engine) as session:
        _, member = _usable_token(session, token_hash, at=at)
        problems = PasswordPolicy.for_organization(member.organization).problems(password)
        if problems:
            raise ActivationError(
                f"This password does not meet the policy of {member.organization.name}: "
                f"it needs {'; '.join(problems)}."
            )
    # The slow hash is computed outside the write transaction, then everything is checked again.
    password_hash = hash_password(password)
    with Session(engine) as session, session.begin():
        row, member = _usable_token(session, token_hash, at=at)
        member.password_hash = password_hash
        member.status = Status.ACTIVE
        member.activated_at = at
        row.used_at = at
        session.execute(
            update(ActivationToken)
            .where(
                ActivationToken.member_id == member.id,
                ActivationToken.id != row.id,
                ActivationToken.used_at.is_(None),
                ActivationToken.revoked_at.is_(None),
            )
            .values(revoked_at=at)
        )
        return ActivatedMember(
            member_id=member.id,
            name=member.name,
            email=member.email or "",
            organization=member.organization.name,
        )
