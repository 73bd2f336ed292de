"""Accounts: one address, one password, for every organization the address belongs to.

An account is made by the first activation of its address (never by an import: a million-row
import writes memberships only). A later membership of the same address is accepted without a
password; the account's password signs in to all of them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from importer.accounts.audit import record
from importer.accounts.passwords import PasswordPolicy, hash_password, verify_password
from importer.addresses import email_key
from importer.errors import ActivationError, NotFoundError
from importer.store.models import Account, AuditAction, Member, Organization, Status, utcnow
from importer.values import UserType


@dataclass(frozen=True, slots=True)
class AccountView:
    """An account as the front ends see it (never its password hash)."""

    id: int
    email: str
    created_at: dt.datetime
    password_changed_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Activation:
    """A membership made active: by a new account's first password, or an invitation accepted."""

    member_id: int
    account_id: int
    email: str
    organization: str
    new_account: bool


def _view(account: Account) -> AccountView:
    return AccountView(
        id=account.id,
        email=account.email,
        created_at=account.created_at,
        password_changed_at=account.password_changed_at,
    )


def _account_row(session: Session, email: str) -> Account | None:
    return session.scalar(select(Account).where(Account.email_key == email_key(email.strip())))


def find_account(session: Session, email: str) -> AccountView | None:
    """The account of an address (any spelling of it: its comparison form), or None."""
    account = _account_row(session, email)
    return _view(account) if account is not None else None


def account_policy(session: Session, account_id: int) -> PasswordPolicy:
    """The password rules of an account: the strictest of its organizations' policies.

    One password signs in to every organization, so it must satisfy each of them.
    """
    orgs = session.scalars(
        select(Organization)
        .join(Member, Member.organization_id == Organization.id)
        .where(Member.account_id == account_id)
    ).all()
    policies = [PasswordPolicy.for_organization(org) for org in orgs] or [PasswordPolicy()]
    return PasswordPolicy(
        min_length=max(p.min_length for p in policies),
        require_symbol=any(p.require_symbol for p in policies),
    )


def _refuse_weak(policy: PasswordPolicy, password: str, *, email: str, whose: str) -> None:
    refusal = policy.refusal(password, email=email, whose=whose)
    if refusal is not None:
        raise ActivationError(refusal)


def activate_membership(
    session: Session,
    member_id: int,
    *,
    password: str | None,
    password_hash: str | None = None,
    at: dt.datetime | None = None,
) -> Activation:
    """Make a pending portal membership active, in the caller's transaction (with its audit event).

    The first activation of an address needs a password (the organization's policy applies) and
    creates the account. An address that already has an account accepts the invitation: no
    password is asked, and one given is refused (it would not be the account's password).
    `password_hash`: hash_password(password), computed before the transaction so that the slow
    hash never holds the database's write lock.
    """
    at = at or utcnow()
    member = session.get(Member, member_id, with_for_update=True)
    if member is None:
        raise NotFoundError(f"no member {member_id}.")
    if member.user_type != UserType.PORTAL.value or member.email is None or member.email_key is None:
        raise ActivationError(f"{member.name} has no portal access: there is nothing to activate.")
    if member.status is not Status.PENDING:
        raise ActivationError("This account is already active; sign in with your email and password.")
    org = member.organization
    account = session.scalar(select(Account).where(Account.email_key == member.email_key).with_for_update())
    new_account = account is None
    if account is not None:
        if password is not None:
            raise ActivationError(
                f"{member.email} already has an account: accept the invitation to {org.name} without "
                "a password, and sign in with the password you already have."
            )
        action = AuditAction.ACCEPTED
    else:
        if password is None:
            raise ActivationError(f"Choose a password for {member.email}: this is its first activation.")
        policy = PasswordPolicy.for_organization(org)
        _refuse_weak(policy, password, email=member.email, whose=org.name)
        account = Account(
            email=member.email,
            email_key=member.email_key,
            password_hash=password_hash or hash_password(password),
            created_at=at,
            password_changed_at=at,
        )
        session.add(account)
        session.flush()
        action = AuditAction.ACTIVATED
    member.account_id = account.id
    member.status = Status.ACTIVE
    member.activated_at = at
    member.deactivated_at = None
    record(
        session,
        actor=account.email,
        action=action,
        organization_id=org.id,
        subject=member.email,
        detail="new account" if new_account else "existing account",
        at=at,
    )
    return Activation(
        member_id=member.id,
        account_id=account.id,
        email=member.email,
        organization=org.name,
        new_account=new_account,
    )


def set_password(session: Session, *, email: str, password: str) -> AccountView:
    """Change an account's password (the strictest policy of its organizations), in the caller's
    transaction; the caller has made sure who asks (the current password, a reset link)."""
    account = _account_row(session, email)
    if account is None:
        raise NotFoundError(f"{email.strip()} has no account.")
    _refuse_weak(
        account_policy(session, account.id),
        password,
        email=account.email,
        whose="every organization of this account",
    )
    account.password_hash = hash_password(password)
    account.password_changed_at = utcnow()
    record(
        session,
        actor=account.email,
        action=AuditAction.PASSWORD_CHANGED,
        organization_id=None,
        subject=account.email,
    )
    return _view(account)


def authenticate(session: Session, *, email: str, password: str) -> AccountView | None:
    """The account when the password is its own, else None (the same answer for an unknown address);
    the attempt is audited either way, without the password."""
    account = _account_row(session, email)
    ok = account is not None and verify_password(account.password_hash, password)
    shown = account.email if account is not None else email.strip()[:320]
    record(
        session,
        actor=shown,
        action=AuditAction.SIGN_IN_SUCCEEDED if ok else AuditAction.SIGN_IN_FAILED,
        organization_id=None,
        subject=shown,
    )
    return _view(account) if ok and account is not None else None
