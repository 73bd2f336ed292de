"""Text files (CSV, TSV, TXT) -> raw records in blocks: encoding, delimiter, line checks.

The records are as the file gives them, strings; clean.py cleans them.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

from importer.errors import FileLevelError, LimitExceededError, UnreadableFileError
from importer.reading.sources import base
from importer.reading.sources.base import RawBlock, RawPicks, Source
from importer.settings import Settings
from importer.values import Limit, Notice, WarningCode

DELIMITERS = (",", ";", "\t", "|")
_SNIFF_BYTES = 64 * 1024
_DECODE_BLOCK = 1024 * 1024
# More NUL bytes than this share of a text file's start: UTF-16 without a byte-order mark, or binary.
# A few NULs are a bad cell (a control character in a name), answered row by row.
_NUL_SHARE = 8
# A progress bar only for files of more lines than this.
_ESTIMATE_FROM_LINES = 20_000
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


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


def sniff_delimiter(path: Path, *, encoding: str, settings: Settings) -> str:
    """The delimiter of a text file, judged on its first non-blank line."""
    with path.open(encoding=encoding, newline="") as f:
        lines = _capped_lines(f, settings=settings, file_name=path.name)
        numbered = enumerate(itertools.islice(lines, 2 * settings.max_rows + 1), start=1)
        number, first_line = next(((n, line) for n, line in numbered if line.strip()), (0, ""))
    try:
        return detect_delimiter(first_line, extension=path.suffix.lower())
    except csv.Error as exc:
        raise _csv_error(exc, file_name=path.name, line=number, settings=settings, spans_lines=False) from exc


def _line_cap(settings: Settings) -> int:
    """The longest line a row of the largest allowed cells can take."""
    return settings.max_columns * (settings.max_cell_chars + 3) + 2


@dataclass(frozen=True, slots=True)
class LineScan:
    """What one pass over a text file's bytes tells before it is parsed."""

    lines: int  # lines ended by LF, and a last one without
    within_cap: bool  # every line is surely within the line cap

    @property
    def estimate(self) -> int | None:
        """About how many rows, for a progress bar (None for small files)."""
        return self.lines if self.lines > _ESTIMATE_FROM_LINES else None


def scan_lines(path: Path, *, encoding: str, settings: Settings) -> LineScan | None:
    """Line count and line cap in one pass over the bytes, in C-level splits.

    Only for encodings where a line break is the byte 0x0A (None otherwise); a longer line (or lone
    CR line endings) sends the reader down the line-by-line checks.
    """
    if encoding not in ("utf-8", "utf-8-sig", "cp1252"):
        return None
    cap = _line_cap(settings)
    count, longest, carry = 0, 0, 0
    with path.open("rb") as f:
        while block := f.read(_DECODE_BLOCK):
            parts = block.split(b"\n")
            count += len(parts) - 1
            if len(parts) == 1:
                carry += len(block)
            else:
                longest = max(longest, carry + len(parts[0]), max(map(len, parts[1:-1]), default=0))
                carry = len(parts[-1])
    longest = max(longest, carry)
    return LineScan(lines=count + (1 if carry else 0), within_cap=longest + 1 <= cap)


def _capped_lines(f: IO[str], *, settings: Settings, file_name: str) -> Iterator[str]:
    """The file's lines; one longer than a row of the largest allowed cells is refused unread."""
    cap = _line_cap(settings)
    for number, line in enumerate(iter(partial(f.readline, cap + 1), ""), start=1):
        if len(line) > cap:
            raise LimitExceededError(
                f"{file_name}: line {number:,} is longer than {cap:,} characters, more than "
                f"{settings.max_columns} cells of {settings.max_cell_chars:,} characters can hold.",
                limit=Limit.CELL_CHARS,
                allowed=settings.max_cell_chars,
            )
        yield line


class CsvSource(Source):
    """A CSV/TSV/TXT file's records, in blocks; and, after one full read, single rows by number."""

    encoding: str
    delimiter: str

    def __init__(
        self, path: Path, *, encoding: str, delimiter: str, settings: Settings, scan: LineScan | None
    ) -> None:
        super().__init__()
        self.path = path
        self.encoding = encoding
        self.delimiter = delimiter
        self.settings = settings
        self.scan = scan
        self.row_estimate = scan.estimate if scan else None
        # Set by a full read: every record is exactly one LF-ended line, so row N is line N.
        self.one_line_records = False

    @classmethod
    def open(cls, path: Path, *, settings: Settings) -> CsvSource:
        """A text file's source: its encoding detected (a guess is warned about), its delimiter sniffed."""
        encoding, warning = detect_encoding(path)
        scan = scan_lines(path, encoding=encoding, settings=settings)
        delimiter = sniff_delimiter(path, encoding=encoding, settings=settings)
        source = cls(path, encoding=encoding, delimiter=delimiter, settings=settings, scan=scan)
        if warning:
            source.warnings.append(Notice(WarningCode.ENCODING_GUESSED, warning))
        return source

    def blocks(self) -> Iterator[RawBlock]:
        """Runs of records; each record is one spreadsheet row, quoted line breaks included."""
        return csv_blocks(
            self.path,
            encoding=self.encoding,
            delimiter=self.delimiter,
            settings=self.settings,
            within_cap=self.scan is not None and self.scan.within_cap,
            on_end=self._read_to_end,
        )

    def _read_to_end(self, records: int, lines: int) -> None:
        self.one_line_records = self.scan is not None and records == lines == self.scan.lines

    def pick(self, numbers: list[int]) -> RawPicks | None:
        """The records of these rows (ascending), found by line without parsing the others.

        None unless a full read showed that rows and lines match one to one (no line break inside
        a cell, no lone CR); the caller then reads the whole file again.
        """
        if not self.one_line_records:
            return None
        found: list[int] = []
        records: list[list[str]] = []
        with self.path.open("rb") as f:
            at = 1  # the number of the line f reads next
            for number in numbers:
                deque(itertools.islice(f, number - at), maxlen=0)  # skipped in C
                line = f.readline()
                if not line:  # past the end
                    break
                # Only the first line may start with the byte-order mark.
                text = line.decode(self.encoding if number == 1 else self.encoding.removesuffix("-sig"))
                # A line is a whole record: parsed alone, it gives what the full read gave.
                records.append(next(csv.reader([text], delimiter=self.delimiter, strict=False), []))
                found.append(number)
                at = number + 1
        return found, records


def csv_blocks(
    path: Path,
    *,
    encoding: str,
    delimiter: str,
    settings: Settings,
    within_cap: bool,
    on_end: Callable[[int, int], None] | None = None,
) -> Iterator[RawBlock]:
    """Runs of CSV records; each record is one spreadsheet row, quoted line breaks included.

    At the end of the file, `on_end(records, lines)` is told how many of each were read.
    """
    with path.open(encoding=encoding, newline="") as f:
        lines: Iterable[str] = f if within_cap else _capped_lines(f, settings=settings, file_name=path.name)
        reader = csv.reader(lines, delimiter=delimiter, strict=False)
        number = 0
        last: list[str] = []
        try:
            while records := list(itertools.islice(reader, base.BLOCK_ROWS)):
                yield number + 1, records
                number += len(records)
                last = records[-1]
        except csv.Error as exc:
            raise _csv_error(
                exc, file_name=path.name, line=reader.line_num, settings=settings, spans_lines=True
            ) from exc
        # The lenient reader ends a quote left open at the end of the file silently, having
        # swallowed every row after it into one cell (or, on the last line, the rest of that row):
        # refuse that rather than read a row the user never wrote.
        line_count = reader.line_num
        opens: int | None = None
        if any(map(_LINE_BREAK.search, last)):  # the last record spans lines: read where it starts
            f.seek(0)
            last_start = _last_record_line(f, delimiter=delimiter, settings=settings, file_name=path.name)
            f.seek(0)
            lines = _capped_lines(f, settings=settings, file_name=path.name)
            if ends_inside_quote("".join(itertools.islice(lines, last_start - 1, None)), delimiter=delimiter):
                opens = last_start
        elif last:  # one line; a quote left open there has taken the final line break in, if any
            tail = unended_last_line(path, encoding=encoding)
            if tail is not None and ends_inside_quote(tail, delimiter=delimiter):
                opens = line_count
        if opens is not None:
            raise UnreadableFileError(
                f"{path.name}: the quote that opens in row {number} (line {opens:,}) is never closed, "
                "so the rest of the file would be read as one cell. Close that quote, or remove it, "
                "and upload the file again."
            )
    if on_end is not None:
        on_end(number, line_count)


def _csv_error(
    exc: csv.Error, *, file_name: str, line: int, settings: Settings, spans_lines: bool
) -> FileLevelError:
    """The csv module's complaint, as the user's problem: a cell too long, or unparsable text.

    The module's own cap on a field (csv.field_size_limit, 131,072 by default) is process-wide
    state, raised by the entry points for a cell limit above it, never here.
    """
    if "field limit" not in str(exc):
        return UnreadableFileError(
            f"{file_name}: cannot parse the file near line {line} ({exc}). Check for an unterminated quote."
        )
    most = csv.field_size_limit()
    hint = " A cell that long is often a quote that is never closed." if spans_lines else ""
    if settings.max_cell_chars < most:
        return LimitExceededError(
            f"{file_name}: a cell near line {line:,} is longer than {most:,} characters; the limit is "
            f"{settings.max_cell_chars:,} (Excel's own).{hint}",
            limit=Limit.CELL_CHARS,
            allowed=settings.max_cell_chars,
        )
    return LimitExceededError(
        f"{file_name}: a cell near line {line:,} is longer than {most:,} characters, the most the CSV "
        f"reader of this process takes (csv.field_size_limit), below the cell limit of "
        f"{settings.max_cell_chars:,}.{hint}"
    )


_TAIL_BYTES = 64 * 1024


def unended_last_line(path: Path, *, encoding: str) -> str | None:
    """The text file's last line when the file does not end with a line break, else None.

    Read from the end, a block at a time, until a line break (a file's last line is short).
    """
    with path.open("rb") as f:
        start = 0
        codec = encoding.removesuffix("-sig")
        if encoding == "utf-16":
            start = 2  # past the byte-order mark, which says the byte order
            codec = "utf-16-le" if f.read(2) == codecs.BOM_UTF16_LE else "utf-16-be"
        elif encoding == "utf-8-sig":
            start = len(codecs.BOM_UTF8)
        end = f.seek(0, 2)
        size = _TAIL_BYTES
        while True:
            offset = max(start, end - size)
            offset += (offset - start) % 2 if encoding == "utf-16" else 0  # whole UTF-16 units
            f.seek(offset)
            text = f.read(end - offset).decode(codec, errors="replace")
            if text.endswith(("\n", "\r")):
                return None
            breaks = max(text.rfind("\n"), text.rfind("\r"))
            if breaks >= 0 or offset <= start:
                return text[breaks + 1 :]
            size *= 2


def _last_record_line(f: IO[str], *, delimiter: str, settings: Settings, file_name: str) -> int:
    """The line the last CSV record starts on (read again record by record: only for a last record
    that spans lines, which is rare)."""
    reader = csv.reader(_capped_lines(f, settings=settings, file_name=file_name), delimiter=delimiter)
    start, last_start = 1, 1
    for _ in reader:
        last_start = start
        start = reader.line_num + 1
    return last_start


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
