"""How far a workbook's sheets reach, measured from their XML before calamine reads a cell.

calamine sets aside one cell slot for every cell of a sheet's used range: the guard (guard.py)
refuses a sheet whose range, as measured here, passes the limits. Each sheet's extent is found as
calamine would place its cells: by their r="B7" reference, else one right of the cell before.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

from importer.errors import LimitExceededError, UnreadableFileError
from importer.reading.problems import printable
from importer.settings import Settings
from importer.values import Limit

# A sheet's used range: (rows, columns).
Extent = tuple[int, int]

# xlsx: calamine places a cell by its r="B7" attribute, else one right of the cell before it (in the
# row after the one before); a self-closing <c/> holds no value and is not placed at all.
_XLSX_REF_AT = re.compile(rb'<c r="([A-Z]{1,3})([0-9]{1,10})"')
_XLSX_PREFIXED_CELL = re.compile(rb":c[\s/>]")
_XLSX_TAG = re.compile(rb"<(/?)(?:[\w.-]+:)?(row|c|v|is)(?=[\s/>])([^>]*)>")
# What first follows a cell's start tag: its value (<v>, an inline string <is>) or its end.
_XLSX_CELL_END = re.compile(rb"<(?:v|is)[\s>]|</c>")
_LAST_CELL_TRIES = 8
_XLSX_R = re.compile(rb"""(?:^|\s)r\s*=\s*["']([^"']*)["']""")
_XLSX_REF = re.compile(rb"([A-Za-z]{1,3})([0-9]{1,10})")
# ods: rows and cells repeat by attribute; every sheet of content.xml is read when the file opens.
_ODS_TAG = re.compile(rb"<(/?)table:(table|table-row|table-cell|covered-table-cell)(?=[\s/>])([^>]*)>")
_ODS_REPEAT = re.compile(rb"""table:number-(rows|columns)-repeated\s*=\s*["']([0-9]{1,12})["']""")
_QUOTED_ATTRIBUTES = re.compile(rb"""(?:[^"']|"[^"]*"|'[^']*')*""")


def xlsx_extent_fast(pieces: Iterator[bytes]) -> Extent | None:
    """The range of an xlsx part's cells with a value, if they all start <c r="B7"; else None."""
    rows = columns = 0
    pending: Extent | None = None  # a cell past the range whose value, if any, is in the next piece
    for piece in pieces:
        if _XLSX_PREFIXED_CELL.search(piece):
            return None
        position = 0
        if pending is not None:
            end = _XLSX_CELL_END.search(piece)
            if end is None:  # a cell longer than a piece (a long inline string)
                continue
            if end.group() != b"</c>":
                rows, columns = max(rows, pending[0]), max(columns, pending[1])
            pending, position = None, end.end()
        # Rows come in order in files spreadsheet programs write: start from the piece's last
        # cell with a value, and only look closer at a cell past it (or one without a plain reference).
        last = _last_valued_cell(piece)
        if last:
            rows, columns = max(rows, last[0]), max(columns, last[1])
        while found := _xlsx_cells_past(rows, columns).search(piece, position):
            ref = None if found.group("odd") is not None else _XLSX_REF_AT.match(piece, found.start())
            if ref is None:
                return None
            here = int(ref[2]), column_number(ref[1])
            valued, position = _cell_value(piece, found.start())
            if valued is None:
                pending = here
            elif valued:
                rows, columns = max(rows, here[0]), max(columns, here[1])
    return rows, columns


def _cell_value(piece: bytes, start: int) -> tuple[bool | None, int]:
    """Whether the cell starting here holds a value (None: the piece ends first), and its end.

    calamine places a cell only for a <v> with content or an <is> (inline string) inside it: a
    self-closing <c/>, an empty <v/> or a lone formula is a formatted empty cell, not placed.
    """
    tag_end = piece.find(b">", start) + 1
    if tag_end == 0 or piece[tag_end - 2 : tag_end - 1] == b"/":
        return False, max(tag_end, start + 1)
    end = _XLSX_CELL_END.search(piece, tag_end)
    if end is None:
        return None, len(piece)
    return end.group() != b"</c>", end.end()


def _last_valued_cell(piece: bytes) -> Extent | None:
    """(row, column) of one of the last few cells of a piece that holds a value, if any."""
    at = len(piece)
    for _ in range(_LAST_CELL_TRIES):
        at = piece.rfind(b'<c r="', 0, at)
        ref = _XLSX_REF_AT.match(piece, at) if at >= 0 else None
        if ref is None:
            return None
        if _cell_value(piece, at)[0]:
            return int(ref[2]), column_number(ref[1])
    return None


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


def xlsx_extent_exact(pieces: Iterator[bytes], *, file_name: str, part: str) -> Extent:
    """The range of an xlsx part's cells with a value, each placed as calamine places it (slower)."""
    row = column = rows = columns = 0  # row, column: 0-based, where a cell without r goes
    pending: Extent | None = None  # the open cell, until its value shows (or it closes without one)
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
            if tag != b"c":  # <v> or <is>: the open cell has a value
                if pending is not None and not closing and not empty:
                    rows, columns = max(rows, pending[0]), max(columns, pending[1])
                    pending = None
                continue
            if closing or empty:
                pending = None
                continue
            here = row
            if r:
                ref = _XLSX_REF.fullmatch(r.group(1))
                if ref is None:
                    shown = printable(r.group(1).decode("latin-1"))
                    raise UnreadableFileError(
                        f"{file_name}: its part {part} has a cell at {shown!r}, which is not a cell "
                        "reference. Save the file again from your spreadsheet program."
                    )
                here, column = int(ref[2]) - 1, column_number(ref[1]) - 1
            pending = here + 1, column + 1
            column += 1
    return rows, columns


def ods_extents(pieces: Iterator[bytes], *, file_name: str, part: str) -> list[Extent]:
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


def check_extent(name: str, extent: Extent, *, part: str, settings: Settings) -> None:
    rows, columns = extent
    if columns > settings.max_columns:
        raise LimitExceededError(
            f"{name} has cells as far right as column {columns:,} (in {part}); the limit is "
            f"{settings.max_columns} columns.",
            limit=Limit.COLUMNS,
            allowed=settings.max_columns,
        )
    if rows * columns > settings.max_cells:
        raise LimitExceededError(
            f"{name} has a sheet spanning {rows:,} rows by {columns:,} columns ({rows * columns:,} "
            f"cells, in {part}), too many to read into memory; the limit is {settings.max_cells:,} "
            "cells.",
            limit=Limit.CELLS,
            allowed=settings.max_cells,
        )
