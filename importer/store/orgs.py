"""Organizations, teams, actors and listings: the small operations around an import."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from importer.addresses import check_email, email_key
from importer.errors import ConflictError, ImporterError, NotFoundError, PermissionDeniedError, Remedy
from importer.records import BatchDetail, BatchOutcome, BatchRecord, MemberRecord, UndoResult
from importer.store.engine import MAILING_LOCK, hold_lock
from importer.store.models import (
    ActivationToken,
    Batch,
    Member,
    Organization,
    StoredFile,
    Team,
    members_of_batch,
)
from importer.values import Actor, Role, Status, UserType, text_key

__all__ = [  # UndoResult is imported from here by callers that predate importer.values
    "Actor",
    "UndoResult",
    "create_organization",
    "create_teams",
    "find_actor",
    "find_batch",
    "find_organization",
    "list_batches",
    "list_members",
    "list_teams",
    "member_record",
    "show_batch",
    "undo_batch",
]


def create_organization(
    engine: Engine, name: str, *, owner_email: str, owner_name: str, pending_owner: bool = False
) -> int:
    """Create an organization and its Owner; return the organization's id.

    `pending_owner`: the Owner signs up like anyone, from an activation link (what the product's
    front ends do; activation.links issues the link). Without it the Owner is made active at once,
    with no account: for seeding a database from a script or a test.
    """
    name = name.strip()
    if not name:
        raise ImporterError("the organization needs a name.")
    if name.isdigit():
        raise ImporterError("an organization's name cannot be only digits (it would read as an id).")
    problem = check_email(owner_email.strip())
    if problem:
        raise ImporterError(f"the Owner's email {owner_email!r} is not a valid address: {problem}.")
    with Session(engine) as session, session.begin():
        if session.scalar(select(Organization.id).where(Organization.name == name)) is not None:
            raise ConflictError(f"an organization named {name!r} already exists.")
        org = Organization(name=name)
        session.add(org)
        session.flush()
        email = owner_email.strip()
        session.add(
            Member(
                organization_id=org.id,
                name=owner_name.strip() or email,
                name_key=text_key(owner_name.strip() or email),
                email=email,
                email_key=email_key(email),
                user_type=UserType.PORTAL.value,
                role=Role.OWNER,
                status=Status.PENDING if pending_owner else Status.ACTIVE,
                activated_at=None if pending_owner else dt.datetime.now(dt.UTC).replace(tzinfo=None),
            )
        )
        return org.id


def find_organization(session: Session, ref: str) -> Organization:
    """An organization by name (exact, then case-insensitive) or by numeric id."""
    ref = ref.strip()
    org: Organization | None = None
    if ref.isdigit():
        org = session.get(Organization, int(ref))
    if org is None:
        org = session.scalar(select(Organization).where(Organization.name == ref))
    if org is None:
        matches = [o for o in session.scalars(select(Organization)) if text_key(o.name) == text_key(ref)]
        org = matches[0] if len(matches) == 1 else None
    if org is None:
        raise NotFoundError(f"no organization {ref!r}", remedy=Remedy.CREATE_ORGANIZATION)
    return org


def create_teams(engine: Engine, org_ref: str, names: Sequence[str]) -> list[str]:
    """Create teams in an organization; return the names created (existing ones are left)."""
    created: list[str] = []
    with Session(engine) as session, session.begin():
        org = find_organization(session, org_ref)
        existing = {t.name_key for t in session.scalars(select(Team).where(Team.organization_id == org.id))}
        for raw in names:
            name = raw.strip()
            if not name:
                raise ImporterError("a team needs a name.")
            if text_key(name) in existing:
                continue
            session.add(Team(organization_id=org.id, name=name, name_key=text_key(name)))
            existing.add(text_key(name))
            created.append(name)
    return created


def list_teams(session: Session, org_id: int) -> list[Team]:
    """The organization's teams, by name."""
    return list(session.scalars(select(Team).where(Team.organization_id == org_id).order_by(Team.name)))


def find_actor(session: Session, org: Organization, email: str) -> Actor:
    """The acting member; refused unless an active Owner or Admin of the organization."""
    member = session.scalar(
        select(Member).where(Member.organization_id == org.id, Member.email_key == email_key(email.strip()))
    )
    if member is None or member.email is None:
        raise PermissionDeniedError(
            f"{email} is not a member of {org.name}; only its Owner or Admins may import."
        )
    if member.role is Role.MEMBER:
        raise PermissionDeniedError(
            f"{email} is a Member of {org.name}; only its Owner or Admins may import."
        )
    if member.status is not Status.ACTIVE:
        raise PermissionDeniedError(
            f"{email} has not activated their account yet; only an active Owner or Admin may import."
        )
    return Actor(member_id=member.id, email=member.email, role=member.role)


def list_members(
    engine: Engine,
    org_ref: str,
    *,
    status: Status | None = None,
    user_type: UserType | None = None,
) -> list[MemberRecord]:
    """Members of an organization, by id (PIN and password hashes never included)."""
    with Session(engine) as session:
        org = find_organization(session, org_ref)
        query = (
            select(Member, Team.name)
            .outerjoin(Team, Member.team_id == Team.id)
            .where(Member.organization_id == org.id)
            .order_by(Member.id)
        )
        if status is not None:
            query = query.where(Member.status == status)
        if user_type is not None:
            query = query.where(Member.user_type == user_type.value)
        return [member_record(member, team_name) for member, team_name in session.execute(query)]


def member_record(member: Member, team: str | None) -> MemberRecord:
    """A member row as a record (its team's name given: no lazy load per row)."""
    return MemberRecord(
        id=member.id,
        name=member.name,
        email=member.email,
        user_type=UserType(member.user_type),
        role=member.role,
        team=team,
        status=member.status,
        batch_id=member.batch_id,
        invited_at=member.invited_at,
        invite_error=member.invite_error,
        activated_at=member.activated_at,
        deactivated_at=member.deactivated_at,
    )


def list_batches(
    engine: Engine, org_ref: str, *, limit: int | None = None, before: str | None = None
) -> list[BatchRecord]:
    """Past imports of an organization, newest first; with `limit`, at most that many, and with
    `before` (a batch id of this organization) those listed after it (keyset paging)."""
    with Session(engine) as session:
        org = find_organization(session, org_ref)
        query = (
            select(Batch)
            .where(Batch.organization_id == org.id)
            .order_by(Batch.started_at.desc(), Batch.id.desc())
        )
        mark = session.get(Batch, before.strip()) if before else None
        if mark is not None and mark.organization_id == org.id:
            query = query.where(
                (Batch.started_at < mark.started_at)
                | ((Batch.started_at == mark.started_at) & (Batch.id < mark.id))
            )
        elif before:
            raise NotFoundError(f"no batch {before.strip()!r} in {org.name}.", remedy=Remedy.LIST_BATCHES)
        if limit is not None:
            query = query.limit(limit)
        return [batch_record(b) for b in session.scalars(query)]


def batch_record(batch: Batch) -> BatchRecord:
    """A batch row as a plain value."""
    return BatchRecord(
        id=batch.id,
        user_type=UserType(batch.user_type),
        file_name=batch.file_name,
        sha256=batch.sha256,
        actor=batch.actor_email,
        dry_run=batch.dry_run,
        all_or_nothing=batch.all_or_nothing,
        rows=batch.rows,
        created=batch.created,
        skipped=batch.skipped,
        rejected=batch.rejected,
        outcome=BatchOutcome(batch.outcome),
        started_at=batch.started_at,
        finished_at=batch.finished_at,
        seconds=batch.seconds,
        report_dir=batch.report_dir,
    )


def find_batch(session: Session, batch_id: str) -> Batch:
    """A batch by id."""
    batch = session.get(Batch, batch_id.strip())
    if batch is None:
        raise NotFoundError(f"no batch {batch_id!r}", remedy=Remedy.LIST_BATCHES)
    return batch


def show_batch(engine: Engine, batch_id: str) -> BatchDetail:
    """One batch with its organization and how many of its members are still pending."""
    with Session(engine) as session:
        batch = find_batch(session, batch_id)
        query = select(Member.status, func.count()).where(members_of_batch(batch)).group_by(Member.status)
        counts = {status: count for status, count in session.execute(query)}
        org_name = session.scalar(select(Organization.name).where(Organization.id == batch.organization_id))
        return BatchDetail(
            batch=batch_record(batch),
            organization=org_name or "",
            members_pending=counts.get(Status.PENDING, 0),
            members_active=counts.get(Status.ACTIVE, 0),
        )


def undo_batch(engine: Engine, batch_id: str) -> UndoResult:
    """Remove the batch's members that are still pending (their links die with them); keep active ones.

    Set-based: two DELETEs over the batch's range of member ids (members_of_batch), never a list of
    ids held in Python. Deleting by an id list through the ORM matched every loaded member against
    the whole list, quadratic in the batch's size (120,000 members held the write lock for 102 s).
    """
    with Session(engine) as session:
        org_id = find_batch(session, batch_id).organization_id
    # A send-activations run on the organization mails only while it holds this lock, and checks
    # its members again whenever it takes the lock back: nobody removed here is emailed after.
    with hold_lock(engine, MAILING_LOCK, org_id), Session(engine) as session, session.begin():
        return remove_pending(session, batch_id)


def remove_pending(session: Session, batch_id: str) -> UndoResult:
    """undo_batch's work in the caller's transaction (which holds the organization's MAILING_LOCK)."""
    batch = find_batch(session, batch_id)
    of_batch = members_of_batch(batch)
    kept = tuple(
        session.scalars(
            select(func.coalesce(Member.email, Member.name))
            .where(of_batch, Member.status == Status.ACTIVE)
            .order_by(Member.id)
        )
    )
    pending = select(Member.id).where(of_batch, Member.status == Status.PENDING)
    conn = session.connection()  # Core statements: nothing loaded, nothing to synchronize
    conn.execute(delete(ActivationToken).where(ActivationToken.member_id.in_(pending.scalar_subquery())))
    removed = conn.execute(delete(Member).where(of_batch, Member.status == Status.PENDING))
    conn.execute(delete(StoredFile).where(StoredFile.batch_id == batch.id))  # its report goes with it
    batch.outcome = BatchOutcome.UNDONE.value
    return UndoResult(batch_id=batch.id, removed=removed.rowcount, kept_active=kept)
