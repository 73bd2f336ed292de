"""Undoing an import as someone: the actor must be an active Owner or Admin of the batch's organization,
and the undo is recorded in the audit trail in the transaction that removes the members."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from importer.accounts.audit import Acting, record
from importer.store.engine import MAILING_LOCK, hold_lock
from importer.store.models import AuditAction, Organization
from importer.store.orgs import UndoResult, find_actor, find_batch, remove_pending


def _check_actor(session: Session, batch_id: str, acting: Acting) -> int:
    """The batch's organization id, once the actor is known to be its active Owner or Admin."""
    batch = find_batch(session, batch_id)
    org = session.get(Organization, batch.organization_id)
    assert org is not None  # a foreign key
    find_actor(session, org, acting.email)
    return org.id


def undo_batch(engine: Engine, batch_id: str, *, acting: Acting) -> UndoResult:
    """Remove the batch's still-pending members (their links die with them), audited with the actor.

    Active members stay. The actor is checked before the organization's mailing lock is awaited,
    and again inside the transaction (a role may change meanwhile).
    """
    with Session(engine) as session:
        org_id = _check_actor(session, batch_id, acting)
    # As store.orgs.undo_batch: a send run mails only while it holds this lock.
    with hold_lock(engine, MAILING_LOCK, org_id), Session(engine) as session, session.begin():
        _check_actor(session, batch_id, acting)
        result = remove_pending(session, batch_id)
        kept = f"; kept {len(result.kept_active)} active" if result.kept_active else ""
        record(
            session,
            actor=acting.label,
            action=AuditAction.UNDO,
            organization_id=org_id,
            subject=result.batch_id,
            detail=f"removed {result.removed} pending member(s){kept}",
        )
        return result
