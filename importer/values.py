"""Plain values that flow through the pipeline: error codes, row errors, members to write, the result."""

from __future__ import annotations

import datetime as dt
import enum
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # the enums' homes until they move into this module (see the block at its end)
    from importer.sheets import UserType
    from importer.store.models import Role, Status


# --- What the store's queries answer: typed records the front ends render (helper `front`) ---


class BatchOutcome(enum.StrEnum):
    """A batch's recorded state: running while its import writes, then how it ended (or undone)."""

    RUNNING = "running"
    COMPLETED = "completed"
    DRY_RUN = "dry_run"
    REFUSED = "refused"
    UNDONE = "undone"


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """One member as a listing shows it (never a PIN or a password hash)."""

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

    def to_dict(self) -> dict[str, Any]:
        """As a JSON listing of members shows it (the keys PRODUCT.md lists)."""
        return {
            "id": self.id,
            "name": self.name,
            "email": self.email,
            "type": self.user_type.value,
            "role": self.role.value,
            "team": self.team,
            "status": self.status.value,
            "batch_id": self.batch_id,
            "invited_at": self.invited_at.isoformat() if self.invited_at else None,
            "invite_error": self.invite_error,
        }


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


# --- end of helper `front`'s block ---


class ErrorCode(enum.StrEnum):
    """Stable, documented codes of per-row errors (and the one skip reason)."""

    NAME_MISSING = "name.missing"
    NAME_TOO_LONG = "name.too_long"
    NAME_INVALID = "name.invalid"
    EMAIL_MISSING = "email.missing"
    EMAIL_INVALID = "email.invalid"
    EMAIL_DUPLICATE_IN_FILE = "email.duplicate_in_file"
    ROLE_MISSING = "role.missing"
    ROLE_INVALID = "role.invalid"
    ROLE_NOT_ALLOWED = "role.not_allowed"
    TEAM_UNKNOWN = "team.unknown"
    PIN_INVALID = "pin.invalid"
    MEMBER_DUPLICATE_IN_FILE = "member.duplicate_in_file"
    MEMBER_EXISTS = "member.exists"

    @property
    def template(self) -> str:
        """The one sentence this code owns: what is wrong and how to fix it."""
        return MESSAGES[self]

    @property
    def description(self) -> str:
        """What the code means, in general terms (for the README and the report)."""
        return DESCRIPTIONS[self]

    def message(self, **params: str) -> str:
        """Render this code's sentence with the row's details."""
        return self.template.format(**params)


# Each code owns one message. Placeholders: {value}, {max}, {min}, {rows}, {hint}, {allowed}.
MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.NAME_MISSING: "Name is empty. Enter the member's name.",
    ErrorCode.NAME_TOO_LONG: (
        "Name is {length} characters long; the limit is {max}. Shorten it to at most {max}."
    ),
    ErrorCode.NAME_INVALID: (
        "Name contains a line break or an invisible control character ({hint}). "
        "Retype the name on a single line."
    ),
    ErrorCode.EMAIL_MISSING: "Email is empty. Enter the address the member will log in with.",
    ErrorCode.EMAIL_INVALID: '"{value}" is not a valid email address: {hint}. Correct the address.',
    ErrorCode.EMAIL_DUPLICATE_IN_FILE: (
        'The email "{value}" is also on row {rows}. Keep it on one row only and remove or correct the others.'
    ),
    ErrorCode.ROLE_MISSING: "Role is empty. Enter {allowed}.",
    ErrorCode.ROLE_INVALID: '"{value}" is not a role that can be invited. Enter {allowed}.{hint}',
    ErrorCode.ROLE_NOT_ALLOWED: "{hint}",
    ErrorCode.TEAM_UNKNOWN: (
        'There is no team "{value}" in this organization.{hint} Use an existing team\'s name, '
        "leave the cell blank, or ask an admin to create the team first."
    ),
    ErrorCode.PIN_INVALID: (
        'PIN "{value}" is not 4–8 digits.{hint} Enter 4 to 8 digits, or leave it blank to have one generated.'
    ),
    ErrorCode.MEMBER_DUPLICATE_IN_FILE: (
        '"{value}" is also on row {rows}. Keep this member on one row only and remove or correct the others.'
    ),
    ErrorCode.MEMBER_EXISTS: "Already a member of this organization; nothing to do.",
}


DESCRIPTIONS: dict[ErrorCode, str] = {
    ErrorCode.NAME_MISSING: "The name cell is empty.",
    ErrorCode.NAME_TOO_LONG: "The name is longer than 100 characters.",
    ErrorCode.NAME_INVALID: "The name has a line break, control or bidi-override character.",
    ErrorCode.EMAIL_MISSING: "The email cell is empty.",
    ErrorCode.EMAIL_INVALID: "The address is not valid (syntax only; no DNS lookup).",
    ErrorCode.EMAIL_DUPLICATE_IN_FILE: "Several rows of the file have this address; all are rejected.",
    ErrorCode.ROLE_MISSING: "The role cell is empty.",
    ErrorCode.ROLE_INVALID: "The role is neither Admin nor Member.",
    ErrorCode.ROLE_NOT_ALLOWED: (
        "The importer may not give this role (Admins invite only Members; nobody invites an Owner)."
    ),
    ErrorCode.TEAM_UNKNOWN: "The organization has no team of that name.",
    ErrorCode.PIN_INVALID: "The PIN is not 4–8 digits.",
    ErrorCode.MEMBER_DUPLICATE_IN_FILE: "Several rows of the file have this name and team; all are rejected.",
    ErrorCode.MEMBER_EXISTS: "Skip reason: the member already exists in the organization.",
}


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem with one cell (or one row) of the uploaded sheet."""

    row_number: int
    column: str
    code: ErrorCode
    message: str
    value: str


@dataclass(frozen=True, slots=True)
class SkippedRow:
    """A row that was not imported because its member already exists."""

    row_number: int
    code: ErrorCode
    message: str
    key: str


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A rejected row's original values, in the file's column order."""

    row_number: int
    values: tuple[str, ...]


class WarningCode(enum.StrEnum):
    """Stable codes of an import's warnings (the `warnings` of `--json` and summary.json)."""

    ENCODING_GUESSED = "file.encoding_guessed"
    SHEET_CHOSEN = "file.sheet_chosen"
    TEMPLATE_MISMATCH = "file.template_mismatch"
    COLUMN_IGNORED = "column.ignored"
    ROW_TOO_LONG = "row.too_long"
    EMAIL_PROVIDER_TYPO = "email.provider_typo"
    REPORT_CUT = "report.cut"


class Notice(str):
    """One warning: its text, and its code.

    A str, so everything that shows or compares a warning as text (the summary, report.html,
    tests) keeps doing so; the code is what a program reading `--json` relies on.
    """

    code: WarningCode

    def __new__(cls, code: WarningCode, message: str) -> Notice:
        notice = super().__new__(cls, message)
        notice.code = code
        return notice

    def __reduce__(self) -> tuple[Any, ...]:
        return (Notice, (self.code, str(self)))  # it crosses the checking worker's pipe

    def to_dict(self) -> dict[str, str]:
        """As `--json` prints it."""
        return {"code": self.code.value, "message": str(self)}


class GeneratedPin(NamedTuple):
    """A PIN the import generated, shown once in pins.csv: its row, member name and team."""

    row: int
    name: str
    team: str
    pin: str


class Outcome(enum.StrEnum):
    """How an import run ended."""

    COMPLETED = "completed"
    DRY_RUN = "dry_run"
    REFUSED = "refused"


@dataclass(slots=True)
class ImportResult:
    """Everything an import run found and did; the report and exit code derive from it."""

    batch_id: str
    user_type: str
    file_name: str
    sha256: str
    dry_run: bool
    all_or_nothing: bool
    headers: tuple[str, ...]
    rows: int = 0
    created: int = 0
    skipped: list[SkippedRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    rejected_rows: list[RejectedRow] = field(default_factory=list)
    warnings: list[Notice] = field(default_factory=list)
    generated_pins: list[GeneratedPin] = field(default_factory=list)
    outcome: Outcome = Outcome.COMPLETED
    report_dir: Path | None = None
    started_at: str = ""
    finished_at: str = ""
    seconds: float = 0.0

    @property
    def rejected(self) -> int:
        """Number of rejected rows (a row with several errors counts once)."""
        return len(self.rejected_rows)

    @property
    def errors_by_code(self) -> dict[str, int]:
        """How many errors of each code, most frequent first."""
        counts: dict[str, int] = {}
        for error in self.errors:
            counts[error.code] = counts.get(error.code, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    @property
    def errors_by_column(self) -> dict[str, int]:
        """How many errors in each column, most frequent first."""
        counts: dict[str, int] = {}
        for error in self.errors:
            counts[error.column] = counts.get(error.column, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    @property
    def exit_code(self) -> int:
        """0 when every row was created or skipped, 3 when some were rejected, 1 when refused."""
        if self.outcome is Outcome.REFUSED:
            return 1
        return 3 if self.rejected_rows else 0

    def to_dict(self) -> dict[str, Any]:
        """The summary object printed by `--json` and written to summary.json."""
        return {
            "batch_id": self.batch_id,
            "type": self.user_type,
            "dry_run": self.dry_run,
            "rows": self.rows,
            "created": self.created,
            "skipped": len(self.skipped),
            "rejected": self.rejected,
            "errors_by_code": self.errors_by_code,
            "report_dir": str(self.report_dir) if self.report_dir else None,
            "warnings": [w.to_dict() for w in self.warnings],
        }


@dataclass(slots=True)
class Members:
    """The rows to write, column by column (the same-for-every-row columns are added by the loader)."""

    source_rows: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    emails: list[str] | None = None
    roles: list[str] | None = None
    team_ids: list[int | None] = field(default_factory=list)
    pin_hashes: list[str] | None = None

    def __len__(self) -> int:
        return len(self.source_rows)

    def name_keys(self) -> Iterator[str]:
        """Each name's comparison form (models.text_key): cells are NFC already, so lower-case.

        Derived where the rows are written, not carried: the checking worker sends less, and
        the importing process lower-cases in the same C-level pass that builds the rows.
        """
        return map(str.lower, self.names)

    def email_keys(self) -> list[str] | None:
        """Each address's comparison form (emails.email_key); None for no-portal members."""
        # Imported here: email_validator is not needed by whoever only reads these values (the CLI's help).
        from importer.checks.emails import email_keys

        return email_keys(self.emails) if self.emails is not None else None

    def shown(self) -> list[str]:
        """What a report shows of each member: the address, or the name when there is none."""
        return self.emails if self.emails is not None else self.names

    def __reduce__(self) -> tuple[Any, ...]:
        # Sent to the importing process as a few long strings and arrays, not a million small
        # objects: pickling them cost more than a second per million rows on each side. Valid
        # cells never hold a NUL (names and addresses with control characters are rejected).
        texts = (self.names, self.emails, self.roles, self.pin_hashes)
        return (
            _unpack_members,
            (
                array("q", self.source_rows).tobytes(),
                array("q", [t or 0 for t in self.team_ids]).tobytes(),
                tuple(None if t is None else _NUL.join(t) for t in texts),
            ),
        )


_NUL = "\x00"


def _unpack_members(rows: bytes, teams: bytes, texts: tuple[str | None, ...]) -> Members:
    source_rows = array("q", rows).tolist()
    columns = [None if t is None else t.split(_NUL) if source_rows else [] for t in texts]
    names, emails, roles, pin_hashes = columns
    return Members(
        source_rows=source_rows,
        names=names or [],
        emails=emails,
        roles=roles,
        team_ids=[t or None for t in array("q", teams).tolist()],
        pin_hashes=pin_hashes,
    )
