"""Chunks -> Checked: every rule, whole-file duplicates and the member columns, in a second process.

The checks need no database, so on a big file they run in a forked worker while the importing
process writes the previous chunk: the two cores both work. Small files are checked inline; the
results are the same either way (the test suite runs both).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import secrets
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from importer.errors import ImporterError
from importer.models import Role
from importer.read import Chunk, OpenedSheet
from importer.results import ErrorCode, RejectedRow, RowError
from importer.sheets import SheetSpec, UserType
from importer.validate import DuplicateTracker, RuleContext, Validator, duplicate_keys, row_key

PIN_DIGITS = 6


@dataclass(slots=True)
class Members:
    """The rows to write, column by column (the same-for-every-row columns are added by the loader)."""

    source_rows: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    name_keys: list[str] = field(default_factory=list)
    emails: list[str] | None = None
    email_keys: list[str] | None = None
    roles: list[str] | None = None
    team_ids: list[int | None] = field(default_factory=list)
    pin_hashes: list[str] | None = None

    def __len__(self) -> int:
        return len(self.source_rows)

    def shown(self) -> list[str]:
        """What a report shows of each member: the address, or the name when there is none."""
        return self.emails if self.emails is not None else self.names

    def __reduce__(self) -> tuple[Any, ...]:
        # Sent to the importing process as a few long strings and arrays, not a million small
        # objects: pickling them cost more than a second per million rows on each side. Valid
        # cells never hold a NUL (names and addresses with control characters are rejected).
        texts = (self.names, self.name_keys, self.emails, self.email_keys, self.roles, self.pin_hashes)
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
    names, name_keys, emails, email_keys, roles, pin_hashes = columns
    return Members(
        source_rows=source_rows,
        names=names or [],
        name_keys=name_keys or [],
        emails=emails,
        email_keys=email_keys,
        roles=roles,
        team_ids=[t or None for t in array("q", teams).tolist()],
        pin_hashes=pin_hashes,
    )


@dataclass(slots=True)
class Checked:
    """One chunk, checked: its problems, its rejected rows and the members to write."""

    rows: int
    errors: list[RowError]
    rejected: list[RejectedRow]
    members: Members
    pins: dict[int, tuple[str, str]]


@dataclass(slots=True)
class Settled:
    """What only the end of the file tells: duplicates whose first copy was in an earlier chunk."""

    late: set[int]
    recovered: list[RejectedRow]
    errors: list[RowError]
    warnings: list[str]


class Checker:
    """The checks of one sheet, chunk after chunk, with the state that spans chunks."""

    def __init__(self, spec: SheetSpec, opened: OpenedSheet, context: RuleContext) -> None:
        self.spec = spec
        self.opened = opened
        self.context = context
        self.user_type = spec.user_type
        headers = {key: opened.header_of(key) for key in opened.columns}
        self.validator = Validator(spec, context, headers=headers)
        self.duplicates = DuplicateTracker()

    def check(self, chunk: Chunk) -> Checked:
        """Every rule of one chunk; duplicates of earlier rows; the members its good rows make."""
        frame = self._with_defaults(chunk.frame)
        errors = self.validator.check_chunk(frame)
        bad_rows = {e.row_number for e in errors}
        duplicate_rows = self.duplicates.observe(*self._keys(frame, errors))
        rejected = bad_rows | duplicate_rows
        rejected_rows = [
            RejectedRow(row, chunk.row(position))
            for position, row in enumerate(frame.index.tolist())
            if row in rejected
        ]
        candidates = frame[~frame.index.isin(list(rejected))] if rejected else frame
        pins: dict[int, tuple[str, str]] = {}
        members = self._members(candidates, pins)
        return Checked(len(frame), errors, rejected_rows, members, pins)

    def settle(self) -> Settled:
        """Duplicates whose first copy is in an earlier chunk: their rows, read again, and the errors."""
        late = set(self.duplicates.late)
        shown = self.opened.columns["email" if self.user_type is UserType.PORTAL else "name"]
        recovered, firsts = [], {}
        for row, values in self.opened.pick_rows(late).items():
            recovered.append(RejectedRow(row, values))
            self.duplicates.values[row] = values[shown]
            cells = {key: values[position] for key, position in self.opened.columns.items()}
            firsts[row] = row_key(cells, user_type=self.user_type)
        self.duplicates.verify(firsts)
        key, code = (
            ("email", ErrorCode.EMAIL_DUPLICATE_IN_FILE)
            if self.user_type is UserType.PORTAL
            else ("name", ErrorCode.MEMBER_DUPLICATE_IN_FILE)
        )
        errors = self.duplicates.errors(self.validator, key=key, code=code)
        return Settled(late, recovered, errors, self.opened.warnings)

    def _with_defaults(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Optional columns absent from the file read as blank."""
        for column in self.spec.columns:
            if column.key not in frame:
                frame[column.key] = ""
        return frame

    def _keys(self, frame: pd.DataFrame, errors: list[RowError]) -> tuple[pd.Series, pd.Series]:
        """Duplicate keys of the rows whose key cell is itself valid (the cell's shown value too)."""
        key = "email" if self.user_type is UserType.PORTAL else "name"
        header = self.validator.headers.get(key)
        bad = [e.row_number for e in errors if e.column == header]
        shown = frame[key]
        valid = shown.ne("") & ~frame.index.isin(bad)
        return duplicate_keys(frame, user_type=self.user_type, valid=valid), shown

    def _members(self, frame: pd.DataFrame, pins: dict[int, tuple[str, str]]) -> Members:
        """The hot path: plain lists per column, C-level maps (cells are NFC already)."""
        names = frame["name"].tolist()
        cells = frame["team"].tolist()
        teams = {cell: self.context.team_for(cell) for cell in set(cells)}  # a few distinct teams
        members = Members(
            source_rows=frame.index.tolist(),
            names=names,
            name_keys=list(map(str.lower, names)),
            team_ids=[t.id if t else None for t in map(teams.__getitem__, cells)],
        )
        if self.user_type is UserType.PORTAL:
            members.emails = frame["email"].tolist()
            members.email_keys = list(map(str.lower, members.emails))
            by_cell = {
                r: (Role.ADMIN if r.lower() == "admin" else Role.MEMBER).value for r in set(frame["role"])
            }
            members.roles = list(map(by_cell.__getitem__, frame["role"].tolist()))
        else:
            members.pin_hashes = [
                self._pin_hash(row, name, pin, pins)
                for row, name, pin in zip(members.source_rows, names, frame["pin"].tolist(), strict=True)
            ]
        return members

    @staticmethod
    def _pin_hash(row: int, name: str, pin: str, pins: dict[int, tuple[str, str]]) -> str:
        if not pin:
            pin = f"{secrets.randbelow(10**PIN_DIGITS):0{PIN_DIGITS}d}"
            pins[row] = (name, pin)
        return hash_pin(pin)


def hash_pin(pin: str) -> str:
    """A salted hash of a PIN.

    Salted SHA-256, not a slow hash: a million PINs must load in seconds, and a 4–8 digit PIN
    cannot be protected by hashing alone anyway; the hash only keeps PINs out of plain sight.
    """
    salt = secrets.token_hex(8)
    return f"sha256${salt}${hashlib.sha256((salt + pin).encode()).hexdigest()}"


def verify_pin(stored: str, pin: str) -> bool:
    """Whether a PIN matches its stored hash."""
    _, salt, digest = stored.split("$")
    return secrets.compare_digest(hashlib.sha256((salt + pin).encode()).hexdigest(), digest)


# --- in order, inline or in a worker process --------------------------------------------------------


def can_fork() -> bool:
    """Whether checks may run in a forked worker (Linux: fork is cheap and safe for this use)."""
    return sys.platform == "linux"


def check_all(checker: Checker, chunks: Iterator[Chunk], *, worker: bool) -> Iterator[Checked | Settled]:
    """Each chunk's Checked in file order, then the Settled; from a worker process if `worker`.

    The worker sends one chunk at a time through a pipe, so it is at most a chunk ahead of the
    writes. Whatever it raises (a limit passed half-way through the file, a bug) is raised here;
    if the importing process stops first, the worker is stopped with it.
    """
    if not worker:
        for chunk in chunks:
            yield checker.check(chunk)
        yield checker.settle()
        return
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_work, args=(checker, chunks, sender), daemon=True)
    process.start()
    sender.close()
    try:
        while True:
            try:
                kind, payload = receiver.recv()
            except EOFError:
                process.join()
                raise ImporterError(
                    f"the process checking the rows stopped unexpectedly (exit code {process.exitcode}); "
                    "nothing was written."
                ) from None
            if kind == "error":
                raise payload
            yield payload
            if kind == "settled":
                break
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
        process.join()


def _work(checker: Checker, chunks: Iterator[Chunk], sender: Any) -> None:
    """The worker: check every chunk and send it on; send what went wrong instead, if anything."""
    try:
        for chunk in chunks:
            sender.send(("checked", checker.check(chunk)))
        sender.send(("settled", checker.settle()))
    except BrokenPipeError:
        pass  # the importing process has stopped; nobody is listening
    except BaseException as exc:
        try:
            sender.send(("error", exc))
        except Exception:
            sender.send(("error", ImporterError(f"unexpected internal error ({type(exc).__name__}: {exc})")))
    finally:
        sender.close()
