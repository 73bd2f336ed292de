"""Issuing a send run's tokens: a chunk of targets at a time, committed ahead of their messages."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, insert, select

from importer.activation.compose import MailKind
from importer.activation.tokens import ACTIVATION_DAYS, hash_token, naive_utc, new_token
from importer.store.models import Account, ActivationToken, Member

# Token rows are committed this many at a time, ahead of their messages (see sending.py).
SEND_CHUNK = 200


@dataclass(frozen=True, slots=True)
class Issued:
    """One target of a run, with the fresh token issued for its message."""

    member_id: int
    name: str
    email: str
    had_live_token: bool
    token: str
    token_hash: str
    expires_at: dt.datetime
    kind: MailKind
    again: bool  # emailed before: this is a resend


def issue_tokens(
    connection: Connection, conditions: list[ColumnElement[bool]], *, after: int, now: dt.datetime | None
) -> list[Issued]:
    """The next SEND_CHUNK targets after member `after`, a fresh token for each committed before any
    message goes (see sending.py)."""
    live_token = (
        select(ActivationToken.id)
        .where(
            ActivationToken.member_id == Member.id,
            ActivationToken.used_at.is_(None),
            ActivationToken.revoked_at.is_(None),
        )
        .exists()
    )
    has_account = select(Account.id).where(Account.email_key == Member.email_key).exists()
    query = (
        select(Member.id, Member.name, Member.email, live_token, has_account, Member.invited_at.is_not(None))
        .where(*conditions, Member.id > after)
        .order_by(Member.id)
        .limit(SEND_CHUNK)
    )
    issued_at = naive_utc(now)
    expires_at = issued_at + dt.timedelta(days=ACTIVATION_DAYS)
    with connection.begin():
        rows = connection.execute(query).all()
        issued = []
        for member_id, name, email, had_live_token, known, again in rows:
            if email is None:  # excluded by the scope; here for the type checker
                continue
            token = new_token()
            issued.append(
                Issued(
                    member_id=member_id,
                    name=name,
                    email=email,
                    had_live_token=bool(had_live_token),
                    token=token,
                    token_hash=hash_token(token),
                    expires_at=expires_at,
                    kind=MailKind.INVITATION if known else MailKind.ACTIVATION,
                    again=bool(again),
                )
            )
        if issued:
            connection.execute(
                insert(ActivationToken),
                [
                    {
                        "member_id": item.member_id,
                        "token_hash": item.token_hash,
                        "created_at": issued_at,
                        "expires_at": expires_at,
                    }
                    for item in issued
                ],
            )
    return issued
