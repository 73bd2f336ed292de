"""The audit trail: who did what to whom, when; written in the transaction of the change it records."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, or_, select
from sqlalchemy.orm import Session

from importer.addresses import email_key
from importer.store.models import AuditAction, AuditEvent, Organization, utcnow
from importer.store.orgs import find_organization

CLI_PREFIX = "cli:"
MAX_DETAIL = 1000


class Channel(enum.StrEnum):
    """How the actor reached us: the CLI's trusted `--as`, or a signed-in account (portal, API token)."""

    CLI = "cli"
    ACCOUNT = "account"
    # A pending member asking for a new link of their own (`Send me a new link`, signed out): they
    # act for themselves only, and no admin's name is used.
    SELF = "self"


@dataclass(frozen=True, slots=True)
class Acting:
    """Who acts: the address whose authority is used, and how they came (says how events name them)."""

    email: str
    channel: Channel = Channel.CLI

    @property
    def label(self) -> str:
        """The actor as audit events name it: the account's address, or `cli:` and the --as address."""
        email = self.email.strip()
        return f"{CLI_PREFIX}{email}" if self.channel is Channel.CLI else email


@dataclass(frozen=True, slots=True)
class Event:
    """One audit event as the front ends show it."""

    id: int
    at: dt.datetime
    actor: str
    organization: str | None
    action: AuditAction
    subject: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """As `importer audit --json` prints it."""
        return {
            "at": self.at.replace(tzinfo=dt.UTC).isoformat(),
            "actor": self.actor,
            "organization": self.organization,
            "action": self.action.value,
            "subject": self.subject,
            "detail": self.detail,
        }


def record(
    session: Session,
    *,
    actor: str,
    action: AuditAction,
    organization_id: int | None,
    subject: str = "",
    detail: str = "",
    at: dt.datetime | None = None,
) -> None:
    """Add an event to the session's transaction: it is saved with the change, or not at all.

    Callers pass names, addresses, ids and counts; never a password, token or PIN.
    """
    session.add(AuditEvent(**_event_values(actor, action, organization_id, subject, detail, at)))


def record_on(
    conn: Connection,
    *,
    actor: str,
    action: AuditAction,
    organization_id: int | None,
    subject: str = "",
    detail: str = "",
    at: dt.datetime | None = None,
) -> None:
    """As `record`, on a Core connection's transaction (the import's batch, written without the ORM)."""
    conn.execute(
        insert(AuditEvent).values(**_event_values(actor, action, organization_id, subject, detail, at))
    )


def _event_values(
    actor: str,
    action: AuditAction,
    organization_id: int | None,
    subject: str,
    detail: str,
    at: dt.datetime | None,
) -> dict[str, Any]:
    """One event's columns, each cut to its column's size: the same for both ways of writing it."""
    return {
        "at": at or utcnow(),
        "actor": actor[:330],
        "organization_id": organization_id,
        "action": action,
        "subject": subject[:400],
        "detail": detail[:MAX_DETAIL],
    }


def list_events(
    engine: Engine,
    org_ref: str,
    *,
    since: dt.datetime | None = None,
    actor: str | None = None,
    limit: int | None = None,
    before: int | None = None,
) -> list[Event]:
    """An organization's events, newest first; `actor` matches an address with or without `cli:`.

    `before`: only events older than the event of that id (the next page after it: keyset paging).
    """
    with Session(engine) as session:
        org = find_organization(session, org_ref)
        query = (
            select(AuditEvent, Organization.name)
            .outerjoin(Organization, AuditEvent.organization_id == Organization.id)
            .where(AuditEvent.organization_id == org.id)
            .order_by(AuditEvent.id.desc())
        )
        if since is not None:
            if since.tzinfo is not None:
                since = since.astimezone(dt.UTC).replace(tzinfo=None)
            query = query.where(AuditEvent.at >= since)
        if actor is not None:
            key = email_key(actor.strip().removeprefix(CLI_PREFIX))
            query = query.where(
                or_(func.lower(AuditEvent.actor) == key, func.lower(AuditEvent.actor) == CLI_PREFIX + key)
            )
        if before is not None:
            query = query.where(AuditEvent.id < before)
        if limit is not None:
            query = query.limit(limit)
        return [_event(row, name) for row, name in session.execute(query)]


def _event(row: AuditEvent, organization: str | None) -> Event:
    return Event(
        id=row.id,
        at=row.at,
        actor=row.actor,
        organization=organization,
        action=row.action,
        subject=row.subject,
        detail=row.detail,
    )
