"""Teams: listed with their member counts, created, renamed, deleted (their members keep no team)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, aliased

from importer.accounts.audit import Acting, record
from importer.cells import trim
from importer.errors import ConflictError, ImporterError, NotFoundError, Remedy
from importer.store.models import AuditAction, Member, Organization, Team
from importer.store.orgs import find_actor, find_organization
from importer.values import text_key

MAX_TEAM_NAME = 200


@dataclass(frozen=True, slots=True)
class TeamView:
    """A team and how many members it has."""

    id: int
    name: str
    members: int

    def to_dict(self) -> dict[str, Any]:
        """As `team list --json` prints it."""
        return {"id": self.id, "name": self.name, "members": self.members}


def list_teams(engine: Engine, org_ref: str) -> list[TeamView]:
    """The organization's teams by name, each with its member count."""
    with Session(engine) as session:
        org = find_organization(session, org_ref)
        query = (
            select(Team.id, Team.name, func.count(Member.id))
            .outerjoin(Member, Member.team_id == Team.id)
            .where(Team.organization_id == org.id)
            .group_by(Team.id, Team.name)
            .order_by(Team.name_key, Team.id)
        )
        return [TeamView(id=i, name=n, members=c) for i, n, c in session.execute(query)]


def _find_team(session: Session, org: Organization, name: str) -> Team:
    team = session.scalar(
        select(Team).where(Team.organization_id == org.id, Team.name_key == text_key(trim(name)))
    )
    if team is None:
        raise NotFoundError(f"{org.name} has no team {trim(name)!r}.", remedy=Remedy.LIST_TEAMS)
    return team


def _authorized(session: Session, org_ref: str, acting: Acting) -> Organization:
    org = find_organization(session, org_ref)
    session.execute(select(Organization.id).where(Organization.id == org.id).with_for_update())
    find_actor(session, org, acting.email)
    return org


def _team_name(text: str) -> str:
    name = unicodedata.normalize("NFC", trim(text))
    if not name:
        raise ImporterError("a team needs a name.")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise ImporterError("a team's name cannot hold control characters (tabs, line breaks ...).")
    if len(name) > MAX_TEAM_NAME:
        raise ImporterError(
            f"a team's name has at most {MAX_TEAM_NAME} characters (this one has {len(name)})."
        )
    return name


def create_team(engine: Engine, org_ref: str, *, acting: Acting, name: str) -> TeamView:
    """Create one team; refused when the organization has one of that name (compared case-insensitively)."""
    name = _team_name(name)
    with Session(engine) as session, session.begin():
        org = _authorized(session, org_ref, acting)
        other = session.scalar(
            select(Team.id).where(Team.organization_id == org.id, Team.name_key == text_key(name))
        )
        if other is not None:
            raise ConflictError(f"{org.name} already has a team {name!r}.")
        row = Team(organization_id=org.id, name=name, name_key=text_key(name))
        session.add(row)
        session.flush()
        record(
            session,
            actor=acting.label,
            action=AuditAction.TEAM_CREATED,
            organization_id=org.id,
            subject=name,
        )
        return TeamView(id=row.id, name=name, members=0)


def rename_team(engine: Engine, org_ref: str, *, acting: Acting, team: str, new_name: str) -> TeamView:
    """Rename a team; the new name must not be another team's (compared case-insensitively)."""
    name = _team_name(new_name)
    with Session(engine) as session, session.begin():
        org = _authorized(session, org_ref, acting)
        row = _find_team(session, org, team)
        other = session.scalar(
            select(Team.id).where(
                Team.organization_id == org.id, Team.name_key == text_key(name), Team.id != row.id
            )
        )
        if other is not None:
            raise ConflictError(f"{org.name} already has a team {name!r}.")
        old = row.name
        row.name, row.name_key = name, text_key(name)
        if old != name:
            record(
                session,
                actor=acting.label,
                action=AuditAction.TEAM_RENAMED,
                organization_id=org.id,
                subject=name,
                detail=f"{old} -> {name}",
            )
        count = session.scalar(select(func.count()).where(Member.team_id == row.id)) or 0
        return TeamView(id=row.id, name=name, members=count)


def delete_team(engine: Engine, org_ref: str, *, acting: Acting, team: str) -> int:
    """Delete a team; its members keep no team. Returns how many members it had.

    Refused when two No Portal Access members would become one (the same name, one in this team
    and one without a team): which one to keep is the admin's call.
    """
    with Session(engine) as session, session.begin():
        org = _authorized(session, org_ref, acting)
        row = _find_team(session, org, team)
        teamless = aliased(Member)
        clashes = session.scalars(
            select(Member.name)
            .join(
                teamless,
                (teamless.organization_id == Member.organization_id)
                & (teamless.name_key == Member.name_key)
                & (teamless.team_ref == 0)
                & teamless.email_key.is_(None),
            )
            .where(Member.team_id == row.id, Member.email_key.is_(None))
            .order_by(Member.name_key)
            .limit(5)
        ).all()
        if clashes:
            raise ConflictError(
                f"deleting {row.name} would leave two No Portal Access members named "
                f"{', '.join(repr(n) for n in clashes)} without a team; rename or remove one of each first."
            )
        moved = (
            session.connection()
            .execute(  # Core: no member is loaded
                update(Member).where(Member.team_id == row.id).values(team_id=None, team_ref=0)
            )
            .rowcount
        )
        record(
            session,
            actor=acting.label,
            action=AuditAction.TEAM_DELETED,
            organization_id=org.id,
            subject=row.name,
            detail=f"{moved} member(s) now have no team",
        )
        session.delete(row)
        return int(moved)
