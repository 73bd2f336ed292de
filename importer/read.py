"""File -> header-mapped text rows, in chunks: CSV/TSV/TXT and XLSX/XLSM/XLS/ODS."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import itertools
import re
import struct
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import IO, Any

import pandas as pd
import python_calamine

from importer.errors import (
    FileLevelError,
    LimitExceededError,
    MissingColumnsError,
    UnreadableFileError,
    UnsupportedFileError,
)
from importer.settings import Settings
from importer.sheets import ERRORS_HEADER, SheetSpec, header_lookup, normalize_header

TEXT_EXTENSIONS = frozenset({".csv", ".tsv", ".txt"})
WORKBOOK_EXTENSIONS = frozenset({".xlsx", ".xlsm", ".xls", ".ods"})
SUPPORTED_EXTENSIONS = TEXT_EXTENSIONS | WORKBOOK_EXTENSIONS
DELIMITERS = (",", ";", "\t", "|")
# A leading apostrophe before one of these is the mark our own CSVs put on a cell that a
# spreadsheet would run as a formula (and Excel's own "treat as text" prefix): drop it on the way in.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")
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
    _rows: Iterator[tuple[int, list[str]]] | None = None

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

    def _chunk(self, numbers: list[int], raw: list[tuple[str, ...]]) -> Chunk:
        by_position = list(zip(*raw, strict=True))
        data = {key: by_position[pos] for key, pos in self.columns.items()}
        frame = pd.DataFrame(data, index=pd.Index(numbers, name="row"), dtype=object)
        return Chunk(frame=frame, raw=raw)


def clean_cell(value: str) -> str:
    """Trim whitespace (no-break spaces too), normalize to NFC, drop our formula-guard apostrophe."""
    text = unicodedata.normalize("NFC", value.strip())
    if len(text) > 1 and text[0] == "'" and text[1] in FORMULA_TRIGGERS:
        return text[1:]
    return text


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
    if size == 0:
        rows, encoding, delimiter, warnings = iter(()), None, None, []
    elif extension in TEXT_EXTENSIONS:
        rows, encoding, delimiter, warnings = _text_rows(path, settings=settings)
    else:
        check_workbook_file(path, settings=settings)
        rows, warnings = _workbook_rows(path, sheet_name=sheet_name)
        encoding, delimiter = None, None
    cleaned = _clean_rows(rows, settings=settings, file_name=path.name)
    for number, cells in cleaned:
        return _map_header(
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
        texts = [clean_cell(v) if isinstance(v, str) else clean_cell(cell_text(v)) for v in cells]
        if not any(texts):
            continue
        for position, text in enumerate(texts):
            if len(text) > limit:
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


def _workbook_rows(
    path: Path, *, sheet_name: str | None
) -> tuple[Iterator[tuple[int, list[Any]]], list[str]]:
    try:
        workbook = python_calamine.CalamineWorkbook.from_path(str(path))
    except python_calamine.PasswordError as exc:
        raise UnreadableFileError(_password_protected(path)) from exc
    except Exception as exc:  # calamine raises several unrelated types for corrupt files
        raise UnreadableFileError(
            f"{path.name} cannot be opened as a {path.suffix.lower()} workbook ({_first_line(exc)}): "
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
        raise UnreadableFileError(f"{path.name}: cannot read sheet {chosen!r} ({_first_line(exc)}).") from exc
    return _sheet_records(sheet, path=path), warnings


def _sheet_records(sheet: Any, *, path: Path) -> Iterator[tuple[int, list[Any]]]:
    # calamine's iter_rows() starts at the sheet's row 1 (blank rows above the data included),
    # so the offset is the row number the user sees.
    try:
        yield from enumerate(sheet.iter_rows(), start=1)
    except Exception as exc:
        raise UnreadableFileError(f"{path.name}: cannot read the sheet ({_first_line(exc)}).") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _password_protected(path: Path) -> str:
    return (
        f"{path.name} is password-protected (encrypted), so it cannot be read. Open it, remove the "
        "password (Excel: File > Info > Protect Workbook > Encrypt with Password, and clear it; "
        "LibreOffice: File > Save As without 'Save with password'), and upload it again."
    )


# --- workbook files, checked before calamine parses anything ------------------------------------
#
# calamine reads a whole sheet into memory, one cell slot for every cell of the sheet's used range,
# and aborts the process (it cannot raise) when that allocation fails: a 1 KB workbook with a value
# in A1 and one in XFD1048576 asks for 17 billion cells. So a workbook's zip directory, its XML and
# the extent of its sheets are checked here first, in a bounded amount of memory and time.

ZIP_EXTENSIONS = frozenset({".xlsx", ".xlsm", ".ods"})
ZIP_MAGIC = b"PK\x03\x04"
CFB_MAGIC = bytes.fromhex("d0cf11e0a1b11ae1")
# No spreadsheet has this many parts; the zip directory of one that does would itself take a lot of
# memory to read.
MAX_ZIP_PARTS = 10_000
# A part smaller than this cannot hurt whatever its compression ratio (tiny XML compresses well).
_RATIO_EXEMPT_BYTES = 1024 * 1024
_SCAN_BLOCK = 1024 * 1024
# Longer than this, a single XML tag is an attack (or damage), not a spreadsheet.
_MAX_TAG_BYTES = 1024 * 1024
_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"
_CFB_ENCRYPTED_STREAMS = frozenset({"EncryptionInfo", "EncryptedPackage"})
_CFB_MAX_DIRECTORY_SECTORS = 4096
_DOCTYPE = re.compile(rb"<!doctype", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""^(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?\sencoding\s*=\s*["']([^"']*)["']""")
_UTF16_XML = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, b"<\x00", b"\x00<")
# xlsx: calamine places a cell by its r="B7" attribute, else one right of the cell before it (in the
# row after the one before); a self-closing <c/> holds no value and is not placed at all.
_XLSX_REF_AT = re.compile(rb'<c r="([A-Z]{1,3})([0-9]{1,10})"')
_XLSX_PREFIXED_CELL = re.compile(rb":c[\s/>]")
_XLSX_TAG = re.compile(rb"<(/?)(?:[\w.-]+:)?(row|c)(?=[\s/>])([^>]*)>")
_XLSX_R = re.compile(rb"""(?:^|\s)r\s*=\s*["']([^"']*)["']""")
_XLSX_REF = re.compile(rb"([A-Za-z]{1,3})([0-9]{1,10})")
# ods: rows and cells repeat by attribute; every sheet of content.xml is read when the file opens.
_ODS_TAG = re.compile(rb"<(/?)table:(table|table-row|table-cell|covered-table-cell)(?=[\s/>])([^>]*)>")
_ODS_REPEAT = re.compile(rb"""table:number-(rows|columns)-repeated\s*=\s*["']([0-9]{1,12})["']""")
_QUOTED_ATTRIBUTES = re.compile(rb"""(?:[^"']|"[^"]*"|'[^']*')*""")
# Every byte but '<' and '>': deleting them leaves the markup's outline, checked for a '<' in a tag.
_NOT_BRACKETS = bytes(range(256)).translate(None, b"<>")

# A sheet's used range: (rows, columns).
Extent = tuple[int, int]


def check_workbook_file(path: Path, *, settings: Settings) -> None:
    """Refuse a workbook that is not what its extension says, is encrypted, or would explode."""
    extension = path.suffix.lower()
    with path.open("rb") as f:
        head = f.read(_SNIFF_BYTES)
    if head.startswith(CFB_MAGIC):
        names = _cfb_names(path)
        if names & _CFB_ENCRYPTED_STREAMS:
            raise UnreadableFileError(_password_protected(path))
        if extension != ".xls":
            raise UnsupportedFileError(
                f"{path.name} is not a {extension} workbook but an older Office file (Excel 97-2003 "
                "or another OLE2 document), or it is password-protected. Remove any password, save "
                "it as .xlsx (or give an Excel 97-2003 workbook the .xls extension) and upload it again."
            )
        return
    if head.startswith(ZIP_MAGIC) or head.startswith(_EOCD):
        if extension not in ZIP_EXTENSIONS:
            raise UnsupportedFileError(
                f"{path.name} is an .xlsx or .ods workbook (a zip package), not an Excel 97-2003 "
                f"{extension} file: give it the right extension and upload it again."
            )
        _check_package(path, settings=settings)
        return
    if _looks_like_text(head):
        raise UnsupportedFileError(
            f"{path.name} is a text file, not a {extension} workbook: if it is a CSV file, give it "
            "the .csv extension (or save it from your spreadsheet program as a workbook) and upload "
            "it again."
        )
    raise UnsupportedFileError(
        f"{path.name} is not a {extension} workbook (it is neither a zip package nor an Excel file): "
        "it is damaged or another kind of file. Save the sheet again and upload that."
    )


def _looks_like_text(head: bytes) -> bool:
    if head.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return True
    if 0 in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head)
    except UnicodeDecodeError:
        text = head.decode("cp1252", errors="replace")
        controls = sum(1 for char in text if unicodedata.category(char) == "Cc" and char not in "\t\r\n")
        return "\ufffd" not in text and controls * 100 <= len(text)
    return True


def _cfb_names(path: Path) -> set[str]:
    """The stream names in an OLE2 compound file's directory (those it can find; maybe none)."""
    names: set[str] = set()
    with path.open("rb") as f:
        header = f.read(512)
        shift = int.from_bytes(header[30:32], "little") if len(header) == 512 else 0
        if shift not in (9, 12):
            return names
        size = 1 << shift
        fat_sector_count = min(int.from_bytes(header[44:48], "little"), 109)
        fat: list[int] = []
        for sector in struct.unpack_from("<109I", header, 76)[:fat_sector_count]:
            f.seek((sector + 1) * size)
            data = f.read(size)
            fat.extend(struct.unpack(f"<{len(data) // 4}I", data[: len(data) // 4 * 4]))
        sector = int.from_bytes(header[48:52], "little")
        for _ in range(_CFB_MAX_DIRECTORY_SECTORS):
            if sector >= len(fat):  # end of chain (0xFFFFFFFE), or a sector past what we read
                break
            f.seek((sector + 1) * size)
            data = f.read(size)
            for entry in range(0, len(data) - 127, 128):
                length = int.from_bytes(data[entry + 64 : entry + 66], "little")
                if 2 <= length <= 64:
                    names.add(data[entry : entry + length - 2].decode("utf-16-le", errors="replace"))
            sector = fat[sector]
    return names


def _zip_part_count(path: Path) -> int | None:
    """The number of parts a zip's end record declares, read without reading its directory."""
    with path.open("rb") as f:
        size = f.seek(0, 2)
        tail_size = min(size, 22 + 65_535 + 20)
        f.seek(size - tail_size)
        tail = f.read(tail_size)
        at = len(tail) - 22 if tail[-22:-18] == _EOCD else tail.rfind(_EOCD)
        if at < 0 or at + 22 > len(tail):
            return None
        count: int = struct.unpack_from("<H", tail, at + 10)[0]
        if count == 0xFFFF and at >= 20 and tail[at - 20 : at - 16] == _EOCD64_LOCATOR:
            f.seek(struct.unpack_from("<Q", tail, at - 12)[0])
            record = f.read(56)
            if record[:4] == _EOCD64 and len(record) == 56:
                count = struct.unpack_from("<Q", record, 32)[0]
        return count


def _check_package(path: Path, *, settings: Settings) -> None:
    name, extension = path.name, path.suffix.lower()
    count = _zip_part_count(path)
    if count is not None and count > MAX_ZIP_PARTS:
        raise UnreadableFileError(
            f"{name} is a zip package of {count:,} parts; no workbook has more than {MAX_ZIP_PARTS:,}: "
            "the file is damaged or crafted."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            parts = [info for info in archive.infolist() if not info.is_dir()]
            _check_sizes(name, parts, settings=settings)
            odd = sorted({info.compress_type for info in parts} - {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
            if odd:
                raise UnsupportedFileError(
                    f"{name} uses a zip compression method spreadsheet programs do not write "
                    f"({', '.join(map(str, odd))}). Save it again from your spreadsheet program."
                )
            if any(info.flag_bits & 0x1 for info in parts) or _ods_encrypted(archive):
                raise UnreadableFileError(_password_protected(path))
            for info in parts:
                for extent in _scan_part(archive, info, ods=extension == ".ods", file_name=name):
                    _check_extent(name, extent, part=_shown(info.filename), settings=settings)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        EOFError,
        zlib.error,
        ValueError,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        raise UnreadableFileError(
            f"{name} is not a valid {extension} workbook: its zip package is damaged "
            f"({_first_line(exc)}). Save it again from your spreadsheet program and upload it again."
        ) from exc


def _check_sizes(name: str, parts: list[zipfile.ZipInfo], *, settings: Settings) -> None:
    """Unpacked size and compression ratio, from the zip directory alone (nothing unpacked)."""
    total = sum(info.file_size for info in parts)
    if total > settings.max_unpacked_bytes:
        raise LimitExceededError(
            f"{name} unpacks to {total:,} bytes; the limit on a workbook's unpacked size is "
            f"{settings.max_unpacked_bytes:,} bytes (raise it with --max-unpacked-bytes)."
        )
    for info in parts:
        if info.file_size < _RATIO_EXEMPT_BYTES:
            continue
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > settings.max_compression_ratio:
            raise LimitExceededError(
                f"{name}: its part {_shown(info.filename)} unpacks from {info.compress_size:,} to "
                f"{info.file_size:,} bytes, a compression ratio of {ratio:,.0f} to 1, as a zip bomb "
                f"does; the limit is {settings.max_compression_ratio:,} to 1 (raise it with "
                "--max-compression-ratio)."
            )


def _ods_encrypted(archive: zipfile.ZipFile) -> bool:
    """An OpenDocument file saved with a password says so in its manifest."""
    try:
        info = archive.getinfo("META-INF/manifest.xml")
    except KeyError:
        return False
    with archive.open(info) as stream:
        return b"encryption-data" in stream.read(_MAX_TAG_BYTES)


def _scan_part(archive: zipfile.ZipFile, info: zipfile.ZipInfo, *, ods: bool, file_name: str) -> list[Extent]:
    """Refuse DTDs, non-UTF-8 XML and tags a scan could misread in one part; its sheets' extents."""
    part = _shown(info.filename)

    def pieces() -> Iterator[bytes]:
        with archive.open(info) as stream:
            yield from _xml_pieces(stream, file_name=file_name, part=part)

    if ods:
        if info.filename == "content.xml":
            return _ods_extents(pieces(), file_name=file_name, part=part)
        for _ in pieces():
            pass
        return []
    extent = _xlsx_extent_fast(pieces())
    if extent is None:
        extent = _xlsx_extent_exact(pieces(), file_name=file_name, part=part)
    return [extent]


def _xml_pieces(stream: IO[bytes], *, file_name: str, part: str) -> Iterator[bytes]:
    """A part in checked pieces of about a megabyte, each cut just before a '<' (no tag is split)."""
    tail = b""
    first = True
    while block := stream.read(_SCAN_BLOCK):
        data = tail + block
        cut = data.rfind(b"<")
        piece, tail = (data, b"") if cut < 0 else (data[:cut], data[cut:])
        if len(tail) > _MAX_TAG_BYTES:
            if b">" not in tail:
                raise UnreadableFileError(
                    f"{file_name}: its part {part} has an XML tag longer than {_MAX_TAG_BYTES:,} "
                    "bytes; the file is damaged or crafted."
                )
            piece, tail = data, b""  # a tag, then a long text with no markup in it
        if first and (piece or tail):
            _check_prolog(piece or tail, file_name=file_name, part=part)
            first = False
        if piece:
            _check_markup(piece, file_name=file_name, part=part)
            yield piece
    if tail:
        _check_markup(tail, file_name=file_name, part=part)
        yield tail


def _check_prolog(piece: bytes, *, file_name: str, part: str) -> None:
    if piece.startswith(_UTF16_XML):
        raise UnreadableFileError(
            f"{file_name}: its part {part} is UTF-16 XML, which spreadsheet programs do not write. "
            "Save the file again from your spreadsheet program."
        )
    declared = _XML_ENCODING.match(piece[:512])
    if declared and declared.group(1).lower().replace(b"-", b"").replace(b"_", b"") != b"utf8":
        raise UnreadableFileError(
            f"{file_name}: its part {part} is XML in {_shown(declared.group(1).decode('latin-1'))!r}, "
            "not UTF-8 as spreadsheet programs write it. Save the file again from your spreadsheet "
            "program."
        )


def _check_markup(piece: bytes, *, file_name: str, part: str) -> None:
    """No DTD (entity attacks need one), and no '<' inside a tag, which could hide a tag here."""
    if b"<!" in piece and _DOCTYPE.search(piece):
        raise UnreadableFileError(
            f"{file_name}: its part {part} declares a document type (<!DOCTYPE>), which spreadsheet "
            "programs never write and XML entity attacks need; the file was not read. Save it "
            "again from your spreadsheet program."
        )
    outline = piece.translate(None, _NOT_BRACKETS)
    if b"<<" in outline or outline.endswith(b"<"):
        raise UnreadableFileError(
            f"{file_name}: its part {part} is not well-formed XML (a '<' inside a tag). "
            "Save the file again from your spreadsheet program."
        )


def _xlsx_extent_fast(pieces: Iterator[bytes]) -> Extent | None:
    """The used range of an xlsx part whose cells all start <c r="B7"; None if some do not."""
    rows = columns = 0
    for piece in pieces:
        if _XLSX_PREFIXED_CELL.search(piece):
            return None
        # Rows come in order in files spreadsheet programs write: start from the piece's last
        # cell, and only look closer at a cell past it (or one without a plain reference).
        last = _XLSX_REF_AT.match(piece, max(piece.rfind(b'<c r="'), 0))
        if last:
            rows, columns = max(rows, int(last[2])), max(columns, column_number(last[1]))
        position = 0
        while found := _xlsx_cells_past(rows, columns).search(piece, position):
            ref = None if found.group("odd") is not None else _XLSX_REF_AT.match(piece, found.start())
            if ref is None:
                return None
            rows, columns = max(rows, int(ref[2])), max(columns, column_number(ref[1]))
            position = found.end()
    return rows, columns


@lru_cache(maxsize=256)
def _xlsx_cells_past(rows: int, columns: int) -> re.Pattern[bytes]:
    """Cells past row `rows` or column `columns`, and (group odd) cells without a plain r="B7"."""
    wider = _greater_than(_column_letters(columns), digits=False) if columns else b"[A-Z]{1,3}"
    lower = _greater_than(str(rows).encode(), digits=True) if rows else b"[0-9]+"
    return re.compile(
        rb'<c(?:(?P<odd>[>/\t\n\r]| (?!r="[A-Z]{1,3}[1-9]))| r="(?:(?:'
        + wider
        + rb")[0-9]|[A-Z]{1,3}(?:"
        + lower
        + rb')"))'
    )


def _greater_than(numeral: bytes, *, digits: bool) -> bytes:
    """A regex for the numerals greater than `numeral`: digits without leading zeros, or letters."""
    low, high = (b"0", b"9") if digits else (b"A", b"Z")
    first = b"1" if digits else b"A"
    size = len(numeral)
    longer = b"[%s-%s][%s-%s]{%d,}" % (first, high, low, high, size)
    if not digits:
        longer = b"[A-Z]{%d,3}" % (size + 1) if size < 3 else b"(?!)"
    options = [longer]
    for at in range(size):
        above = numeral[at] + 1
        if above <= high[0]:
            rest = b"[%s-%s]{%d}" % (low, high, size - at - 1) if at < size - 1 else b""
            options.append(re.escape(numeral[:at]) + b"[%c-%s]" % (above, high) + rest)
    return b"|".join(options)


def _column_letters(number: int) -> bytes:
    letters = b""
    while number:
        number, remainder = divmod(number - 1, 26)
        letters = bytes([65 + remainder]) + letters
    return letters


def column_number(letters: bytes) -> int:
    """A column's number from its letters: A is 1, Z is 26, AA is 27, XFD is 16,384."""
    number = 0
    for letter in letters.upper():
        number = number * 26 + letter - 64
    return number


def _attributes(attributes: bytes, *, file_name: str, part: str) -> bytes:
    """A tag's attributes, refused if a quoted value holds a '>' (the scan would cut the tag there)."""
    if (attributes.count(b'"') % 2 or b"'" in attributes) and not _QUOTED_ATTRIBUTES.fullmatch(attributes):
        raise UnreadableFileError(
            f"{file_name}: its part {part} has a cell or row tag with a '>' inside a quoted value, "
            "which spreadsheet programs never write. Save the file again from your spreadsheet program."
        )
    return attributes


def _xlsx_extent_exact(pieces: Iterator[bytes], *, file_name: str, part: str) -> Extent:
    """The used range of an xlsx part, each cell placed as calamine places it (slower)."""
    row = column = rows = columns = 0  # row, column: 0-based, where a cell without r goes
    for piece in pieces:
        for closing, tag, raw in _XLSX_TAG.findall(piece):
            attributes = _attributes(raw, file_name=file_name, part=part)
            empty = attributes.endswith(b"/")
            r = None if closing or empty else _XLSX_R.search(attributes)
            if tag == b"row":
                if closing:
                    row, column = row + 1, 0
                elif r and r.group(1).isdigit() and len(r.group(1)) <= 10:
                    row = int(r.group(1)) - 1
                continue
            if closing or empty:
                continue
            here = row
            if r:
                ref = _XLSX_REF.fullmatch(r.group(1))
                if ref is None:
                    shown = _shown(r.group(1).decode("latin-1"))
                    raise UnreadableFileError(
                        f"{file_name}: its part {part} has a cell at {shown!r}, which is not a cell "
                        "reference. Save the file again from your spreadsheet program."
                    )
                here, column = int(ref[2]) - 1, column_number(ref[1]) - 1
            rows, columns = max(rows, here + 1), max(columns, column + 1)
            column += 1
    return rows, columns


def _ods_extents(pieces: Iterator[bytes], *, file_name: str, part: str) -> list[Extent]:
    """The used range of every sheet of an OpenDocument content.xml, repeats expanded."""
    extents: list[Extent] = []
    row = rows = columns = column = 0
    row_repeat, row_used = 1, False
    for piece in pieces:
        for closing, tag, raw in _ODS_TAG.findall(piece):
            attributes = _attributes(raw, file_name=file_name, part=part)
            empty = attributes.endswith(b"/")
            if tag == b"table":
                if not closing and not empty:
                    extents.append((rows, columns))
                    row = rows = columns = 0
            elif tag == b"table-row":
                if closing:
                    row += row_repeat
                    rows = row if row_used else rows
                elif empty:
                    row += _ods_repeat(attributes, b"rows")
                else:
                    row_repeat, column, row_used = _ods_repeat(attributes, b"rows"), 0, False
            elif not closing:
                column += _ods_repeat(attributes, b"columns")
                if not empty or b"value-type" in attributes:
                    row_used, columns = True, max(columns, column)
    extents.append((rows, columns))
    return extents


def _ods_repeat(attributes: bytes, kind: bytes) -> int:
    if b"repeated" not in attributes:
        return 1
    for found, count in _ODS_REPEAT.findall(attributes):
        if found == kind:
            return max(int(count), 1)
    return 1


def _check_extent(name: str, extent: Extent, *, part: str, settings: Settings) -> None:
    rows, columns = extent
    if columns > settings.max_columns:
        raise LimitExceededError(
            f"{name} has cells as far right as column {columns:,} (in {part}); the limit is "
            f"{settings.max_columns} columns (raise it with --max-columns)."
        )
    if rows * columns > settings.max_cells:
        raise LimitExceededError(
            f"{name} has a sheet spanning {rows:,} rows by {columns:,} columns ({rows * columns:,} "
            f"cells, in {part}), too many to read into memory; the limit is {settings.max_cells:,} "
            "cells (raise it with --max-cells)."
        )


def _shown(text: str) -> str:
    """A name from inside a file, safe to put in a one-line message."""
    shown = text if text.isprintable() else text.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= 80 else shown[:77] + "..."
