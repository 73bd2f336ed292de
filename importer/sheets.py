"""The sheet declarations in schemas/: column metadata, header matching, the pandera schema."""

from __future__ import annotations

import enum
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from importer.values import ErrorCode, UserType


class ColumnKind(enum.StrEnum):
    """What a column holds; each kind owns its checks and error codes."""

    NAME = "name"
    EMAIL = "email"
    ROLE = "role"
    TEAM = "team"
    PIN = "pin"


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One column of a sheet as declared in schemas/."""

    key: str
    header: str
    kind: ColumnKind
    required: bool
    aliases: tuple[str, ...]
    rule: str
    examples: tuple[str, ...]
    allowed: tuple[str, ...] = ()
    min_length: int | None = None
    max_length: int | None = None

    @property
    def sample_header(self) -> str:
        """The header written in sample sheets: required columns say so."""
        return f"{self.header} (required)" if self.required else self.header


@dataclass(frozen=True, slots=True)
class SheetSpec:
    """One sheet (user type) as declared in schemas/."""

    user_type: UserType
    title: str
    version: int
    description: str
    columns: tuple[ColumnSpec, ...]
    changes: tuple[tuple[int, str], ...] = ()

    def changes_since(self, version: int) -> list[str]:
        """What the versions after `version` changed, oldest first."""
        return [f"version {v}: {note}" for v, note in self.changes if v > version]

    def column(self, key: str) -> ColumnSpec:
        """The column with this key."""
        for column in self.columns:
            if column.key == key:
                return column
        raise KeyError(key)

    @property
    def keys(self) -> tuple[str, ...]:
        """The column keys in declaration order."""
        return tuple(column.key for column in self.columns)

    @property
    def expected_headers(self) -> str:
        """The headers a user should write, for error messages."""
        return ", ".join(f"{c.header}{' (required)' if c.required else ' (optional)'}" for c in self.columns)


# The column the reports add; ignored when a fixed rejected.csv/xlsx is uploaded again.
ERRORS_HEADER = "Errors"

_HEADER_NOISE = re.compile(r"[\s_\-]+")
_REQUIRED_SUFFIX = re.compile(r"\(required\)\s*$", re.IGNORECASE)


def normalize_header(text: str) -> str:
    """Header matching ignores case, spaces, `_`, `-` and a trailing `(required)`."""
    text = _REQUIRED_SUFFIX.sub("", text.strip().lstrip("\ufeff"))
    return _HEADER_NOISE.sub("", text).casefold()


@cache
def load_sheet(user_type: UserType) -> SheetSpec:
    """Load one sheet declaration from the schemas package."""
    raw = tomllib.loads(
        resources.files("importer.schemas").joinpath(f"{user_type.value}.toml").read_text("utf-8")
    )
    columns = tuple(
        ColumnSpec(
            key=c["key"],
            header=c["header"],
            kind=ColumnKind(c["kind"]),
            required=bool(c["required"]),
            aliases=tuple(c.get("aliases", ())),
            rule=c["rule"],
            examples=tuple(c.get("examples", ())),
            allowed=tuple(c.get("allowed", ())),
            min_length=c.get("min_length"),
            max_length=c.get("max_length"),
        )
        for c in raw["columns"]
    )
    return SheetSpec(
        user_type=UserType(raw["type"]),
        title=raw["title"],
        version=int(raw["version"]),
        description=raw["description"],
        columns=columns,
        changes=tuple(sorted((int(v), note) for v, note in raw.get("changes", {}).items())),
    )


def all_sheets() -> tuple[SheetSpec, ...]:
    """Every declared sheet, portal first."""
    return tuple(load_sheet(t) for t in UserType)


def header_lookup(sheet: SheetSpec) -> dict[str, str]:
    """Normalized header or alias -> column key."""
    lookup: dict[str, str] = {}
    for column in sheet.columns:
        for text in (column.header, column.key, *column.aliases):
            lookup[normalize_header(text)] = column.key
    return lookup


def error_codes_for(kind: ColumnKind) -> tuple[ErrorCode, ...]:
    """The error codes a column of this kind can produce (for docs and reports)."""
    return {
        ColumnKind.NAME: (ErrorCode.NAME_MISSING, ErrorCode.NAME_TOO_LONG, ErrorCode.NAME_INVALID),
        ColumnKind.EMAIL: (
            ErrorCode.EMAIL_MISSING,
            ErrorCode.EMAIL_INVALID,
            ErrorCode.EMAIL_DUPLICATE_IN_FILE,
        ),
        ColumnKind.ROLE: (
            ErrorCode.ROLE_MISSING,
            ErrorCode.ROLE_INVALID,
            ErrorCode.ROLE_NOT_ALLOWED,
        ),
        ColumnKind.TEAM: (ErrorCode.TEAM_UNKNOWN,),
        ColumnKind.PIN: (ErrorCode.PIN_INVALID,),
    }[kind]
