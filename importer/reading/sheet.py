"""An uploaded file opened: its source chosen, its header row found and mapped to the sheet's columns,
its cleaned rows (clean.py) served in chunks."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from importer.errors import (
    FileLevelError,
    LimitExceededError,
    MissingColumnsError,
    UnreadableFileError,
    UnsupportedFileError,
    WrongSheetTypeError,
)
from importer.reading.clean import (
    Block,
    clean_blocks,
    clean_columns,
    fit_width,
    row_of,
    unguarded,
    written_by_us,
)
from importer.reading.guard import check_workbook_file
from importer.reading.sources.base import RawBlock, RawPicks, Source
from importer.reading.sources.text import CsvSource
from importer.reading.sources.workbook import WorkbookSource
from importer.settings import Settings
from importer.sheets import ERRORS_HEADER, SheetSpec, all_sheets, header_lookup, normalize_header
from importer.stamp import STAMP_PATTERN, read_template_stamp
from importer.values import Limit, Notice, Remedy, UserType, WarningCode

TEXT_EXTENSIONS = frozenset({".csv", ".tsv", ".txt"})
WORKBOOK_EXTENSIONS = frozenset({".xlsx", ".xlsm", ".xls", ".ods"})
SUPPORTED_EXTENSIONS = TEXT_EXTENSIONS | WORKBOOK_EXTENSIONS


@dataclass(slots=True)
class Chunk:
    """A run of consecutive non-blank data rows.

    `frame` holds the declared columns by key, every cell text, indexed by the row number the
    user sees; `columns` holds every column of the file, in the file's order, for the reports.
    """

    frame: pd.DataFrame
    columns: list[list[str]]

    def __len__(self) -> int:
        return len(self.frame)

    def row(self, position: int) -> tuple[str, ...]:
        """The cells of the row at this position, every column of the file, in the file's order."""
        return row_of(self.columns, position)

    @property
    def raw(self) -> list[tuple[str, ...]]:
        """Every row's cells, every column of the file."""
        return list(zip(*self.columns, strict=True)) if self.columns else [() for _ in range(len(self))]


@dataclass(slots=True)
class OpenedSheet:
    """An uploaded sheet with its header row understood, ready to stream its rows."""

    path: Path
    headers: tuple[str, ...]
    columns: dict[str, int]
    encoding: str | None
    delimiter: str | None
    header_row: int
    warnings: list[Notice] = field(default_factory=list)
    row_estimate: int | None = None
    _blocks: Iterator[Block] | None = None
    _reopen: Callable[[], Iterator[RawBlock]] | None = None
    _pick: Callable[[list[int]], RawPicks | None] | None = None
    _texts_only: bool = True
    _ours: bool = False  # a file the importer wrote (rejected.csv/xlsx): its formula guards dropped
    _stat: tuple[int, int, int] | None = None  # the file as first read (see _identity)

    def header_of(self, key: str) -> str:
        """The header text the user gave the column with this key."""
        return self.headers[self.columns[key]]

    def iter_chunks(self, *, chunk_rows: int) -> Iterator[Chunk]:
        """Yield the data rows in chunks of `chunk_rows` rows (the last may be shorter)."""
        if self._blocks is None:
            raise RuntimeError("the rows of a sheet can be read once")
        blocks, self._blocks = self._blocks, None
        width = len(self.headers)
        numbers: list[int] = []
        columns: list[list[str]] = [[] for _ in range(width)]
        overlong = 0
        for block in blocks:
            for number in fit_width(block, width):
                overlong += 1
                if overlong <= _OVERLONG_SHOWN:
                    self.warnings.append(
                        Notice(
                            WarningCode.ROW_TOO_LONG,
                            f"Row {number} has more cells than the header row; the cells past "
                            f"column {width} were ignored.",
                        )
                    )
            numbers.extend(block.numbers)
            for column, cells in zip(columns, block.columns, strict=True):
                column.extend(cells)
            while len(numbers) >= chunk_rows:
                yield self._chunk(numbers[:chunk_rows], [c[:chunk_rows] for c in columns])
                numbers, columns = numbers[chunk_rows:], [c[chunk_rows:] for c in columns]
        if numbers:
            yield self._chunk(numbers, columns)
        if overlong > _OVERLONG_SHOWN:
            self.warnings.append(
                Notice(
                    WarningCode.ROW_TOO_LONG,
                    f"{overlong} rows in all had more cells than the header row; the extras were ignored.",
                )
            )

    def pick_rows(self, wanted: set[int]) -> dict[int, tuple[str, ...]]:
        """Read the file again for a few rows by number, cleaned and padded like iter_chunks.

        For rows taken back after their chunk was gone. A CSV whose rows are one line each is
        read by line, parsing only the rows wanted; otherwise the file is parsed again up to the
        last one wanted. Either way only the rows wanted are cleaned.
        """
        if self._reopen is None or not wanted:
            return {}
        if _identity(self.path) != self._stat:
            raise UnreadableFileError(
                f"{self.path.name} changed while it was being imported; nothing was written. "
                "Import it again once it is saved."
            )
        targets = sorted(wanted)
        picks = self._pick(targets) if self._pick is not None else None
        if picks is not None:
            return self._picked(*picks)
        found: dict[int, tuple[str, ...]] = {}
        for start, block in self._reopen():
            low = bisect.bisect_left(targets, start)
            high = bisect.bisect_left(targets, start + len(block))
            if low < high:
                numbers = targets[low:high]
                found.update(self._picked(numbers, [block[n - start] for n in numbers]))
            if high == len(targets):
                break
        return found

    def _picked(self, numbers: list[int], records: list[list[Any]]) -> dict[int, tuple[str, ...]]:
        block = Block(numbers, clean_columns(records, texts_only=self._texts_only))
        if self._ours:
            block = unguarded(block)
        fit_width(block, len(self.headers))
        return {number: row_of(block.columns, position) for position, number in enumerate(numbers)}

    def _chunk(self, numbers: list[int], columns: list[list[str]]) -> Chunk:
        data = {key: columns[pos] for key, pos in self.columns.items()}
        frame = pd.DataFrame(data, index=pd.Index(numbers, name="row"), dtype=object)
        return Chunk(frame=frame, columns=columns)


def _identity(path: Path) -> tuple[int, int, int]:
    """(size, modification time, inode): rows read back at the end must come from the same file."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


_OVERLONG_SHOWN = 5


def open_sheet(
    path: Path, spec: SheetSpec, *, sheet_name: str | None = None, settings: Settings
) -> OpenedSheet:
    """Open an uploaded file, find and map its header row; raise FileLevelError if it can't be used."""
    extension = path.suffix.lower()
    if extension not in SUPPORTED_EXTENSIONS:
        raise UnsupportedFileError(
            f"{path.name}: unsupported file type {extension or '(none)'!r}; use one of "
            f"{', '.join(sorted(SUPPORTED_EXTENSIONS))}."
        )
    try:
        identity = _identity(path)
    except OSError as exc:
        raise UnreadableFileError(f"{path}: cannot read the file ({exc.strerror}).") from exc
    size = identity[0]
    if size > settings.max_file_bytes:
        raise LimitExceededError(
            f"{path.name} is {size:,} bytes; the limit is {settings.max_file_bytes:,}.",
            limit=Limit.FILE_BYTES,
            allowed=settings.max_file_bytes,
        )
    source: Source
    if size == 0:
        source = Source()  # no records
    elif extension in TEXT_EXTENSIONS:
        source = CsvSource.open(path, settings=settings)
    else:
        check_workbook_file(path, settings=settings)
        source = WorkbookSource(path, sheet_name=sheet_name)
    cleaned: Iterator[Block] = clean_blocks(
        source.blocks(), settings=settings, file_name=path.name, texts_only=source.texts_only
    )
    for block in cleaned:
        # Only a file the importer wrote carries its formula guards; in any other file a leading
        # apostrophe is the user's own (`'-ann@example.com` is a valid address).
        ours = written_by_us(block.cells(0))
        if ours:
            block, cleaned = unguarded(block), map(unguarded, cleaned)
        opened = _map_header(
            path,
            spec,
            header=block.cells(0),
            header_row=block.numbers[0],
            encoding=source.encoding,
            delimiter=source.delimiter,
            warnings=source.warnings,
            settings=settings,
            stamped=_stamped_type(path),
        )
        # A header and nothing below it (or only blank rows) is a file not filled in yet, such as
        # the sample sheet itself: say so rather than report a successful import of nothing.
        rows = block.tail(1) if len(block) > 1 else next(cleaned, None)
        if rows is None:
            raise FileLevelError(
                f"{path.name} has no rows below the header (row {opened.header_row}): nothing to "
                "import. Fill in one member per row below the header and upload it again."
            )
        opened._blocks = itertools.chain([rows], cleaned)
        opened._reopen = source.blocks
        opened._pick = source.pick
        opened._texts_only = source.texts_only
        opened._ours = ours
        opened._stat = identity
        opened.row_estimate = source.row_estimate
        return opened
    raise FileLevelError(
        f"{path.name} is empty: there is no header row. Start from the {spec.title} sample sheet; "
        f"expected headers: {spec.expected_headers}.",
        remedy=Remedy.START_FROM_TEMPLATE,
        remedy_arg=spec.user_type,
    )


def _map_header(
    path: Path,
    spec: SheetSpec,
    *,
    header: list[str],
    header_row: int,
    encoding: str | None,
    delimiter: str | None,
    warnings: list[Notice],
    settings: Settings,
    stamped: UserType | None,
) -> OpenedSheet:
    if len(header) > settings.max_columns:
        raise LimitExceededError(
            f"{path.name} has {len(header)} columns; the limit is {settings.max_columns}.",
            limit=Limit.COLUMNS,
            allowed=settings.max_columns,
        )
    lookup = header_lookup(spec)
    columns: dict[str, int] = {}
    ignored: list[str] = []
    for position, text in enumerate(header):
        normalized = normalize_header(text)
        if not normalized or normalized == normalize_header(ERRORS_HEADER):
            continue
        key = lookup.get(normalized)
        if key is None:
            ignored.append(text)
        elif key in columns:
            raise FileLevelError(
                f"{path.name}: the columns {header[columns[key]]!r} (column {columns[key] + 1}) and "
                f"{text!r} (column {position + 1}) both mean {spec.column(key).header}. "
                "Keep one of them."
            )
        else:
            columns[key] = position
    missing = [c.header for c in spec.columns if c.required and c.key not in columns]
    other = _resemblance(spec, ignored, stamped=stamped)
    if missing:
        raise MissingColumnsError(
            f"{path.name}: missing required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} in the header row (row {header_row}).{other.hint() if other else ''} "
            f"Expected headers for a {spec.title} sheet: {spec.expected_headers}.",
            expected=spec.user_type,
            looks_like=other.sheet.user_type if other else None,
        )
    if other is not None and other.decisive:
        raise WrongSheetTypeError(
            other.refusal(path.name, spec), expected=spec.user_type, looks_like=other.sheet.user_type
        )
    if ignored:
        warnings.append(
            Notice(
                WarningCode.COLUMN_IGNORED,
                f"Ignored column{'s' if len(ignored) > 1 else ''} not in the {spec.title} sheet: "
                f"{', '.join(repr(t) for t in ignored)}.",
            )
        )
    return OpenedSheet(
        path=path,
        headers=tuple(header),
        columns=columns,
        encoding=encoding,
        delimiter=delimiter,
        header_row=header_row,
        warnings=warnings,
    )


@dataclass(frozen=True, slots=True)
class _Resemblance:
    """What makes a header look like another user type's sheet."""

    sheet: SheetSpec
    columns: list[str]  # the user's headers of columns only that sheet declares
    decisive: bool  # one of them is required there (Email): its rows are surely that type's
    stamped: bool  # the upload carries that sheet's sample-sheet stamp

    def _evidence(self) -> str:
        stamp = f"the stamp of the {self.sheet.title} sample sheet"
        if not self.columns:
            return stamp
        columns = ", ".join(repr(c) for c in self.columns)
        return (
            f"the column{'s' if len(self.columns) > 1 else ''} {columns}, which only a "
            f"{self.sheet.title} sheet has{f', and {stamp}' if self.stamped else ''}"
        )

    def _type(self) -> str:
        return f"a {self.sheet.title} sheet (type {self.sheet.user_type.value})"

    def hint(self) -> str:
        """A sentence for a missing-columns error: the type the sheet looks like."""
        evidence = self._evidence()
        return f" It looks like a {self.sheet.title} sheet: it has {evidence}. Import it as {self._type()}."

    def refusal(self, file_name: str, spec: SheetSpec) -> str:
        """The message refusing the sheet as the type it was imported as."""
        return (
            f"{file_name} looks like a {self.sheet.title} sheet, not a {spec.title} sheet: it has "
            f"{self._evidence()}. Import it as {self._type()}, or remove "
            f"{'those columns' if len(self.columns) > 1 else 'that column'}."
        )


def _resemblance(spec: SheetSpec, ignored: list[str], *, stamped: UserType | None) -> _Resemblance | None:
    """The other sheet the header's unknown columns (or the stamp) belong to, if any."""
    for other in all_sheets():
        if other.user_type is spec.user_type:
            continue
        lookup = header_lookup(other)
        keys = [lookup.get(normalize_header(text)) for text in ignored]
        columns = [text for text, key in zip(ignored, keys, strict=True) if key is not None]
        decisive = any(key is not None and other.column(key).required for key in keys)
        if columns or stamped is other.user_type:
            return _Resemblance(other, columns, decisive, stamped is other.user_type)
    return None


def _stamped_type(path: Path) -> UserType | None:
    """The user type named by an upload's sample-sheet stamp, if it has one."""
    stamp = read_template_stamp(path)
    match = STAMP_PATTERN.fullmatch(stamp) if stamp else None
    try:
        return UserType(match.group("type")) if match else None
    except ValueError:
        return None
