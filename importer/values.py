"""Plain values that flow through the pipeline: error codes, row errors, members to write, the result."""

from __future__ import annotations

import enum
import unicodedata
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple


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
    def description(self) -> str:
        """What the code means, in general terms (for the README and the report)."""
        return DESCRIPTIONS[self]


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
    """One warning: its text, its code, and what the user can do about it.

    A str, so everything that shows or compares a warning as text (the summary, report.html,
    tests) keeps doing so; the code is what a program reading `--json` relies on. `remedy` (and
    `remedy_arg`) is a fact each front end phrases in its own words, as for an ImporterError.
    """

    code: WarningCode
    remedy: Remedy | None
    remedy_arg: str | None

    def __new__(
        cls, code: WarningCode, message: str, *, remedy: Remedy | None = None, remedy_arg: str | None = None
    ) -> Notice:
        notice = super().__new__(cls, message)
        notice.code = code
        notice.remedy = remedy
        notice.remedy_arg = remedy_arg
        return notice

    def __reduce__(self) -> tuple[Any, ...]:
        # It crosses the checking worker's pipe.
        return (_make_notice, (self.code, str(self), self.remedy, self.remedy_arg))

    def to_dict(self) -> dict[str, str]:
        """As `--json` prints it."""
        return {"code": self.code.value, "message": str(self)}


def _make_notice(code: WarningCode, message: str, remedy: Remedy | None, remedy_arg: str | None) -> Notice:
    return Notice(code, message, remedy=remedy, remedy_arg=remedy_arg)


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


class SendFailure(NamedTuple):
    """A member who could not be emailed, and why (the server's reply when it refused)."""

    email: str
    error: str


@dataclass(frozen=True, slots=True)
class SendResult:
    """What a send-activations run did.

    `sent`: messages the transport accepted. `failed`: members refused by the server (or with an
    address no message can carry); each keeps the reason in `invite_error` and is tried again by
    the next run. `skipped`: pending portal members in scope who were already emailed and were
    left alone because `resend` was off. Active and no-portal members are not counted at all.
    """

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    failures: tuple[SendFailure, ...] = ()
    # Where the summary of the refused addresses went (the acting admin), when one was sent.
    summary_to: str | None = None

    def to_dict(self) -> dict[str, int]:
        """The counts, as JSON output shows them."""
        return {"sent": self.sent, "failed": self.failed, "skipped": self.skipped}

    @property
    def exit_code(self) -> int:
        """0 when nobody failed, 3 when some members failed (a TransportError means 1)."""
        return 3 if self.failed else 0


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
        """Each name's comparison form (text_key): cells are NFC already, so lower-case.

        Derived where the rows are written, not carried: the checking worker sends less, and
        the importing process lower-cases in the same C-level pass that builds the rows.
        """
        return map(str.lower, self.names)

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


# --- value types every layer shares -------------------------------------------------------------
# The ORM maps Role and Status (store/models.py re-exports them); the checks and the readers use
# them without importing the store. Limit and Remedy are re-exported by errors.py.


class UserType(enum.StrEnum):
    """The two kinds of member, one sample sheet each."""

    PORTAL = "portal"
    NO_PORTAL = "no-portal"


class Role(enum.StrEnum):
    """A member's role in an organization."""

    OWNER = "Owner"
    ADMIN = "Admin"
    MEMBER = "Member"


class Status(enum.StrEnum):
    """A member's lifecycle: pending until the password is set (or the invitation accepted); an
    admin may deactivate a member and reactivate them."""

    PENDING = "pending"
    ACTIVE = "active"
    DEACTIVATED = "deactivated"


def text_key(text_value: str) -> str:
    """The one documented comparison form of names, teams and emails: NFC, then lower-case.

    Deliberately not NFKC or casefold: a full-width `ａ`, a dotless `ı` or a Cyrillic `а` stays a
    different character, so a look-alike address is never taken for an existing member's.
    """
    return unicodedata.normalize("NFC", text_value).lower()


# Who may invite whom: an Owner invites Admins and Members; an Admin only Members.
INVITABLE_ROLES: dict[Role, frozenset[Role]] = {
    Role.OWNER: frozenset({Role.ADMIN, Role.MEMBER}),
    Role.ADMIN: frozenset({Role.MEMBER}),
    Role.MEMBER: frozenset(),
}


@dataclass(frozen=True, slots=True)
class Actor:
    """The member on whose authority an import runs."""

    member_id: int
    email: str
    role: Role

    @property
    def may_invite(self) -> frozenset[Role]:
        """The roles this actor may give."""
        return INVITABLE_ROLES[self.role]


class Limit(enum.StrEnum):
    """An import limit, named as its Settings field; each front end says in its own words how to raise it."""

    FILE_BYTES = "max_file_bytes"
    UNPACKED_BYTES = "max_unpacked_bytes"
    COMPRESSION_RATIO = "max_compression_ratio"
    ROWS = "max_rows"
    COLUMNS = "max_columns"
    CELL_CHARS = "max_cell_chars"
    CELLS = "max_cells"


class Remedy(enum.StrEnum):
    """What the user can do next, as a fact: the CLI renders it as a command or flag, a web page as a
    link or button. `ImporterError.remedy_arg` (or `Notice.remedy_arg`) carries its one argument where
    it has one."""

    RAISE_LIMIT = "raise_limit"  # arg: the Limit
    CREATE_ORGANIZATION = "create_organization"
    LIST_BATCHES = "list_batches"
    LIST_MEMBERS = "list_members"
    LIST_TEAMS = "list_teams"
    UNDO_BATCH = "undo_batch"  # arg: the batch id
    CHOOSE_SHEET = "choose_sheet"
    START_FROM_TEMPLATE = "start_from_template"  # arg: the user type
    IMPORT_AS_TYPE = "import_as_type"  # arg: the user type the sheet looks like
    RESEND_INVITATION = "resend_invitation"
    ENCRYPT_SMTP = "encrypt_smtp"
    GIVE_PASSWORD_ON_STDIN = "give_password_on_stdin"  # noqa: S105 (a remedy's name, not a password)
    CHOOSE_DATABASE = "choose_database"
