"""Personal API tokens: `imp_` + 32 random bytes, shown once, stored as SHA-256; revoked, never deleted."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from importer.accounts.audit import record
from importer.addresses import email_key
from importer.errors import NotFoundError, PermissionDeniedError
from importer.store.models import Account, ApiToken, AuditAction, Member, utcnow
from importer.store.orgs import find_organization
from importer.values import Role, Status

TOKEN_PREFIX = "imp_"  # noqa: S105 (a prefix, not a secret)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenView:
    """An API token as listed (never the token itself)."""

    id: int
    name: str
    account: str
    organization_id: int
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token just made: `token` is shown this once."""

    view: TokenView
    token: str


@dataclass(frozen=True, slots=True)
class TokenOwner:
    """Whom a presented token acts for."""

    account_id: int
    email: str
    token_id: int


def _view(row: ApiToken, email: str) -> TokenView:
    return TokenView(
        row.id, row.name, email, row.organization_id, row.created_at, row.last_used_at, row.revoked_at
    )


def _admin(session: Session, org_id: int, email: str) -> Account:
    account = session.scalar(select(Account).where(Account.email_key == email_key(email.strip())))
    member = None
    if account is not None:
        member = session.scalar(
            select(Member).where(Member.organization_id == org_id, Member.account_id == account.id)
        )
    if account is None or member is None or member.status is not Status.ACTIVE or member.role is Role.MEMBER:
        raise PermissionDeniedError(
            f"{email.strip()} is not an active Owner or Admin of this organization; "
            "only they may hold API tokens."
        )
    return account


def create_token(engine: Engine, org_ref: str, *, email: str, name: str = "") -> NewToken:
    """A new token for an active Owner/Admin's account, scoped to one organization; audited."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with Session(engine) as session, session.begin():
        org = find_organization(session, org_ref)
        account = _admin(session, org.id, email)
        row = ApiToken(
            token_hash=_hash(token), account_id=account.id, organization_id=org.id, name=name[:200]
        )
        session.add(row)
        session.flush()
        record(session, actor=account.email, action=AuditAction.API_TOKEN_CREATED, organization_id=org.id,
               subject=account.email, detail=f"token {row.id} {name[:100]}".strip())  # fmt: skip
        return NewToken(_view(row, account.email), token)


def list_tokens(engine: Engine, org_ref: str, *, email: str | None = None) -> list[TokenView]:
    """The organization's tokens, newest first (`email`: only that account's)."""
    with Session(engine) as session:
        org = find_organization(session, org_ref)
        query = (
            select(ApiToken, Account.email)
            .join(Account, Account.id == ApiToken.account_id)
            .where(ApiToken.organization_id == org.id)
            .order_by(ApiToken.id.desc())
        )
        if email is not None:
            query = query.where(Account.email_key == email_key(email.strip()))
        rows = session.execute(query).all()
        return [_view(row, email) for row, email in rows]


def revoke_token(engine: Engine, org_ref: str, token_id: int, *, email: str) -> TokenView:
    """Revoke a token of the organization (an Owner/Admin may revoke any of its tokens); audited."""
    with Session(engine) as session, session.begin():
        org = find_organization(session, org_ref)
        account = _admin(session, org.id, email)
        row = session.get(ApiToken, token_id)
        if row is None or row.organization_id != org.id:
            raise NotFoundError(f"no API token {token_id} in {org.name}.")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            record(session, actor=account.email, action=AuditAction.API_TOKEN_REVOKED,
                   organization_id=org.id, subject=account.email, detail=f"token {row.id}")  # fmt: skip
        owner = session.get_one(Account, row.account_id)
        return _view(row, owner.email)


def token_owner(engine: Engine, token: str) -> TokenOwner | None:
    """The account a live token acts for (None: unknown or revoked); the token's use is noted."""
    with Session(engine) as session, session.begin():
        row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash(token.strip())))
        if row is None or row.revoked_at is not None:
            return None
        account = session.get_one(Account, row.account_id)
        row.last_used_at = utcnow()
        return TokenOwner(account.id, account.email, row.id)
