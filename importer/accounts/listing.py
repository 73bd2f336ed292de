"""Members a page at a time: filters, a stable order (by id) and keyset paging with an opaque cursor."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, or_, select
from sqlalchemy.orm import Session

from importer.errors import ImporterError, NotFoundError, Remedy
from importer.records import MemberRecord
from importer.store.models import Batch, Member, Status, Team, members_of_batch
from importer.store.orgs import find_organization, member_record
from importer.values import UserType, text_key

_CURSOR_PREFIX = "m1:"
MAX_PAGE = 10_000


@dataclass(frozen=True, slots=True)
class MemberPage:
    """One page of members and the cursor of the next (None on the last page)."""

    members: tuple[MemberRecord, ...]
    next: str | None

    def to_dict(self) -> dict[str, Any]:
        """As `members --limit N --format json` prints it."""
        return {"members": [m.to_dict() for m in self.members], "next": self.next}


def encode_cursor(member_id: int) -> str:
    """The opaque cursor that continues after this member."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{member_id}".encode()).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The member id a cursor continues after; an ImporterError for anything not made by encode_cursor."""
    text = cursor.strip()
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    number = decoded.removeprefix(_CURSOR_PREFIX)
    if not decoded.startswith(_CURSOR_PREFIX) or not number.isdigit() or len(number) > 18:
        raise ImporterError(f"{cursor!r} is not a cursor: pass the `next` value of the previous page.")
    return int(number)


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_members(
    engine: Engine,
    org_ref: str,
    *,
    status: Status | None = None,
    user_type: UserType | None = None,
    team: str | None = None,
    batch: str | None = None,
    search: str | None = None,
    limit: int | None = None,
    after: str | None = None,
) -> MemberPage:
    """An organization's members by id, filtered; with `limit`, one page and the next page's cursor.

    Keyset paging (`id > cursor ORDER BY id LIMIT n`, on the (organization_id, id) indexes): page
    2,000 costs what page 1 costs, and members added meanwhile (new, higher ids) come on later
    pages, so every member is listed exactly once. `search` matches name or address as a
    substring, case-insensitively (their comparison forms). `team` is a team's name.
    """
    if limit is not None and not 1 <= limit <= MAX_PAGE:
        raise ImporterError(f"a page holds 1 to {MAX_PAGE} members (not {limit}).")
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
            if status is not Status.PENDING:
                # Spelled as ix_members_org_status_page's WHERE: SQLite uses a partial index only
                # when the query repeats its condition (it does not infer it from `= 'active'`).
                query = query.where(Member.status != Status.PENDING)
        if user_type is not None:
            query = query.where(Member.user_type == user_type.value)
        if team is not None:
            team_id = session.scalar(
                select(Team.id).where(Team.organization_id == org.id, Team.name_key == text_key(team.strip()))
            )
            if team_id is None:
                raise NotFoundError(f"{org.name} has no team {team.strip()!r}.", remedy=Remedy.LIST_TEAMS)
            query = query.where(Member.team_id == team_id)
        if batch is not None:
            found = session.get(Batch, batch.strip())
            # Through the batch's range of member ids; an unknown batch lists nobody, as before.
            query = query.where(members_of_batch(found) if found else Member.batch_id == batch.strip())
        if search is not None and search.strip():
            pattern = _like(text_key(search.strip()))
            query = query.where(
                or_(Member.name_key.like(pattern, escape="\\"), Member.email_key.like(pattern, escape="\\"))
            )
        if after is not None:
            query = query.where(Member.id > decode_cursor(after))
        if limit is not None:
            query = query.limit(limit + 1)  # one more says whether there is a next page
        rows = [member_record(member, name) for member, name in session.execute(query)]
    if limit is not None and len(rows) > limit:
        return MemberPage(tuple(rows[:limit]), encode_cursor(rows[limit - 1].id))
    return MemberPage(tuple(rows), None)
