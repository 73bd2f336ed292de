"""Sending the activation emails.

`send_activations` commits a chunk of token rows before any of their messages goes, then each
member's `invited_at` right after its own message is accepted: a rerun after a crash emails nobody
twice, except the one message in flight at the crash, and every link that went out works until a
newer one replaces it. Two runs on one organization take turns (db.hold_lock): the second finds
the first one's members emailed. A run mails only while it holds the organization's MAILING_LOCK,
which `batch undo` takes too; it passes its turn every MAILING_TURN_SECONDS and, taking it back,
drops the members removed meanwhile: nobody is emailed after an undo that removed them has
returned.

A transport that takes several messages at once (SmtpTransport with `connections`) gets as many
senders (senders.py), each recording its own messages on its own database connection: a crash
then loses at most the message each connection had in flight. The run passes its turn only when
no message is in flight.

Tokens live in tokens.py; the message in compose.py; the transports in transports/.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert, Update

from importer.accounts.audit import CLI_PREFIX, Acting, Channel
from importer.activation.compose import Composer, MailKind, compose_summary
from importer.activation.issuing import Issued, issue_tokens
from importer.activation.recording import AUDIT, MARK_FAILED, MARK_SENT, REVOKE_HASHES, REVOKE_OTHERS
from importer.activation.senders import Senders, Writer, parallel_senders
from importer.activation.tokens import (
    activation_link,
    check_base_url,
    format_moment,
    naive_utc,
)
from importer.activation.transports.base import Transport
from importer.errors import (
    NotFoundError,
    RecipientRefused,
    Remedy,
    TransportError,
    UnsendableAddress,
)
from importer.store.engine import MAILING_LOCK, NamedLock, hold_lock
from importer.store.models import AuditAction, Batch, Member
from importer.store.orgs import find_actor, find_organization
from importer.values import SendFailure, SendResult, Status, UserType

# The lock a send run holds on its organization (see db.hold_lock).
SEND_LOCK = "send-activations"
# How long a run mails before it lets a waiting `batch undo` remove members (see the docstring).
MAILING_TURN_SECONDS = 0.25


_DETAILS = {
    MailKind.ACTIVATION: "activation email (a new account)",
    MailKind.INVITATION: "invitation email (an existing account)",
}


class _SendRun:
    """One run of send_activations over an open connection."""

    def __init__(
        self,
        connection: Connection,
        *,
        mailing: NamedLock,
        transport: Transport,
        composers: dict[MailKind, Composer],
        base_url: str,
        org_id: int,
        actor: str,
        now: dt.datetime | None,
        on_progress: Callable[[int, int], None] | None,
    ) -> None:
        self.connection = connection
        self.org_id = org_id
        self.actor = actor
        self.mailing = mailing
        self.turn_ends = time.monotonic() + MAILING_TURN_SECONDS
        self.transport = transport
        self.composers = composers
        self.base_url = base_url
        self.now = now
        self.on_progress = on_progress
        self.width = parallel_senders(transport)
        self.sent = 0
        self.failures: list[SendFailure] = []
        self.skipped = 0
        self.todo = 0

    def result(self) -> SendResult:
        """The counts so far."""
        return SendResult(
            sent=self.sent,
            failed=len(self.failures),
            skipped=self.skipped,
            failures=tuple(self.failures),
        )

    def run(self, scope: list[ColumnElement[bool]], *, resend: bool) -> SendResult:
        """Email every target in scope, chunk by chunk, committing as messages go."""
        conditions = [*scope] if resend else [*scope, Member.invited_at.is_(None)]
        with self.connection.begin():
            total, invited = self.connection.execute(
                select(func.count(), func.count(Member.invited_at)).where(*scope)
            ).one()
        self.skipped = 0 if resend else invited
        self.todo = total if resend else total - invited
        after = 0
        with Senders(self.connection, width=self.width, deliver=self._deliver) as senders:
            while True:
                self._pass_turn_when_due()
                issued = issue_tokens(self.connection, conditions, after=after, now=self.now)
                if not issued:
                    return self.result()
                after = issued[-1].member_id
                self._deliver_chunk(issued, senders)

    def _deliver_chunk(self, issued: list[Issued], senders: Senders[Issued, SendFailure | None]) -> None:
        """Send a chunk's messages, as many at once as there are senders, skipping members removed
        while the run passed its turn (which it passes only when no message is in flight)."""
        removed: set[int] = set()
        index = 0  # the next message to hand out
        stopped: BaseException | None = None
        unsent: list[Issued] = []  # handed out, but the transport said they did not go
        try:
            while True:
                while stopped is None and index < len(issued) and senders.free:
                    if senders.busy and time.monotonic() >= self.turn_ends:
                        break  # the turn is due: first the messages in flight
                    if self._pass_turn_when_due():
                        vanished = self._removed(issued[index:]) - removed
                        removed |= vanished
                        self.todo -= len(vanished)
                    if issued[index].member_id not in removed:
                        senders.start(index, issued[index])
                    index += 1
                if not senders.busy:
                    break
                at, outcome = senders.next()
                if isinstance(outcome, BaseException):
                    stopped = stopped or outcome  # no more go; those in flight end
                    # A transport error means that message did not go; after anything else (an
                    # interrupt) it may have, so its link is left working.
                    if isinstance(outcome, TransportError):
                        unsent.append(issued[at])
                else:
                    self._count(outcome)
        except BaseException:
            # Interrupted while waiting: the messages in flight end, and are recorded, first.
            while senders.busy:
                outcome = senders.next()[1]
                if not isinstance(outcome, BaseException):
                    self._count(outcome)
            self._abandon(issued[index:])
            raise
        if stopped is None:
            return
        self._abandon([*unsent, *issued[index:]])
        if isinstance(stopped, TransportError):
            raise TransportError(
                f"{str(stopped).rstrip('.')}. The run stopped after {self.sent} sent and "
                f"{len(self.failures)} failed (all recorded); sending again sends the rest.",
                result=self.result(),
            ) from stopped
        raise stopped

    def _count(self, failure: SendFailure | None) -> None:
        """One message done: sent, or refused (`failure`)."""
        if failure is None:
            self.sent += 1
        else:
            self.failures.append(failure)
        if self.on_progress is not None:
            self.on_progress(self.sent + len(self.failures), self.todo)

    def _pass_turn_when_due(self) -> bool:
        """Let a waiting `batch undo` run, once per turn; whether the turn was passed."""
        if time.monotonic() < self.turn_ends:
            return False
        self.mailing.pass_turn()
        self.turn_ends = time.monotonic() + MAILING_TURN_SECONDS
        return True

    def _removed(self, items: list[Issued]) -> set[int]:
        """The members among these that are gone (an undo removed them, and their tokens)."""
        ids = [item.member_id for item in items]
        with self.connection.begin():
            present = set(self.connection.scalars(select(Member.id).where(Member.id.in_(ids))))
        return set(ids) - present

    def _deliver(self, item: Issued, writer: Writer) -> SendFailure | None:
        """Send one message and record it on the sender's own connection; its failure, if refused."""
        sent_at = naive_utc(self.now)
        try:
            message = self.composers[item.kind].compose(
                item.member_id,
                name=item.name,
                email=item.email,
                link=activation_link(self.base_url, token=item.token),
                token_hash=item.token_hash,
                expires_on=format_moment(item.expires_at),
                sent_at=sent_at,
            )
            self.transport.send(message)
        except (RecipientRefused, UnsendableAddress) as exc:
            reason = exc.reason if isinstance(exc, RecipientRefused) else str(exc)
            with writer.connection.begin():
                writer.connection.execute(MARK_FAILED, {"b_member": item.member_id, "b_error": reason})
                writer.connection.execute(REVOKE_HASHES, {"b_hashes": [item.token_hash], "b_at": sent_at})
                writer.connection.execute(
                    AUDIT, self._event(item, AuditAction.INVITATION_REFUSED, reason, at=sent_at)
                )
            return SendFailure(item.email, reason)
        # The message is gone: record it at once, so a rerun never sends it again.
        action = AuditAction.INVITATION_RESENT if item.again else AuditAction.INVITATION_SENT
        steps: list[tuple[Update | Insert, dict[str, Any]]] = [
            (MARK_SENT, {"b_member": item.member_id, "b_at": sent_at}),
            (AUDIT, self._event(item, action, _DETAILS[item.kind], at=sent_at)),
        ]
        if item.had_live_token:
            steps.append(
                (REVOKE_OTHERS, {"b_member": item.member_id, "b_hash": item.token_hash, "b_at": sent_at})
            )
        writer.record(steps)
        return None

    def _event(self, item: Issued, action: AuditAction, detail: str, *, at: dt.datetime) -> dict[str, Any]:
        """An audit event's bind values: the address and a few words, never the token."""
        return {
            "b_at": at,
            "b_actor": self.actor,
            "b_org": self.org_id,
            "b_action": action,
            "b_subject": item.email[:400],
            "b_detail": detail[:1000],
        }

    def _abandon(self, unsent: list[Issued]) -> None:
        """Best effort: revoke the tokens of a chunk's messages that never went."""
        if not unsent:
            return
        with contextlib.suppress(SQLAlchemyError), self.connection.begin():
            self.connection.execute(
                REVOKE_HASHES,
                {"b_hashes": [item.token_hash for item in unsent], "b_at": naive_utc(self.now)},
            )


def send_activations(
    engine: Engine,
    org_ref: str,
    *,
    transport: Transport,
    sender: str,
    base_url: str,
    batch_id: str | None = None,
    resend: bool = False,
    acting: Acting | None = None,
    member_ids: Collection[int] | None = None,
    now: dt.datetime | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> SendResult:
    """Email a link to the organization's pending portal members not yet emailed.

    An address that already has an account gets an invitation (`You have been added to ORG`, an
    accept link); any other, an activation email (`Your account has been created!`, a set-password
    link). With `resend`, members emailed but not yet active get a new link too (the old one stops
    working once the new message has gone). A refused recipient is recorded in `invite_error` and
    the run goes on; a TransportError (server unreachable, login refused, outbox unwritable) stops
    the run and carries the counts so far in its `result`. Each message is audited (sent, resent,
    refused) in the transaction that records it, with `acting` as the actor (`cli:` when None);
    `acting` must be an active Owner or Admin, and receives one email listing the refused
    addresses after the run (none when nobody was refused); with Channel.SELF it is the pending
    member asking for their own new link: only their own address is mailed, and no summary goes
    out. `member_ids`: only these members.
    """
    link_base = check_base_url(base_url)
    with Session(engine) as session:
        org = find_organization(session, org_ref)
        org_id, org_name = org.id, org.name
        if acting is not None and acting.channel is not Channel.SELF:
            find_actor(session, org, acting.email)
        if batch_id is not None:
            found = session.scalar(
                select(Batch.id).where(Batch.id == batch_id, Batch.organization_id == org_id)
            )
            if found is None:
                raise NotFoundError(f"no batch {batch_id!r} in {org_name}.", remedy=Remedy.LIST_BATCHES)
    composers = {kind: Composer(sender=sender, organization=org_name, kind=kind) for kind in MailKind}
    scope: list[ColumnElement[bool]] = [
        Member.organization_id == org_id,
        Member.user_type == UserType.PORTAL.value,
        Member.status == Status.PENDING,
        Member.email.is_not(None),
    ]
    if batch_id is not None:
        scope.append(Member.batch_id == batch_id)
    if member_ids is not None:
        scope.append(Member.id.in_(list(member_ids)))
    if acting is not None and acting.channel is Channel.SELF:
        scope.append(Member.email == acting.email)  # a member asking for themselves reaches no one else
    # A second run on the organization waits here, then finds the first run's members emailed.
    with (
        hold_lock(engine, SEND_LOCK, org_id),
        NamedLock(engine, MAILING_LOCK, org_id) as mailing,
        engine.connect() as connection,
    ):
        run = _SendRun(
            connection,
            mailing=mailing,
            transport=transport,
            composers=composers,
            base_url=link_base,
            org_id=org_id,
            actor=acting.label if acting is not None else CLI_PREFIX,
            now=now,
            on_progress=on_progress,
        )
        result = run.run(scope, resend=resend)
    if acting is None or acting.channel is Channel.SELF or not result.failures:
        return result
    summary = compose_summary(
        sender=sender,
        recipient=acting.email,
        organization=org_name,
        sent=result.sent,
        refused=result.failures,
        sent_at=naive_utc(now),
    )
    try:
        transport.send(summary)
    except (RecipientRefused, UnsendableAddress):
        return result  # the admin's own address refused: the failures are in the result all the same
    return dataclasses.replace(result, summary_to=summary.recipient)
