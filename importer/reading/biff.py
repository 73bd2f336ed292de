"""Excel 97-2003 (.xls) workbooks measured before python-calamine reads them.

An .xls file is an OLE2 compound file (a small file system of 512- or 4,096-byte sectors) holding a
`Workbook` stream of BIFF records. calamine parses every sheet of that stream as soon as the file
opens: it reserves room for the cells its DIMENSIONS record declares, then allocates one slot for
every cell of the range its cell records span. Neither can fail gracefully: a 5 KB file that
declares 4 billion rows, or puts one cell in column 65,535, aborts the process. So the stream is
read here, as calamine reads it, and each sheet is measured by the cells that hold a value.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

_END_OF_CHAIN, _FREE = 0xFFFFFFFE, 0xFFFFFFFF
_MINI_SECTOR = 64
# calamine reads a stream shorter than this from the mini stream, whatever the header says.
_MINI_CUTOFF = 4096
_DIRECTORY_ENTRY = 128
_STREAM_NAMES = ("workbook", "book")

_EOF, _FILEPASS, _BOUNDSHEET, _DIMENSIONS, _MULRK = 0x000A, 0x002F, 0x0085, 0x0200, 0x00BD
# Records calamine places a cell for, each starting with the cell's row and column (16 bits each):
# FORMULA, NUMBER, LABEL, BOOLERR, RK, LABELSST. BLANK and MULBLANK (formatted empty cells) are
# not placed, so they are not counted.
_VALUE_CELLS = frozenset({0x0006, 0x0203, 0x0204, 0x0205, 0x027E, 0x00FD})
# The grid of an Excel 97-2003 sheet; a DIMENSIONS record declaring more is damaged or crafted.
SHEET_ROWS, SHEET_COLUMNS = 65_536, 256
# Honest sheets are disjoint runs of records: walking them all reads the stream about once.
_MAX_WALKS = 2

# A sheet's used range: (rows, columns).
Extent = tuple[int, int]


class BiffDamage(Exception):
    """The container or its records are not what Excel writes; the text says what (for one line)."""


class BiffEncrypted(Exception):
    """The workbook stream is encrypted (a FILEPASS record): only its first records can be read."""


@dataclass(frozen=True, slots=True)
class SheetExtent:
    """A sheet of the workbook stream: its number (from 1) and the range its values span."""

    number: int
    rows: int
    columns: int


def measure_xls(path: Path) -> list[SheetExtent]:
    """The extent of every sheet of an .xls file, as calamine would allocate it.

    Raises BiffDamage for a container or records calamine could misread, BiffEncrypted for a
    password-protected workbook.
    """
    with path.open("rb") as f:
        if f.seek(0, 2) < 512:
            raise BiffDamage("the file is too short to be an OLE2 container")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            stream = _workbook_stream(data)
    return list(_sheet_extents(stream))


# --- the OLE2 compound file ------------------------------------------------------------------------


def _u32s(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 4}I", data[: len(data) // 4 * 4]))


def _chain(start: int, table: list[int], read: Callable[[int], bytes], *, count: int, length: int) -> bytes:
    """A chain of sectors from `start`, up to `length` bytes (a loop ends it, as a length does)."""
    out = bytearray()
    seen: set[int] = set()
    sector = start
    while sector not in (_END_OF_CHAIN, _FREE) and len(out) < length and sector not in seen:
        if sector >= count or sector >= len(table):
            raise BiffDamage(f"sector {sector:,} points past the end of the file")
        seen.add(sector)
        out += read(sector)
        sector = table[sector]
    return bytes(out[:length])


def _workbook_stream(data: mmap.mmap) -> bytes:
    header = data[:512]
    shift, mini_shift = struct.unpack_from("<HH", header, 30)
    if shift not in (9, 12) or mini_shift != 6:
        raise BiffDamage("its OLE2 header declares a sector size Excel never writes")
    size = 1 << shift
    count = -(-(len(data) - size) // size)  # sectors after the header's own, a last short one included

    def sector(number: int) -> bytes:
        return data[(number + 1) * size : (number + 2) * size]

    difat = list(struct.unpack_from("<109I", header, 76))
    next_difat, seen = struct.unpack_from("<I", header, 68)[0], set()
    while next_difat not in (_END_OF_CHAIN, _FREE):
        if next_difat >= count or next_difat in seen:
            raise BiffDamage("its sector allocation table is damaged")
        seen.add(next_difat)
        numbers = _u32s(sector(next_difat))
        difat += numbers[:-1]
        next_difat = numbers[-1]
    fat: list[int] = []
    for number in difat:
        if len(fat) >= count:  # entries for sectors past the end of the file are never used
            break
        if number == _FREE:
            continue
        if number >= count:
            raise BiffDamage(f"sector {number:,} points past the end of the file")
        fat += _u32s(sector(number))

    directory_start = struct.unpack_from("<I", header, 48)[0]
    directory = _chain(directory_start, fat, sector, count=count, length=count * size)
    entries = [directory[at : at + _DIRECTORY_ENTRY] for at in range(0, len(directory), _DIRECTORY_ENTRY)]
    if not entries or len(entries[0]) < _DIRECTORY_ENTRY:
        raise BiffDamage("its OLE2 directory is empty")
    streams = {_entry_name(entry): entry for entry in reversed(entries) if len(entry) == _DIRECTORY_ENTRY}
    found = next((streams[name] for name in _STREAM_NAMES if name in streams), None)
    if found is None:
        raise BiffDamage("it has no Workbook stream")
    start, length = _entry_location(found, sector_size=size)
    if length >= _MINI_CUTOFF:
        return _chain(start, fat, sector, count=count, length=length)
    root_start, root_length = _entry_location(entries[0], sector_size=size)
    mini_stream = _chain(root_start, fat, sector, count=count, length=root_length)
    mini_fat_start, mini_fat_sectors = struct.unpack_from("<II", header, 60)
    mini_fat = _u32s(
        _chain(mini_fat_start, fat, sector, count=count, length=min(mini_fat_sectors, count) * size)
    )
    mini_count = len(mini_stream) // _MINI_SECTOR

    def mini_sector(number: int) -> bytes:
        return mini_stream[number * _MINI_SECTOR : (number + 1) * _MINI_SECTOR]

    return _chain(start, mini_fat, mini_sector, count=mini_count, length=length)


def _entry_name(entry: bytes) -> str:
    length = min(struct.unpack_from("<H", entry, 64)[0], 64)
    return entry[: max(length - 2, 0)].decode("utf-16-le", errors="replace").lower()


def _entry_location(entry: bytes, *, sector_size: int) -> tuple[int, int]:
    start, low, high = struct.unpack_from("<III", entry, 116)
    return start, low if sector_size == 512 else low | high << 32


# --- the BIFF records --------------------------------------------------------------------------------


def _records(stream: bytes, start: int) -> Iterator[tuple[int, int, int]]:
    """(type, offset of its data, length) of each record from `start` up to an EOF record."""
    at, end = start, len(stream)
    while at < end:
        if at + 4 > end:
            raise BiffDamage("a record is cut off at the end of the workbook stream")
        kind, length = struct.unpack_from("<HH", stream, at)
        if at + 4 + length > end:
            raise BiffDamage("a record is longer than the rest of the workbook stream")
        yield kind, at + 4, length
        if kind == _EOF:
            return
        at += 4 + length


def _sheet_extents(stream: bytes) -> Iterator[SheetExtent]:
    starts: list[int] = []
    for kind, at, length in _records(stream, 0):
        if kind == _FILEPASS and length >= 2 and struct.unpack_from("<H", stream, at)[0]:
            raise BiffEncrypted  # what follows is ciphertext; calamine stops here too
        if kind == _BOUNDSHEET and length >= 4:
            starts.append(struct.unpack_from("<I", stream, at)[0])
    budget = _MAX_WALKS * len(stream) + 4096
    for number, start in enumerate(dict.fromkeys(starts), start=1):
        if start > len(stream):
            raise BiffDamage(f"sheet {number} starts past the end of the workbook stream")
        rows = columns = 0
        for kind, at, length in _records(stream, start):
            budget -= 4 + length
            if budget < 0:
                raise BiffDamage("its sheets overlap one another")
            if kind in _VALUE_CELLS and length >= 4:
                row, column = struct.unpack_from("<HH", stream, at)
                rows, columns = max(rows, row + 1), max(columns, column + 1)
            elif kind == _MULRK and length >= 6:
                row, first = struct.unpack_from("<HH", stream, at)
                cells = (length - 6) // 6  # calamine places one cell per 6-byte RK value
                if cells:
                    rows, columns = max(rows, row + 1), max(columns, first + cells)
            elif kind == _DIMENSIONS:
                _check_dimensions(stream[at : at + length], number=number)
        yield SheetExtent(number, rows, columns)


def _check_dimensions(record: bytes, *, number: int) -> None:
    """calamine reserves room for the declared range up front: refuse one no Excel sheet can have."""
    if len(record) == 10:
        first_row, end_row, first_column, end_column = struct.unpack_from("<HHHH", record)
    elif len(record) == 14:
        first_row, end_row, first_column, end_column = struct.unpack_from("<IIHH", record)
    else:
        return  # calamine refuses the file itself
    last_row, last_column = (
        (end_row - 1, end_column - 1) if end_row and end_column else (first_row, first_column)
    )
    # As calamine counts them: a last row or column before the first counts as one (fuzzed files).
    rows, columns = max(last_row - first_row, 0) + 1, max(last_column - first_column, 0) + 1
    if rows > SHEET_ROWS or columns > SHEET_COLUMNS:
        raise BiffDamage(
            f"sheet {number} declares {rows:,} rows by {columns:,} columns, more than an Excel "
            f"97-2003 sheet holds ({SHEET_ROWS:,} by {SHEET_COLUMNS})"
        )
