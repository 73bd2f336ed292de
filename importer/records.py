"""Records the store's queries answer and the front ends render: members, batches, an undo.

Plain frozen values with `to_dict()` giving the keys the command line's JSON has always printed.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any

from importer.values import Role, Status, UserType


class BatchOutcome(enum.StrEnum):
    """A batch's recorded state: running while its import writes, then how it ended (or undone)."""

    RUNNING = "running"
    COMPLETED = "completed"
    DRY_RUN = "dry_run"
    REFUSED = "refused"
    UNDONE = "undone"


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """One member as every listing and front end shows it (never a PIN or a password hash)."""

    id: int
    name: str
    email: str | None
    user_type: UserType
    role: Role
    team: str | None
    status: Status
    batch_id: str | None
    invited_at: dt.datetime | None
    invite_error: str | None
    activated_at: dt.datetime | None = None
    deactivated_at: dt.datetime | None = None

    @property
    def shown(self) -> str:
        """How an audit event or a message names the member: the address, or the name."""
        return self.email or self.name

    def to_dict(self) -> dict[str, Any]:
        """As a JSON listing of members shows it (the keys PRODUCT.md lists, activated_at among them)."""
        return {
            "id": self.id,
            "name": self.name,
            "email": self.email,
            "type": self.user_type.value,
            "role": self.role.value,
            "team": self.team,
            "status": self.status.value,
            "batch_id": self.batch_id,
            "invited_at": _iso(self.invited_at),
            "invite_error": self.invite_error,
            "activated_at": _iso(self.activated_at),
            "deactivated_at": _iso(self.deactivated_at),
        }


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One import run as recorded: file, hash, type, actor, counts, timings, outcome."""

    id: str
    user_type: UserType
    file_name: str
    sha256: str
    actor: str
    dry_run: bool
    all_or_nothing: bool
    rows: int
    created: int
    skipped: int
    rejected: int
    outcome: BatchOutcome
    started_at: dt.datetime
    finished_at: dt.datetime | None
    seconds: float
    report_dir: str | None

    def to_dict(self) -> dict[str, Any]:
        """As a JSON listing of batches shows it."""
        return {
            "id": self.id,
            "type": self.user_type.value,
            "file_name": self.file_name,
            "sha256": self.sha256,
            "actor": self.actor,
            "dry_run": self.dry_run,
            "all_or_nothing": self.all_or_nothing,
            "rows": self.rows,
            "created": self.created,
            "skipped": self.skipped,
            "rejected": self.rejected,
            "outcome": self.outcome.value,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "seconds": round(self.seconds, 3),
            "report_dir": self.report_dir,
        }


@dataclass(frozen=True, slots=True)
class BatchDetail:
    """One batch with its organization's name and how many of its members are pending or active."""

    batch: BatchRecord
    organization: str
    members_pending: int
    members_active: int

    def to_dict(self) -> dict[str, Any]:
        """As a batch is shown in JSON: its record, organization and member counts."""
        return self.batch.to_dict() | {
            "organization": self.organization,
            "members_pending": self.members_pending,
            "members_active": self.members_active,
        }


@dataclass(frozen=True, slots=True)
class UndoResult:
    """What undoing a batch did: pending members removed, active ones kept (their addresses or names)."""

    batch_id: str
    removed: int
    kept_active: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """As an undo is reported in JSON."""
        return {"batch_id": self.batch_id, "removed": self.removed, "kept_active": list(self.kept_active)}
