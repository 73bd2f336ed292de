"""DataFrame chunk -> RowErrors: pandera for the cell rules, plus the rules that need the database."""

from __future__ import annotations

import difflib
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain

import numpy as np
import pandas as pd
import pandera.pandas as pa

from importer.checks.emails import check_email, email_keys, suggest_domain, surely_valid
from importer.messages import CellFacts, did_you_mean, row_message
from importer.sheets import ColumnKind, ColumnSpec, SheetSpec
from importer.values import Actor, ErrorCode, Role, RowError, UserType, text_key

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


class NameIndex:
    """Close-match suggestions among many names, each in time bounded by the few names alike.

    `difflib.get_close_matches` over every team is 0.26 s per question among 20,000 teams. Here
    the names are indexed once by their trigrams; a question scores only the names that share a
    trigram that is not common to most of them, and difflib judges the best few of those by its
    usual ratio (cutoff 0.6). Answers are remembered: a sheet repeats its unknown teams.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self._names: dict[str, str] = {}
        for name in names:
            self._names.setdefault(text_key(name), name)
        self._keys = list(self._names)
        postings: dict[str, list[int]] = defaultdict(list)
        if len(self._keys) > _SCAN_ALL_BELOW:
            for position, key in enumerate(self._keys):
                for gram in _trigrams(key):
                    postings[gram].append(position)
        self._postings = dict(postings)
        self._answers: dict[str, str | None] = {}

    def closest(self, value: str) -> str | None:
        """The name closest to a mistyped value, if one is close (case-insensitive)."""
        key = text_key(value)
        if key not in self._answers:
            self._answers[key] = self._closest(key)
        return self._answers[key]

    def _closest(self, key: str) -> str | None:
        if len(self._keys) <= _SCAN_ALL_BELOW:
            candidates = self._keys
        else:
            lists = sorted((self._postings.get(g, []) for g in _trigrams(key)), key=len)
            # The rarer trigrams say which names are alike; one shared by most names says little
            # and costs a pass over them all. At least the three rarest are always counted.
            counted = [p for i, p in enumerate(lists) if i < 3 or len(p) <= _COMMON_GRAM]
            shared = Counter(chain.from_iterable(counted))
            candidates = [self._keys[p] for p, _ in shared.most_common(_CANDIDATES)]
        found = difflib.get_close_matches(key, candidates, n=1, cutoff=_CUTOFF)
        return self._names[found[0]] if found else None


_CUTOFF = 0.6  # difflib's default: what "close" has always meant here
_SCAN_ALL_BELOW = 200  # a handful of roles or teams: difflib over all of them
_COMMON_GRAM = 2_000
_CANDIDATES = 50


def _trigrams(key: str) -> set[str]:
    padded = f"  {key} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


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
    fixed = suggest_domain(domain) if at else None
    return f"{local}@{fixed}" if fixed else None


def provider_hint(address: str) -> str:
    """` Did you mean "bob@gmail.com"?` when the domain looks like a mistyped mail provider."""
    return did_you_mean(meant_address(address))


def suggest(value: str, choices: Iterable[str]) -> str | None:
    """The closest choice to a mistyped value, if one is close (case-insensitive)."""
    return _index_of(tuple(choices)).closest(value)


@lru_cache(maxsize=64)
def _index_of(choices: tuple[str, ...]) -> NameIndex:
    # A sheet's few allowed values (roles) are asked about once per bad cell.
    return NameIndex(choices)


def mask_pin(value: str) -> str:
    """A PIN as it may appear in reports and logs: never its digits."""
    return "•" * len(value) if value else ""


# --- duplicates inside the file -----------------------------------------------------------------


# Two SipHash keys: a row's duplicate key is remembered as 128 bits, not as its text.
_HASH_KEYS = ("importer-dup-k1.", "importer-dup-k2.")


@dataclass(slots=True)
class DuplicateTracker:
    """Whole-file duplicate detection, exact across chunks, in 24 bytes per distinct key.

    Each distinct key is remembered as two 64-bit SipHash values and its first row, in numpy arrays
    sorted by hash: about 24 MB for a million rows, where a dict of the texts took about 150 MB.
    Two different keys that share all 128 bits (odds around 1e-27 in a million rows) are caught
    when the first copy is read back, never silently merged.

    A row whose key was seen before is rejected at once. When the first copy lies in an earlier
    chunk it may already be loaded: it is listed in `late` so the pipeline can take it back and
    fill in its value.
    """

    groups: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    keys: dict[tuple[int, int], str] = field(default_factory=dict)
    values: dict[int, str] = field(default_factory=dict)
    late: set[int] = field(default_factory=set)
    _h1: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))
    _h2: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))
    _rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def observe(self, keys: pd.Series, shown: pd.Series) -> set[int]:
        """Register a chunk's keys (index = row numbers; "" = no key); return its duplicate rows."""
        present = keys.ne("").to_numpy()
        texts = keys.to_numpy(dtype=object)[present]
        rows = keys.index.to_numpy(dtype=np.int64)[present]
        if not len(rows):
            return set()
        h1 = pd.util.hash_array(texts, hash_key=_HASH_KEYS[0], categorize=False)
        h2 = pd.util.hash_array(texts, hash_key=_HASH_KEYS[1], categorize=False)
        earlier = self._earlier_rows(h1, h2)
        repeated = pd.DataFrame({"h1": h1, "h2": h2}).duplicated(keep=False).to_numpy()
        suspects = np.flatnonzero((earlier >= 0) | repeated)
        duplicates: set[int] = set()
        for i in suspects.tolist():  # the few rows whose key is not new, in file order
            row, key, text = int(rows[i]), (int(h1[i]), int(h2[i])), str(texts[i])
            group = self.groups.get(key)
            if group is None:
                first = int(earlier[i])
                self.keys[key] = text
                if first < 0:  # a first copy in this chunk; its next copy is in this chunk too
                    self.groups[key] = [row]
                    self.values[row] = str(shown.at[row])
                    continue
                self.groups[key] = group = [first]
                self.late.add(first)
            elif self.keys[key] != text:
                raise _collision(row)
            if len(group) == 1 and group[0] not in self.late:
                duplicates.add(group[0])
            group.append(row)
            duplicates.add(row)
            self.values[row] = str(shown.at[row])
        self._remember(h1, h2, rows, new=earlier < 0)
        return duplicates

    def verify(self, firsts: dict[int, str]) -> None:
        """Check first copies read back (row -> key) against the key their later copies share."""
        for group_key, group in self.groups.items():
            if group[0] in firsts and self.keys[group_key] != firsts[group[0]]:
                raise _collision(group[0])

    def _earlier_rows(self, h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
        """For each hash pair, the first row of an earlier chunk with the same pair, or -1."""
        found = np.full(len(h1), -1, dtype=np.int64)
        if not len(self._h1):
            return found
        order = np.argsort(h1)  # sorted queries walk the remembered array in order
        start = np.searchsorted(self._h1, h1[order], side="left")
        hits = np.flatnonzero(start < len(self._h1))
        hits = hits[self._h1[start[hits]] == h1[order][hits]]
        for k in hits.tolist():  # rare: the hash was seen before
            i, j = int(order[k]), int(start[k])
            while j < len(self._h1) and self._h1[j] == h1[i]:
                if self._h2[j] == h2[i]:
                    found[i] = self._rows[j]
                    break
                j += 1
        return found

    def _remember(self, h1: np.ndarray, h2: np.ndarray, rows: np.ndarray, *, new: np.ndarray) -> None:
        """Add this chunk's new keys (their first row in the chunk), keeping the arrays sorted."""
        frame = pd.DataFrame({"h1": h1[new], "h2": h2[new], "row": rows[new]})
        frame = frame.drop_duplicates(subset=["h1", "h2"], keep="first").sort_values("h1", kind="stable")
        added = frame["h1"].to_numpy()
        at = np.searchsorted(self._h1, added, side="right")
        self._h1 = np.insert(self._h1, at, added)
        self._h2 = np.insert(self._h2, at, frame["h2"].to_numpy())
        self._rows = np.insert(self._rows, at, frame["row"].to_numpy())

    def errors(self, validator: Validator, *, key: str, code: ErrorCode) -> list[RowError]:
        """One error per copy, each naming the other rows."""
        errors: list[RowError] = []
        for rows in self.groups.values():
            for row in rows:
                others = [r for r in rows if r != row]
                errors.append(validator.error(row, key, code, self.values.get(row, ""), rows=tuple(others)))
        return errors


def _collision(row: int) -> RuntimeError:
    return RuntimeError(f"two different duplicate keys share a 128-bit hash (row {row})")


def duplicate_keys(frame: pd.DataFrame, *, user_type: UserType, valid: pd.Series) -> pd.Series:
    """The key two rows of one file must not share: the address's comparison form (emails.email_key),
    or the name and team; "" (no key) where the key cell is not valid."""
    if user_type is UserType.PORTAL:
        addresses = frame["email"].where(valid, "").tolist()
        return pd.Series(email_keys(addresses), index=frame.index, dtype=object)
    team = frame["team"].str.lower() if "team" in frame else ""
    keys = frame["name"].str.lower() + "\x1f" + team
    return keys.where(valid, "")
