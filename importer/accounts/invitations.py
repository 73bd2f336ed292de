"""Resending one member's invitation: who may, to whom, and its audit event.

The message itself goes through activation.sending (a layer above this one), restricted to the
member: the front end asks `resend_target` first, then sends (the send audits each message).
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from importer.accounts.audit import Acting
from importer.accounts.members import _Scope
from importer.errors import ConflictError
from importer.records import MemberRecord
from importer.store.models import Status
from importer.values import UserType


def resend_target(engine: Engine, org_ref: str, member_id: int, *, acting: Acting) -> MemberRecord:
    """The member whose invitation may be sent again by this actor: a pending portal member the actor
    may manage (an Admin manages Members only)."""
    with Session(engine) as session:
        scope = _Scope(session, org_ref, acting)
        row = scope.target(member_id)
        shown = row.email or row.name
        if row.user_type != UserType.PORTAL.value or row.email is None:
            raise ConflictError(f"{shown} has no portal access: No Portal Access members are never emailed.")
        if row.status is not Status.PENDING:
            raise ConflictError(
                f"{shown} is {row.status.value}: only a pending member's invitation can be sent again."
            )
        return scope.view(row)
