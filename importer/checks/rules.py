"""DataFrame chunk -> RowErrors: pandera for the cell rules, and the rules about roles and teams that
need what the database knows (given as a RuleContext of plain values, never the ORM)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pandas as pd
import pandera.pandas as pa

from importer.addresses import check_email, suggest_domain, surely_valid
from importer.checks.suggestions import NameIndex, suggest
from importer.messages import CellFacts, did_you_mean, row_message
from importer.sheets import ColumnKind, ColumnSpec, SheetSpec
from importer.values import Actor, ErrorCode, Role, RowError, text_key

# Line breaks, C0/C1 controls, and the bidi overrides that make a name read differently than it is.
_INVALID_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f]")
# Zero-width characters hide inside addresses that look right; email-validator alone allows some.
_ZERO_WIDTH = re.compile(r"[\u200b-\u200d\u2060\ufeff\u00ad]")
_HIDDEN_IN_EMAIL = re.compile(f"{_ZERO_WIDTH.pattern}|{_INVALID_NAME_CHARS.pattern}")
_PIN = re.compile(r"[0-9]{4,8}")  # ASCII only: `\d` would accept ١٢٣٤ or full-width ０１２３
_PIN_MIN, _PIN_MAX = 4, 8

Series = pd.Series
SeriesCheck = Callable[[Series], Series]


@dataclass(frozen=True, slots=True)
class Team:
    """A team a row may name."""

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class RuleContext:
    """What the rules that need the database know: who imports, and the organization's teams."""

    actor: Actor
    teams: dict[str, Team] = field(default_factory=dict)
    # Suggestions for unknown teams, indexed once when the context is made (before the import
    # takes the database's write lock), so that each question inside it is quick.
    team_names: NameIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "team_names", NameIndex(t.name for t in self.teams.values()))

    def team_for(self, cell: str) -> Team | None:
        """The team a cell names, case-insensitively; None for blank or unknown."""
        return self.teams.get(text_key(cell)) if cell else None


def _allowed_roles(column: ColumnSpec) -> dict[str, Role]:
    return {text_key(value): Role(value) for value in column.allowed}


def _checks_for(column: ColumnSpec, context: RuleContext) -> list[tuple[ErrorCode, SeriesCheck]]:
    """Each check returns True where the cell is fine; blank cells only fail `*.missing`.

    Written for a million rows: C-level passes over the column (one regex search over all the
    names at once, isin), and rules about roles and teams decided once per distinct cell.
    """
    checks: list[tuple[ErrorCode, SeriesCheck]] = []
    if column.kind is ColumnKind.NAME:
        limit = column.max_length or 100
        checks = [
            (ErrorCode.NAME_MISSING, lambda s: s.ne("")),
            (ErrorCode.NAME_TOO_LONG, lambda s: _mask(s, [n <= limit for n in map(len, s.tolist())])),
            (ErrorCode.NAME_INVALID, _name_chars_ok),
        ]
    elif column.kind is ColumnKind.EMAIL:
        checks = [
            (ErrorCode.EMAIL_MISSING, lambda s: s.ne("")),
            (ErrorCode.EMAIL_INVALID, lambda s: s.eq("") | _mask(s, emails_ok(s.tolist()))),
        ]
    elif column.kind is ColumnKind.ROLE:
        allowed = _allowed_roles(column)
        known = {*allowed, text_key(Role.OWNER.value)}
        may_invite = {key for key, role in allowed.items() if role in context.actor.may_invite}
        checks = [
            (ErrorCode.ROLE_MISSING, lambda s: s.ne("")),
            (ErrorCode.ROLE_INVALID, _per_distinct(lambda v: v == "" or v.lower() in known)),
            (
                ErrorCode.ROLE_NOT_ALLOWED,
                _per_distinct(lambda v: v.lower() not in known or v.lower() in may_invite),
            ),
        ]
    elif column.kind is ColumnKind.TEAM:
        teams = set(context.teams)
        checks = [(ErrorCode.TEAM_UNKNOWN, _per_distinct(lambda v: v == "" or v.lower() in teams))]
    elif column.kind is ColumnKind.PIN:
        checks = [
            (ErrorCode.PIN_INVALID, lambda s: _mask(s, [v == "" or bool(_PIN.fullmatch(v)) for v in s]))
        ]
    return checks


def _mask(s: Series, verdicts: list[bool]) -> Series:
    return pd.Series(verdicts, index=s.index, dtype=bool)


def _per_distinct(verdict: Callable[[str], bool]) -> SeriesCheck:
    """A check decided once per distinct cell (a sheet names a handful of roles and teams)."""

    def check(s: Series) -> Series:
        return s.isin([value for value in s.unique() if verdict(value)])

    return check


def _name_chars_ok(s: Series) -> Series:
    names = s.tolist()
    if _INVALID_NAME_CHARS.search("".join(names)) is None:  # the usual case: one search for all
        return _mask(s, [True] * len(names))
    return _mask(s, [_INVALID_NAME_CHARS.search(name) is None for name in names])


def emails_ok(addresses: list[str]) -> list[bool]:
    """email_problem(a) is None for each address; the plain ones decided in one C-level pass."""
    return [
        sure or email_problem(a) is None for a, sure in zip(addresses, surely_valid(addresses), strict=True)
    ]


def email_problem(address: str) -> str | None:
    """Why an address is not accepted, or None."""
    if _HIDDEN_IN_EMAIL.search(address):
        if _ZERO_WIDTH.search(address):
            return "it contains an invisible zero-width character"
        return "it contains a line break or control character"
    return check_email(address)


def build_schema(spec: SheetSpec, context: RuleContext, *, present: Iterable[str]) -> pa.DataFrameSchema:
    """The pandera schema of one sheet, for the columns present in the file."""
    columns = {}
    for column in spec.columns:
        if column.key not in present:
            continue
        checks = [
            pa.Check(fn, name=code.value, error=code.value, ignore_na=False)
            for code, fn in _checks_for(column, context)
        ]
        # nullable=True skips pandera's null scan (0.5 s a million rows): a cell is never null here,
        # the reader makes every cell text and blank is "", which the `*.missing` checks answer.
        columns[column.key] = pa.Column(object, checks=checks, nullable=True, coerce=False)
    return pa.DataFrameSchema(columns, strict=False)


class Validator:
    """Per-cell and per-row rules for the chunks of one sheet."""

    def __init__(self, spec: SheetSpec, context: RuleContext, *, headers: dict[str, str]) -> None:
        self.spec = spec
        self.context = context
        self.headers = headers
        self.schema = build_schema(spec, context, present=headers)

    def check_chunk(self, frame: pd.DataFrame) -> list[RowError]:
        """Every rule failure of the chunk: each pandera Check of the schema, run on its column.

        Not `schema.validate(frame, lazy=True)`: that also builds, for every chunk with a bad
        row, a summary of all failures (failure-case frames, concatenated and grouped) that
        nothing here reads; it was a third of the checking time of a million-row file. The
        schema's other checks (columns present, object dtype, nulls) hold by construction: it is
        built for the columns present, and the reader makes every cell a string.
        """
        errors: list[RowError] = []
        for key, column in self.schema.columns.items():
            cells = frame[key]
            for check in column.checks:
                passed = check(cells).check_output
                if bool(passed.all()):
                    continue
                failing = cells[~passed]
                code = ErrorCode(check.name)
                errors.extend(
                    self.error(int(row), key, code, str(value))
                    for row, value in zip(failing.index, failing.tolist(), strict=True)
                )
        return errors

    def error(
        self, row: int, key: str, code: ErrorCode, value: str, *, rows: tuple[int, ...] = ()
    ) -> RowError:
        """A RowError with its message (messages.py) filled in with the facts about this cell."""
        column = self.spec.column(key)
        shown = mask_pin(value) if column.kind is ColumnKind.PIN else value
        character = problem = suggestion = None
        if code is ErrorCode.NAME_INVALID:
            bad = _INVALID_NAME_CHARS.search(value)
            character = bad.group() if bad else None
        elif code is ErrorCode.EMAIL_INVALID:
            problem, suggestion = email_problem(value), meant_address(value)
        elif code is ErrorCode.ROLE_INVALID:
            suggestion = suggest(value, self.spec.column("role").allowed)
        elif code is ErrorCode.TEAM_UNKNOWN:
            suggestion = self.context.team_names.closest(value)
        facts = CellFacts(
            value=value,
            shown=shown,
            min_length=_PIN_MIN if column.kind is ColumnKind.PIN else column.min_length,
            max_length=column.max_length,
            allowed=column.allowed,
            rows=rows,
            character=character,
            problem=problem,
            suggestion=suggestion,
            actor=self.context.actor,
        )
        return RowError(row, self.headers.get(key, column.header), code, row_message(code, facts), shown)


def meant_address(address: str) -> str | None:
    """The address with the mail provider a mistyped domain most likely meant (bob@gmial.com ->
    bob@gmail.com), or None."""
    local, at, domain = address.rpartition("@")
    # With a second "@" the address stays invalid whatever its domain: no provider would fix it.
    fixed = suggest_domain(domain) if at and "@" not in local else None
    return f"{local}@{fixed}" if fixed else None


def provider_hint(address: str) -> str:
    """` Did you mean "bob@gmail.com"?` when the domain looks like a mistyped mail provider."""
    return did_you_mean(meant_address(address))


def mask_pin(value: str) -> str:
    """A PIN as it may appear in reports and logs: never its digits."""
    return "•" * len(value) if value else ""
