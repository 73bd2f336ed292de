"""File -> header-mapped text rows, in chunks: CSV/TSV/TXT and XLSX/XLSM/XLS/ODS."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import itertools
import operator
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

import pandas as pd
import python_calamine

from importer.cells import unguard
from importer.errors import (
    FileLevelError,
    LimitExceededError,
    MissingColumnsError,
    UnreadableFileError,
    UnsupportedFileError,
)
from importer.guard import check_workbook_file, first_line, password_protected
from importer.settings import Settings
from importer.sheets import ERRORS_HEADER, SheetSpec, header_lookup, normalize_header

TEXT_EXTENSIONS = frozenset({".csv", ".tsv", ".txt"})
WORKBOOK_EXTENSIONS = frozenset({".xlsx", ".xlsm", ".xls", ".ods"})
SUPPORTED_EXTENSIONS = TEXT_EXTENSIONS | WORKBOOK_EXTENSIONS
DELIMITERS = (",", ";", "\t", "|")
_SNIFF_BYTES = 64 * 1024
_DECODE_BLOCK = 1024 * 1024
# More NUL bytes than this share of a text file's start: UTF-16 without a byte-order mark, or binary.
# A few NULs are a bad cell (a control character in a name), answered row by row.
_NUL_SHARE = 8


@dataclass(slots=True)
class Chunk:
    """A run of consecutive non-blank data rows.

    `frame` holds the declared columns by key, every cell text, indexed by the row number the
    user sees; `raw` holds each row's cells for every column of the file, in the file's order.
    """

    frame: pd.DataFrame
    raw: list[tuple[str, ...]]


@dataclass(slots=True)
class OpenedSheet:
    """An uploaded sheet with its header row understood, ready to stream its rows."""

    path: Path
    headers: tuple[str, ...]
    columns: dict[str, int]
    encoding: str | None
    delimiter: str | None
    header_row: int
    warnings: list[str] = field(default_factory=list)
    row_estimate: int | None = None
    _rows: Iterator[tuple[int, list[str]]] | None = None
    _reopen: Callable[[], Iterator[tuple[int, list[Any]]]] | None = None

    def header_of(self, key: str) -> str:
        """The header text the user gave the column with this key."""
        return self.headers[self.columns[key]]

    def iter_chunks(self, *, chunk_rows: int) -> Iterator[Chunk]:
        """Yield the data rows in chunks of at most `chunk_rows` rows; blank rows are skipped."""
        if self._rows is None:
            raise RuntimeError("the rows of a sheet can be read once")
        rows, self._rows = self._rows, None
        width = len(self.headers)
        numbers: list[int] = []
        raw: list[tuple[str, ...]] = []
        overlong = 0
        for number, cells in rows:
            if len(cells) != width:
                if len(cells) > width and any(cells[width:]):
                    overlong += 1
                    if overlong <= 5:
                        self.warnings.append(
                            f"Row {number} has more cells than the header row; the cells past "
                            f"column {width} were ignored."
                        )
                cells = (cells + [""] * width)[:width]
            numbers.append(number)
            raw.append(tuple(cells))
            if len(raw) >= chunk_rows:
                yield self._chunk(numbers, raw)
                numbers, raw = [], []
        if raw:
            yield self._chunk(numbers, raw)
        if overlong > 5:
            self.warnings.append(
                f"{overlong} rows in all had more cells than the header row; the extras were ignored."
            )

    def pick_rows(self, wanted: set[int]) -> dict[int, tuple[str, ...]]:
        """Read the file again for a few rows by number, cleaned and padded like iter_chunks.

        For rows taken back after their chunk was gone; it stops at the last one wanted, and cleans
        only the rows wanted, so it costs little next to the import itself.
        """
        if self._reopen is None or not wanted:
            return {}
        width = len(self.headers)
        remaining, found = set(wanted), {}
        for number, cells in self._reopen():
            if number in remaining:
                texts = clean_cells([v if v.__class__ is str else cell_text(v) for v in cells])
                found[number] = tuple((texts + [""] * width)[:width])
                remaining.discard(number)
                if not remaining:
                    break
        return found

    def _chunk(self, numbers: list[int], raw: list[tuple[str, ...]]) -> Chunk:
        by_position = list(zip(*raw, strict=True))
        data = {key: by_position[pos] for key, pos in self.columns.items()}
        frame = pd.DataFrame(data, index=pd.Index(numbers, name="row"), dtype=object)
        return Chunk(frame=frame, raw=raw)


_quoted = operator.methodcaller("startswith", "'")


def clean_cells(cells: list[str]) -> list[str]:
    """A row's cells trimmed (no-break spaces too), NFC, formula guard dropped; C-level passes."""
    texts = list(map(str.strip, cells))
    if not all(map(str.isascii, texts)):
        texts = [unicodedata.normalize("NFC", t) for t in texts]
    if any(map(_quoted, texts)):
        texts = list(map(unguard, texts))
    return texts


def cell_text(value: Any) -> str:
    """A workbook cell as the text the user sees (numbers without a spurious `.0`)."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ") if value.time() != dt.time(0) else value.date().isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


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
        size = path.stat().st_size
    except OSError as exc:
        raise UnreadableFileError(f"{path}: cannot read the file ({exc.strerror}).") from exc
    if size > settings.max_file_bytes:
        raise LimitExceededError(
            f"{path.name} is {size:,} bytes; the limit is {settings.max_file_bytes:,} "
            "(raise it with --max-file-bytes)."
        )
    rows: Iterator[tuple[int, list[Any]]]
    warnings: list[str]
    reopen: Callable[[], Iterator[tuple[int, list[Any]]]] | None = None
    estimate: int | None = None
    if size == 0:
        rows, encoding, delimiter, warnings = iter(()), None, None, []
    elif extension in TEXT_EXTENSIONS:
        rows, encoding, delimiter, warnings = _text_rows(path, settings=settings)
        reopen = partial(_csv_records, path, encoding=encoding, delimiter=delimiter, settings=settings)
    else:
        check_workbook_file(path, settings=settings)
        rows, warnings, estimate = _workbook_rows(path, sheet_name=sheet_name)
        encoding, delimiter = None, None
        reopen = partial(_reopen_workbook, path, sheet_name=sheet_name)
    cleaned = _clean_rows(rows, settings=settings, file_name=path.name)
    for number, cells in cleaned:
        opened = _map_header(
            path,
            spec,
            header=cells,
            header_row=number,
            rows=cleaned,
            encoding=encoding,
            delimiter=delimiter,
            warnings=warnings,
            settings=settings,
        )
        opened._reopen = reopen
        opened.row_estimate = estimate if estimate is not None else _line_count(path, size)
        return opened
    raise FileLevelError(
        f"{path.name} is empty: there is no header row. Start from the sample sheet "
        f"(`importer template {spec.user_type}`); expected headers: {spec.expected_headers}."
    )


def _map_header(
    path: Path,
    spec: SheetSpec,
    *,
    header: list[str],
    header_row: int,
    rows: Iterator[tuple[int, list[str]]],
    encoding: str | None,
    delimiter: str | None,
    warnings: list[str],
    settings: Settings,
) -> OpenedSheet:
    if len(header) > settings.max_columns:
        raise LimitExceededError(
            f"{path.name} has {len(header)} columns; the limit is {settings.max_columns} "
            "(raise it with --max-columns)."
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
    if missing:
        raise MissingColumnsError(
            f"{path.name}: missing required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} in the header row (row {header_row}). "
            f"Expected headers for a {spec.title} sheet: {spec.expected_headers}."
        )
    if ignored:
        warnings.append(
            f"Ignored column{'s' if len(ignored) > 1 else ''} not in the {spec.title} sheet: "
            f"{', '.join(repr(t) for t in ignored)}."
        )
    return OpenedSheet(
        path=path,
        headers=tuple(header),
        columns=columns,
        encoding=encoding,
        delimiter=delimiter,
        header_row=header_row,
        warnings=warnings,
        _rows=rows,
    )


def _clean_rows(
    rows: Iterator[tuple[int, list[Any]]], *, settings: Settings, file_name: str
) -> Iterator[tuple[int, list[str]]]:
    """Text, trimmed, NFC; blank rows dropped; row and cell limits enforced."""
    limit = settings.max_cell_chars
    last_row = settings.max_rows + 1
    seen = 0
    for number, cells in rows:
        # Blank rows count too: a file of nothing but line breaks must not keep us busy for long.
        if number > last_row + settings.max_rows:
            raise LimitExceededError(
                f"{file_name} goes on past row {number - 1:,}, far more than {settings.max_rows:,} "
                "rows (blank rows included); split it or raise the limit with --max-rows."
            )
        texts = clean_cells([v if v.__class__ is str else cell_text(v) for v in cells])
        if not any(texts):
            continue
        if max(map(len, texts)) > limit:
            position, text = next((i, t) for i, t in enumerate(texts) if len(t) > limit)
            hint = (
                " A cell that long with line breaks in it is often a quote that is never closed."
                if "\n" in text
                else ""
            )
            raise LimitExceededError(
                f"{file_name}: the cell in row {number}, column {position + 1} has "
                f"{len(text):,} characters; the limit is {limit:,} (Excel's own; raise it "
                f"with --max-cell-chars).{hint}"
            )
        seen += 1
        if seen > last_row:
            raise LimitExceededError(
                f"{file_name} has more than {settings.max_rows:,} rows; "
                "split it or raise the limit with --max-rows."
            )
        yield number, texts


# --- text files ---------------------------------------------------------------------------------


def detect_encoding(path: Path) -> tuple[str, str | None]:
    """(codec, warning): UTF-8 with or without BOM, UTF-16 with BOM, else cp1252 (reported)."""
    with path.open("rb") as f:
        head = f.read(4)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig", None
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16", None
        f.seek(0)
        sample = f.read(_SNIFF_BYTES)
        if sample.count(0) > len(sample) // _NUL_SHARE:
            raise UnreadableFileError(
                f"{path.name} contains NUL bytes: it is not a text file, or it is UTF-16 without "
                "a byte-order mark. Save it as CSV UTF-8 and upload it again."
            )
        f.seek(0)
        decoder: codecs.IncrementalDecoder = codecs.getincrementaldecoder("utf-8")()
        try:
            while block := f.read(_DECODE_BLOCK):
                decoder.decode(block)
            decoder.decode(b"", final=True)
            return "utf-8", None
        except UnicodeDecodeError:
            pass
        f.seek(0)
        decoder = codecs.getincrementaldecoder("cp1252")()
        try:
            while block := f.read(_DECODE_BLOCK):
                decoder.decode(block)
        except UnicodeDecodeError as exc:
            raise UnreadableFileError(
                f"{path.name} is neither UTF-8 nor Windows-1252 text (byte 0x{exc.object[exc.start]:02X} "
                "cannot be decoded). Save it as CSV UTF-8 and upload it again."
            ) from exc
    return "cp1252", (
        f"{path.name} is not UTF-8; it was read as Windows-1252 (cp1252). If accented letters look "
        "wrong in the report, save the sheet as CSV UTF-8 and upload it again."
    )


def detect_delimiter(first_line: str, *, extension: str) -> str:
    """The delimiter that splits the header row into the most columns (`,` on a tie)."""
    best, best_count = ("\t" if extension == ".tsv" else ","), 1
    for delimiter in DELIMITERS:
        count = len(next(csv.reader([first_line], delimiter=delimiter), []))
        if count > best_count:
            best, best_count = delimiter, count
    return best


def _text_rows(
    path: Path, *, settings: Settings
) -> tuple[Iterator[tuple[int, list[Any]]], str, str, list[str]]:
    encoding, warning = detect_encoding(path)
    warnings = [warning] if warning else []
    with path.open(encoding=encoding, newline="") as f:
        first_line = ""
        lines = _capped_lines(f, settings=settings, file_name=path.name)
        for line in itertools.islice(lines, 2 * settings.max_rows + 1):
            if line.strip():
                first_line = line
                break
    delimiter = detect_delimiter(first_line, extension=path.suffix.lower())
    records = _csv_records(path, encoding=encoding, delimiter=delimiter, settings=settings)
    return records, encoding, delimiter, warnings


def _capped_lines(f: IO[str], *, settings: Settings, file_name: str) -> Iterator[str]:
    """The file's lines; one longer than a row of the largest allowed cells is refused unread."""
    cap = settings.max_columns * (settings.max_cell_chars + 3) + 2
    for number, line in enumerate(iter(partial(f.readline, cap + 1), ""), start=1):
        if len(line) > cap:
            raise LimitExceededError(
                f"{file_name}: line {number:,} is longer than {cap:,} characters, more than "
                f"{settings.max_columns} cells of {settings.max_cell_chars:,} characters can hold "
                "(raise the limits with --max-columns or --max-cell-chars)."
            )
        yield line


def _csv_records(
    path: Path, *, encoding: str, delimiter: str, settings: Settings
) -> Iterator[tuple[int, list[Any]]]:
    """Each CSV record is one spreadsheet row, quoted line breaks included."""
    # The csv module's own cap on a field (131,072 by default) must not undercut --max-cell-chars.
    if csv.field_size_limit() <= settings.max_cell_chars:
        csv.field_size_limit(settings.max_cell_chars + 1)
    with path.open(encoding=encoding, newline="") as f:
        lines = _capped_lines(f, settings=settings, file_name=path.name)
        reader = csv.reader(lines, delimiter=delimiter, strict=False)
        number, start, last_start = 0, 1, 1
        try:
            for record in reader:
                number += 1
                last_start = start
                yield number, record
                start = reader.line_num + 1
        except csv.Error as exc:
            if "field limit" in str(exc):
                raise LimitExceededError(
                    f"{path.name}: a cell near line {reader.line_num:,} is longer than "
                    f"{csv.field_size_limit():,} characters; the limit is "
                    f"{settings.max_cell_chars:,} (Excel's own; raise it with --max-cell-chars). "
                    "A cell that long is often a quote that is never closed."
                ) from exc
            raise UnreadableFileError(
                f"{path.name}: cannot parse the file near line {reader.line_num} ({exc}). "
                "Check for an unterminated quote."
            ) from exc
        # The lenient reader ends a quote left open at the end of the file silently, having
        # swallowed every row after it into one cell: refuse that rather than lose the rows.
        if number and reader.line_num > last_start:
            f.seek(0)
            lines = _capped_lines(f, settings=settings, file_name=path.name)
            if ends_inside_quote("".join(itertools.islice(lines, last_start - 1, None)), delimiter=delimiter):
                raise UnreadableFileError(
                    f"{path.name}: the quote that opens in row {number} (line {last_start:,}) is never "
                    "closed, so every line after it would be read as one cell. Close that quote, or "
                    "remove it, and upload the file again."
                )


def ends_inside_quote(text: str, *, delimiter: str) -> bool:
    """Whether CSV text ends inside a quoted field, as Python's lenient csv reader would read it."""
    position, end = 0, len(text)
    quoted, field_start = False, True
    while position < end:
        if quoted:
            close = text.find('"', position)
            if close < 0:
                return True
            if text.startswith('"', close + 1):
                position = close + 2
                continue
            quoted, field_start, position = False, False, close + 1
            continue
        char = text[position]
        if field_start and char == '"':
            quoted = True
        else:
            field_start = char == delimiter or char in "\r\n"
        position += 1
    return quoted


# --- workbooks ----------------------------------------------------------------------------------


def _line_count(path: Path, size: int) -> int | None:
    """About how many rows a text file has (for a progress bar); None for small files."""
    if size < 1024 * 1024:
        return None
    count = 0
    with path.open("rb") as f:
        while block := f.read(1024 * 1024):
            count += block.count(b"\n")
    return count


def _reopen_workbook(path: Path, *, sheet_name: str | None) -> Iterator[tuple[int, list[Any]]]:
    return _workbook_rows(path, sheet_name=sheet_name)[0]


def _workbook_rows(
    path: Path, *, sheet_name: str | None
) -> tuple[Iterator[tuple[int, list[Any]]], list[str], int | None]:
    try:
        workbook = python_calamine.CalamineWorkbook.from_path(str(path))
    except python_calamine.PasswordError as exc:
        raise UnreadableFileError(password_protected(path)) from exc
    except Exception as exc:  # calamine raises several unrelated types for corrupt files
        raise UnreadableFileError(
            f"{path.name} cannot be opened as a {path.suffix.lower()} workbook ({first_line(exc)}): "
            "it is damaged or not a spreadsheet. Save it again from your spreadsheet program and "
            "upload it again."
        ) from exc
    names: list[str] = list(workbook.sheet_names)
    if not names:
        raise UnreadableFileError(f"{path.name} has no sheets.")
    warnings: list[str] = []
    if sheet_name is None:
        chosen = names[0]
        if len(names) > 1:
            warnings.append(
                f"{path.name} has {len(names)} sheets; read the first, {chosen!r} "
                "(choose another with --sheet)."
            )
    elif sheet_name in names:
        chosen = sheet_name
    else:
        raise FileLevelError(
            f"{path.name} has no sheet named {sheet_name!r}; its sheets are "
            f"{', '.join(repr(n) for n in names)}."
        )
    try:
        sheet = workbook.get_sheet_by_name(chosen)
    except Exception as exc:
        raise UnreadableFileError(f"{path.name}: cannot read sheet {chosen!r} ({first_line(exc)}).") from exc
    return _sheet_records(sheet, path=path), warnings, int(getattr(sheet, "height", 0) or 0) or None


def _sheet_records(sheet: Any, *, path: Path) -> Iterator[tuple[int, list[Any]]]:
    # calamine's iter_rows() starts at the sheet's row 1 (blank rows above the data included),
    # so the offset is the row number the user sees.
    try:
        yield from enumerate(sheet.iter_rows(), start=1)
    except Exception as exc:
        raise UnreadableFileError(f"{path.name}: cannot read the sheet ({first_line(exc)}).") from exc
