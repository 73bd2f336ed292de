"""Activating: a pending member follows the link of an activation or invitation email.

The first activation of an address sets its password and creates the account; an address that
already has an account accepts the invitation without a password (accounts.activate_membership).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from importer.accounts.accounts import activate_membership
from importer.accounts.audit import CLI_PREFIX
from importer.accounts.passwords import PasswordPolicy, hash_password
from importer.activation.tokens import format_moment, hash_token, naive_utc, token_from
from importer.addresses import email_key
from importer.errors import ActivationError, Remedy
from importer.store.models import Account, ActivationToken, Batch, Member, Status
from importer.values import Role

# The member cannot fix these: an admin can, by sending a new link (Remedy.RESEND_INVITATION).
_RESEND_HINT = "ask your admin to send a new one"


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """What a working link leads to: whose membership, where, and whether the address already
    has an account (then no password is asked: the invitation is accepted)."""

    member_id: int
    name: str
    email: str
    organization: str
    has_account: bool
    policy: PasswordPolicy


@dataclass(frozen=True, slots=True)
class ActivatedMember:
    """The membership a link made active: a new account (`new_account`) or an invitation accepted."""

    member_id: int
    name: str
    email: str
    organization: str
    new_account: bool


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


def _has_account(session: Session, member: Member) -> bool:
    return member.email_key is not None and (
        session.scalar(select(Account.id).where(Account.email_key == member.email_key)) is not None
    )


def check_token(engine: Engine, token: str, *, now: dt.datetime | None = None) -> LinkInfo:
    """Where a token (or pasted link) leads; an ActivationError says why it cannot be used.

    Opening a link never uses it up (mail scanners open links): `activate` checks again.
    """
    with Session(engine) as session:
        _, member = _usable_token(session, hash_token(token_from(token)), at=naive_utc(now))
        return LinkInfo(
            member_id=member.id,
            name=member.name,
            email=member.email or "",
            organization=member.organization.name,
            has_account=_has_account(session, member),
            policy=PasswordPolicy.for_organization(member.organization),
        )


def activate(
    engine: Engine, token: str, password: str | None, *, now: dt.datetime | None = None
) -> ActivatedMember:
    """Follow a link: the first activation of an address sets its password (the account is made);
    an address with an account accepts the invitation, with no password (one given is refused).

    The token is used up, and the member's other live links die, in the same transaction as the
    membership, its account and the audit event.
    """
    token_hash = hash_token(token_from(token))
    at = naive_utc(now)
    hashed: str | None = None
    if password is not None:
        link = check_token(engine, token, now=at)
        if not link.has_account:
            refusal = link.policy.refusal(password, email=link.email, whose=link.organization)
            if refusal is not None:
                raise ActivationError(refusal)
            # The slow hash outside the write transaction; everything is checked again in it.
            hashed = hash_password(password)
    with Session(engine) as session, session.begin():
        row, member = _usable_token(session, token_hash, at=at)
        done = activate_membership(session, member.id, password=password, password_hash=hashed, at=at)
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
            email=done.email,
            organization=done.organization,
            new_account=done.new_account,
        )


# A member who asks again within this time gets no second email: one is already on its way.
RENEWAL_COOLDOWN = dt.timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Renewal:
    """A pending member whose link died (used, replaced or expired) and who may be sent a new one.

    `admin`: an active Owner or Admin of the organization (the one who imported the member while
    still one, else its first active Owner): a link is renewed only in an organization someone
    still runs. The send itself is made in the member's own name (Channel.SELF).
    """

    organization_id: int
    member_id: int
    email: str
    admin: str


def _admin_for(session: Session, member: Member) -> str | None:
    admins = session.execute(
        select(Member.email, Member.role)
        .where(
            Member.organization_id == member.organization_id,
            Member.status == Status.ACTIVE,
            Member.role.in_((Role.OWNER, Role.ADMIN)),
            Member.email.is_not(None),
        )
        .order_by(Member.id)
    ).all()
    by_key = {email_key(address): address for address, _ in admins if address}
    batch = session.get(Batch, member.batch_id) if member.batch_id else None
    if batch is not None and email_key(batch.actor_email.removeprefix(CLI_PREFIX)) in by_key:
        return by_key[email_key(batch.actor_email.removeprefix(CLI_PREFIX))]
    owners = [address for address, role in admins if role is Role.OWNER and address]
    return owners[0] if owners else None


def renewal_for(engine: Engine, token: str, *, now: dt.datetime | None = None) -> Renewal | None:
    """Whom `Send me a new link` should email for this token: its member when still a pending portal
    member and the link can no longer be used; None for an unknown link, a member who is active,
    deactivated or removed, a link still usable, a link issued within RENEWAL_COOLDOWN, or an
    organization without an active Owner."""
    at = naive_utc(now)
    with Session(engine) as session:
        row = session.scalar(
            select(ActivationToken).where(ActivationToken.token_hash == hash_token(token_from(token)))
        )
        if row is None:
            return None
        member = session.get(Member, row.member_id)
        if member is None or member.status is not Status.PENDING or member.email is None:
            return None
        if row.used_at is None and row.revoked_at is None and at < row.expires_at:
            return None  # the link still works: nothing to replace
        newest = session.scalar(
            select(ActivationToken.created_at)
            .where(ActivationToken.member_id == member.id)
            .order_by(ActivationToken.created_at.desc())
            .limit(1)
        )
        if newest is not None and at - newest < RENEWAL_COOLDOWN:
            return None
        admin = _admin_for(session, member)
        if admin is None:
            return None  # no active Owner to send for: nothing can be sent
        return Renewal(
            organization_id=member.organization_id, member_id=member.id, email=member.email, admin=admin
        )
