"""The tables: organizations, teams, members, batches, activation tokens."""

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
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# The value types the tables map live with the other values, where the checks can use them
# without importing the ORM; re-exported here for the store's modules.
from importer.values import Role as Role
from importer.values import Status as Status


def utcnow() -> dt.datetime:
    """The current time, UTC, without tzinfo (how every timestamp is stored)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base of every table."""


def _enum(kind: type[enum.Enum], name: str) -> Enum:
    # Stored as the values users see, as plain strings: readable in SQL, no DB enum types to migrate.
    return Enum(
        kind,
        name=name,
        native_enum=False,
        validate_strings=True,
        values_callable=lambda k: [m.value for m in k],
        length=20,
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


class Member(Base):
    """A member of an organization, portal or no-portal, pending or active."""

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
        Index("ix_members_batch", "batch_id", "source_row"),
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
    password_hash: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    invited_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    invite_error: Mapped[str | None] = mapped_column(Text)
    activated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    team: Mapped[Team | None] = relationship()
    organization: Mapped[Organization] = relationship()


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
