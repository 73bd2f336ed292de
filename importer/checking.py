"""Chunks -> Checked: every rule, whole-file duplicates and the member columns, in a second process.

The checks need no database, so on a big file they run in a forked worker while the importing
process writes the previous chunk: the two cores both work. Small files are checked inline; the
results are the same either way (the test suite runs both). A process with other threads (a job
worker, the portal) may not fork: there the worker is a fresh interpreter that opens the sheet again.
Once the end of the file has settled the rejected rows, the worker writes rejected.xlsx (the
slowest file of a report) while the importing process still saves rows.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from importer.addresses import suggest_domain
from importer.checks.duplicates import DuplicateTracker, duplicate_keys
from importer.checks.pins import PIN_DIGITS, hash_pin
from importer.checks.rules import RuleContext, Team, Validator
from importer.errors import CheckingStoppedError
from importer.forked import Helper, can_fork, can_spawn
from importer.reading.sheet import Chunk, OpenedSheet, open_sheet
from importer.reports.files import write_rejected_workbook
from importer.settings import Settings
from importer.sheets import SheetSpec
from importer.values import ErrorCode, ImportResult, Members, Notice, RejectedRow, Role, RowError, UserType


@dataclass(slots=True)
class Checked:
    """One chunk, checked: its problems, its rejected rows and the members to write."""

    rows: int
    errors: list[RowError]
    rejected: list[RejectedRow]
    members: Members
    pins: dict[int, tuple[str, str, str]]  # row -> (name, team, generated PIN)
    # (row, address) of the members whose address is at a near-miss of a big mail provider
    typos: list[tuple[int, str]] = field(default_factory=list)


@dataclass(slots=True)
class Settled:
    """What only the end of the file tells: duplicates whose first copy was in an earlier chunk."""

    late: set[int]
    recovered: list[RejectedRow]
    errors: list[RowError]
    warnings: list[Notice]


@dataclass(slots=True)
class Rejections:
    """The rejected rows and their errors, chunk after chunk, then as the end of the file settles them."""

    errors: list[RowError] = field(default_factory=list)
    rows: dict[int, RejectedRow] = field(default_factory=dict)

    def add(self, checked: Checked) -> None:
        self.errors.extend(checked.errors)
        self.rows.update((r.row_number, r) for r in checked.rejected)

    def settle(self, settled: Settled) -> None:
        for rejected in settled.recovered:  # the first copies of late duplicates
            self.rows.setdefault(rejected.row_number, rejected)
        self.errors.extend(settled.errors)

    def fill(self, result: ImportResult) -> None:
        """The result's errors (by row, then in the file's column order) and rejected rows (by row)."""
        headers = result.headers
        order = {header: position for position, header in reversed(list(enumerate(headers)))}
        result.errors = sorted(self.errors, key=lambda e: (e.row_number, order.get(e.column, len(headers))))
        result.rejected_rows = [self.rows[r] for r in sorted(self.rows)]


@dataclass(frozen=True, slots=True)
class RejectedFiles:
    """What the worker writes once the end of the file is settled (rejected.xlsx): `result` names
    the folder and the headers (the worker fills in its copy's errors and rejected rows)."""

    result: ImportResult
    spec: SheetSpec
    teams: Sequence[str]

    def write(self, rejections: Rejections) -> None:
        rejections.fill(self.result)
        write_rejected_workbook(self.result, spec=self.spec, teams=self.teams)


class FilesWritten:
    """The worker's last message: rejected.xlsx is written."""


@dataclass(frozen=True, slots=True)
class SheetSource:
    """What a spawned worker needs to open the sheet again (it shares no memory with the importer)."""

    path: Path
    spec: SheetSpec
    sheet_name: str | None
    settings: Settings


# A fresh interpreter takes about a second to import what checking needs: a worker started that
# way pays for itself on bigger files than a fork does.
SPAWNED_WORKER_FACTOR = 3


def second_process(row_estimate: int | None, settings: Settings) -> bool:
    """Whether a file of about this many rows is checked in a worker process, forked or spawned."""
    rows = row_estimate or 0
    if can_fork():
        return rows >= settings.worker_from_rows
    return can_spawn() and rows >= settings.worker_from_rows * SPAWNED_WORKER_FACTOR


# How far the checking worker may run ahead of the writes, in checked chunks waiting to be sent
# (about 1.8 MiB per 25,000 rows): on PostgreSQL, whose server sets the pace, the worker is done
# and rejected.xlsx is written well before the last rows are saved.
AHEAD_BYTES = 32 * 1024 * 1024


class Checker:
    """The checks of one sheet, chunk after chunk, with the state that spans chunks."""

    def __init__(self, spec: SheetSpec, *, opened: OpenedSheet, context: RuleContext) -> None:
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
        pins: dict[int, tuple[str, str, str]] = {}
        members = self._members(candidates, pins)
        return Checked(len(frame), errors, rejected_rows, members, pins, _provider_typos(members))

    def settle(self) -> Settled:
        """Duplicates whose first copy is in an earlier chunk: their rows, read again, and the errors."""
        late = set(self.duplicates.late)
        key, code = self._key_column()
        picked = self.opened.pick_rows(late)
        recovered = [RejectedRow(row, values) for row, values in picked.items()]
        if picked:
            rows = list(picked)
            cells = {k: [picked[row][p] for row in rows] for k, p in self.opened.columns.items()}
            frame = pd.DataFrame(cells, index=rows)
            self.duplicates.values.update(zip(rows, cells[key], strict=True))
            # Each late row's key was valid when first seen; it must be the one its copies share.
            keys = duplicate_keys(frame, user_type=self.user_type, valid=pd.Series(True, index=rows))
            self.duplicates.verify(dict(zip(rows, keys.tolist(), strict=True)))
        errors = self.duplicates.errors(self.validator, key=key, code=code)
        return Settled(late, recovered, errors, self.opened.warnings)

    def _key_column(self) -> tuple[str, ErrorCode]:
        """The column whose cells two rows must not share, and the error code when they do."""
        if self.user_type is UserType.PORTAL:
            return "email", ErrorCode.EMAIL_DUPLICATE_IN_FILE
        return "name", ErrorCode.MEMBER_DUPLICATE_IN_FILE

    def _with_defaults(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Optional columns absent from the file read as blank."""
        for column in self.spec.columns:
            if column.key not in frame:
                frame[column.key] = ""
        return frame

    def _keys(self, frame: pd.DataFrame, errors: list[RowError]) -> tuple[pd.Series, pd.Series]:
        """Duplicate keys of the rows whose key cell is itself valid (the cell's shown value too)."""
        key, _ = self._key_column()
        header = self.validator.headers.get(key)
        bad = [e.row_number for e in errors if e.column == header]
        shown = frame[key]
        valid = shown.ne("") & ~frame.index.isin(bad)
        return duplicate_keys(frame, user_type=self.user_type, valid=valid), shown

    def _members(self, frame: pd.DataFrame, pins: dict[int, tuple[str, str, str]]) -> Members:
        """The hot path: plain lists per column, C-level maps (cells are NFC already)."""
        names = frame["name"].tolist()
        cells = frame["team"].tolist()
        teams = {cell: self.context.team_for(cell) for cell in set(cells)}  # a few distinct teams
        members = Members(
            source_rows=frame.index.tolist(),
            names=names,
            team_ids=[t.id if t else None for t in map(teams.__getitem__, cells)],
        )
        if self.user_type is UserType.PORTAL:
            members.emails = frame["email"].tolist()
            by_cell = {
                r: (Role.ADMIN if r.lower() == "admin" else Role.MEMBER).value for r in set(frame["role"])
            }
            members.roles = list(map(by_cell.__getitem__, frame["role"].tolist()))
        else:
            rows = zip(members.source_rows, names, cells, frame["pin"].tolist(), strict=True)
            members.pin_hashes = [
                self._pin_hash(row, name, teams[cell], pin, pins) for row, name, cell, pin in rows
            ]
        return members

    @staticmethod
    def _pin_hash(
        row: int, name: str, team: Team | None, pin: str, pins: dict[int, tuple[str, str, str]]
    ) -> str:
        if not pin:
            pin = f"{secrets.randbelow(10**PIN_DIGITS):0{PIN_DIGITS}d}"
            pins[row] = (name, team.name if team else "", pin)  # the team tells two "Lobby Phone"s apart
        return hash_pin(pin)


def _provider_typos(members: Members) -> list[tuple[int, str]]:
    """(row, address) of each address whose domain looks like a mistyped mail provider."""
    if not members.emails:
        return []
    # The distinct domains in one C-level pass (a valid address holds no line break); the usual
    # chunk has no near-miss among them, and no address is looked at one by one.
    distinct = set(_LAST_DOMAIN.findall("\n".join(members.emails)))
    typos = {domain for domain in distinct if suggest_domain(domain)}
    if not typos:
        return []
    return [
        (row, email)
        for row, email in zip(members.source_rows, members.emails, strict=True)
        if email.rpartition("@")[2] in typos
    ]


_LAST_DOMAIN = re.compile(r"@([^@\n]*)$", re.MULTILINE)


# --- in order, inline or in a worker process --------------------------------------------------------


def check_all(
    checker: Checker,
    chunks: Iterator[Chunk],
    *,
    worker: bool,
    files: RejectedFiles | None = None,
    source: SheetSource | None = None,
) -> Generator[Checked | Settled | FilesWritten, None, None]:
    """Each chunk's Checked in file order, then the Settled, then FilesWritten once `files` are.

    From a worker process if `worker`: it runs up to AHEAD_BYTES of checked chunks ahead of the
    writes, then writes rejected.xlsx while the importing process saves the last rows.
    Whatever it raises (a limit passed half-way through the file, a full disk, a bug) is raised here.
    A process that may not fork starts the worker as a fresh interpreter, which opens `source` again.
    """
    fork = can_fork()  # decided once: a thread may start or end meanwhile
    if not worker or not (fork or (source is not None and can_spawn())):
        yield from _checked(checker, chunks, files)
        return
    work, args = (
        (_check_and_send, (checker, chunks, files))
        if fork
        else (_open_and_check, (source, checker.context, files))
    )
    helper = Helper(
        work,
        *args,
        doing="checking the rows",
        error=CheckingStoppedError,
        tail="; nothing was written.",
        ahead_bytes=AHEAD_BYTES,
        spawn=not fork,
    )
    try:
        while True:
            message: Checked | Settled | FilesWritten = helper.recv()
            yield message
            if isinstance(message, FilesWritten):
                break
    finally:
        helper.stop()


def _checked(
    checker: Checker, chunks: Iterator[Chunk], files: RejectedFiles | None
) -> Generator[Checked | Settled | FilesWritten, None, None]:
    """Check every chunk, then settle the end of the file, then write the files: each step sent on.

    The rejections are gathered here only for `files`: the importing process gathers its own.
    """
    rejections = Rejections() if files is not None else None
    for chunk in chunks:
        checked = checker.check(chunk)
        if rejections is not None:
            rejections.add(checked)
        yield checked
    settled = checker.settle()
    yield settled
    if files is not None and rejections is not None:
        rejections.settle(settled)
        files.write(rejections)
    yield FilesWritten()


def _open_and_check(
    send: Callable[[object], None], source: SheetSource, context: RuleContext, files: RejectedFiles | None
) -> None:
    """The spawned worker: open the sheet again (the same file, the same reading), then as a fork."""
    opened = open_sheet(source.path, source.spec, sheet_name=source.sheet_name, settings=source.settings)
    checker = Checker(source.spec, opened=opened, context=context)
    _check_and_send(send, checker, opened.iter_chunks(chunk_rows=source.settings.chunk_rows), files)


def _check_and_send(
    send: Callable[[object], None], checker: Checker, chunks: Iterator[Chunk], files: RejectedFiles | None
) -> None:
    """The worker: every step of _checked, sent to the importing process."""
    for message in _checked(checker, chunks, files):
        send(message)
