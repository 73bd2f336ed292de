"""The tables: organizations, teams, accounts, members (memberships), batches, activation tokens,
audit events, and the portal's: background jobs, stored files, web sessions, API tokens."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    and_,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.elements import ColumnElement

# The value types the tables map live with the other values, where the checks can use them
# without importing the ORM; re-exported here for the store's modules.
from importer.values import Role as Role
from importer.values import Status as Status


def utcnow() -> dt.datetime:
    """The current time, UTC, without tzinfo (how every timestamp is stored)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class AuditAction(enum.StrEnum):
    """What an audit event records (PRODUCT.md, "Audit"), plus the team and password changes."""

    IMPORT = "import"
    UNDO = "undo"
    MEMBER_ADDED = "member.added"
    MEMBER_EDITED = "member.edited"
    MEMBER_DEACTIVATED = "member.deactivated"
    MEMBER_REACTIVATED = "member.reactivated"
    MEMBER_REMOVED = "member.removed"
    INVITATION_SENT = "invitation.sent"
    INVITATION_RESENT = "invitation.resent"
    INVITATION_REFUSED = "invitation.refused"
    ACTIVATED = "account.activated"
    ACCEPTED = "invitation.accepted"
    PIN_REGENERATED = "pin.regenerated"
    PASSWORD_POLICY_CHANGED = "password_policy.changed"  # noqa: S105
    PASSWORD_CHANGED = "password.changed"  # noqa: S105 (action names, not secrets)
    SIGN_IN_SUCCEEDED = "sign_in.succeeded"
    SIGN_IN_FAILED = "sign_in.failed"
    API_TOKEN_CREATED = "api_token.created"  # noqa: S105
    API_TOKEN_REVOKED = "api_token.revoked"  # noqa: S105
    TEAM_CREATED = "team.created"
    TEAM_RENAMED = "team.renamed"
    TEAM_DELETED = "team.deleted"


class Base(DeclarativeBase):
    """Declarative base of every table."""


def _enum(kind: type[enum.Enum], name: str, *, length: int = 20) -> Enum:
    # Stored as the values users see, as plain strings: readable in SQL, no DB enum types to migrate.
    return Enum(
        kind,
        name=name,
        native_enum=False,
        validate_strings=True,
        values_callable=lambda k: [m.value for m in k],
        length=length,
    )


class Organization(Base):
    """An organization: members, teams, batches, a password policy."""

    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    password_min_length: Mapped[int] = mapped_column(Integer, default=8, server_default="8")
    password_require_symbol: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )

    teams: Mapped[list[Team]] = relationship(back_populates="organization")


class Team(Base):
    """A team of one organization; rows name it case-insensitively."""

    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("organization_id", "name_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    name_key: Mapped[str] = mapped_column(String(200))

    organization: Mapped[Organization] = relationship(back_populates="teams")


class Account(Base):
    """A person who can sign in: one address (in its comparison form, unique), one password for
    every organization the address belongs to. Made by the address's first activation, never by
    an import (a million-row import writes members only)."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    # emails.email_key of the address; bytewise on PostgreSQL, as members.email_key.
    email_key: Mapped[str] = mapped_column(
        String(320).with_variant(String(320, collation="C"), "postgresql"), unique=True
    )
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    password_changed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Member(Base):
    """A membership of an organization, portal or no-portal: pending, active or deactivated.

    A portal member's `account_id` is set when the membership is activated or accepted.
    """

    __tablename__ = "members"
    __table_args__ = (
        # Portal members are one per address per organization; the import relies on this index
        # (ON CONFLICT DO NOTHING) so two imports of the same file at once create nobody twice.
        Index(
            "ux_members_org_email",
            "organization_id",
            "email_key",
            unique=True,
            sqlite_where=text("email_key IS NOT NULL"),
            postgresql_where=text("email_key IS NOT NULL"),
        ),
        # No-portal members are one per name and team (team_ref 0 = no team; NULLs never collide).
        Index(
            "ux_members_org_name_team",
            "organization_id",
            "name_key",
            "team_ref",
            unique=True,
            sqlite_where=text("email_key IS NULL"),
            postgresql_where=text("email_key IS NULL"),
        ),
        # No index on batch_id (migration 0008): a batch's members are found through the range of
        # member ids it wrote (Batch.first_member_id .. last_member_id) and the primary key.
        # Keyset pages of one organization (`WHERE organization_id = ? AND id > ? ORDER BY id`):
        # page 2,000 starts where page 1,999 ended. An import appends at the right edge of it.
        Index("ix_members_org_page", "organization_id", "id"),
        # The same pages filtered by status. Partial: an import writes pending members only, so
        # it costs the bulk load nothing; pending members are paged through ix_members_org_page.
        Index(
            "ix_members_org_status_page",
            "organization_id",
            "status",
            "id",
            sqlite_where=text("status <> 'pending'"),
            postgresql_where=text("status <> 'pending'"),
        ),
        # No (team_id, id) index (migration 0008): a team's pages walk ix_members_org_page.
        # An account's memberships (set at activation: nothing for an import to write).
        Index(
            "ix_members_account",
            "account_id",
            sqlite_where=text("account_id IS NOT NULL"),
            postgresql_where=text("account_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(400))
    name_key: Mapped[str] = mapped_column(String(400))
    email: Mapped[str | None] = mapped_column(String(320))
    # Bytewise on PostgreSQL (migration 0003): a normalized key, only compared for equality.
    email_key: Mapped[str | None] = mapped_column(
        String(320).with_variant(String(320, collation="C"), "postgresql")
    )
    user_type: Mapped[str] = mapped_column(String(20))
    role: Mapped[Role] = mapped_column(_enum(Role, "member_role"))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    team_ref: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    status: Mapped[Status] = mapped_column(_enum(Status, "member_status"), default=Status.PENDING)
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"))
    source_row: Mapped[int | None] = mapped_column(Integer)
    pin_hash: Mapped[str | None] = mapped_column(String(200))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))  # accounts are kept
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    invited_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    invite_error: Mapped[str | None] = mapped_column(Text)
    activated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    deactivated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    team: Mapped[Team | None] = relationship()
    organization: Mapped[Organization] = relationship()
    account: Mapped[Account | None] = relationship()


class Batch(Base):
    """One import run: file, hash, type, actor, counts, timings, dry-run flag, outcome."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    user_type: Mapped[str] = mapped_column(String(20))
    file_name: Mapped[str] = mapped_column(String(400))
    sha256: Mapped[str] = mapped_column(String(64))
    actor_email: Mapped[str] = mapped_column(String(320))
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    all_or_nothing: Mapped[bool] = mapped_column(Boolean, default=False)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    report_dir: Mapped[str | None] = mapped_column(String(1000))
    # Every member the batch wrote has an id in [first_member_id, last_member_id] (other batches'
    # members may too, on PostgreSQL); None when it wrote none. See members_of_batch.
    first_member_id: Mapped[int | None] = mapped_column(Integer)
    last_member_id: Mapped[int | None] = mapped_column(Integer)


class ActivationToken(Base):
    """A set-password link: only its hash is stored; single use; expires."""

    __tablename__ = "activation_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class AuditEvent(Base):
    """Who did what to whom, when: written in the same transaction as the change it records.

    Never a password, token or PIN: `subject` names a member (address or name), a batch or a team;
    `detail` says in a few words what changed.
    """

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_org", "organization_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # The account's address, or "cli:" and the --as address.
    actor: Mapped[str] = mapped_column(String(330))
    # None for an account's own events (a sign-in, a password change).
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    action: Mapped[AuditAction] = mapped_column(_enum(AuditAction, "audit_action", length=40))
    subject: Mapped[str] = mapped_column(String(400), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


class JobKind(enum.StrEnum):
    """What a background job does."""

    IMPORT = "import"
    ACTIVATIONS = "activations"
    UNDO = "undo"


class JobStatus(enum.StrEnum):
    """A background job's lifecycle, as the API reports it."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Job(Base):
    """A background job (an upload's import, a send, an undo): the one record of its state.

    The queue only wakes a worker; this row is what a worker claims (a lease it renews while it
    works), what any web process reads for progress, and what is claimed again by another worker
    when a lease runs out (a worker killed mid-job).
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status", "status", "id"),
        Index("ix_jobs_org", "organization_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[JobKind] = mapped_column(_enum(JobKind, "job_kind"))
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    # The account that asked (its address): the actor of the import or the send.
    actor: Mapped[str] = mapped_column(String(330))
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus, "job_status"), default=JobStatus.QUEUED)
    # The job's options as JSON (user type, dry run, all or nothing, file name, batch, resend ...).
    options: Mapped[str] = mapped_column(Text, default="{}")
    # The batch the job made or works on; known once an import's batch id is drawn.
    batch_id: Mapped[str | None] = mapped_column(String(40))
    phase: Mapped[str] = mapped_column(String(40), default="")
    rows_done: Mapped[int] = mapped_column(Integer, default=0)
    rows_total: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # The summary object (as `import --json` prints it) once done; the one-line error once failed.
    summary: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class StoredFile(Base):
    """A file every process reaches through the database: an upload until its job is done, and a
    batch's report files (report.html, rejected.csv ...) while the report is kept."""

    __tablename__ = "stored_files"
    __table_args__ = (
        UniqueConstraint("job_id", "name"),
        Index("ix_stored_files_batch", "batch_id", "name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(400))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class WebSession(Base):
    """A signed-in browser: the cookie holds a random id, this row holds only its SHA-256.

    A new row (a new id) at every sign-in; signed out after `last_seen_at` is 12 hours old.
    """

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ApiToken(Base):
    """A personal API token for scripts (`Authorization: Bearer ...`): only its SHA-256 is stored;
    it acts as its account, in its organization, with the account's role there."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


def members_of_batch(batch: Batch) -> ColumnElement[bool]:
    """The condition that picks a batch's members: its id, within the range of member ids it wrote
    (a primary-key range instead of an index entry per member; a batch without a range scans)."""
    of_batch = Member.batch_id == batch.id
    if batch.first_member_id is None or batch.last_member_id is None:
        return of_batch
    return and_(Member.id.between(batch.first_member_id, batch.last_member_id), of_batch)
