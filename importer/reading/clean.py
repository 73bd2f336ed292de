"""Raw records (sources/) -> cleaned text rows in blocks: trimmed, NFC, blank rows dropped, limits kept."""

from __future__ import annotations

import datetime as dt
import enum
import itertools
import operator
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from importer.cells import trim_all, unguard
from importer.errors import LimitExceededError
from importer.reading.sources.base import RawBlock
from importer.settings import Settings
from importer.sheets import ERRORS_HEADER, normalize_header
from importer.values import Limit

_quoted = operator.methodcaller("startswith", "'")
_JOIN = "\x00"


@dataclass(slots=True)
class Block:
    """Consecutive non-blank rows of a file, cleaned, held by column (C-level passes, not row loops).

    `lengths` holds each row's cell count as the file gave it, when the rows are ragged.
    """

    numbers: list[int]
    columns: list[list[str]]
    lengths: list[int] | None = None

    def __len__(self) -> int:
        return len(self.numbers)

    def cells(self, position: int) -> list[str]:
        """One row's cells, as many as the file gave it."""
        cells = [column[position] for column in self.columns]
        return cells[: self.lengths[position]] if self.lengths is not None else cells

    def tail(self, start: int) -> Block:
        """The rows from this position on."""
        return Block(
            self.numbers[start:],
            [column[start:] for column in self.columns],
            self.lengths[start:] if self.lengths is not None else None,
        )


def fit_width(block: Block, width: int) -> list[int]:
    """Cut or pad a block's columns to the header's width; return the rows that lost a non-blank cell."""
    extra = block.columns[width:]
    del block.columns[width:]
    while len(block.columns) < width:
        block.columns.append([""] * len(block))
    if not extra:
        return []
    flagged = [any(cells) for cells in zip(*extra, strict=True)]
    return list(itertools.compress(block.numbers, flagged))


def row_of(columns: list[list[str]], position: int) -> tuple[str, ...]:
    """One row of column-held cells, as a tuple."""
    return tuple(column[position] for column in columns)


def written_by_us(header: list[str]) -> bool:
    """Whether a header row is that of a file the importer wrote: rejected.csv and rejected.xlsx
    end with the `Errors` column, which no sheet of ours declares."""
    errors = normalize_header(ERRORS_HEADER)
    return any(normalize_header(text) == errors for text in header)


def unguarded(block: Block) -> Block:
    """A block of a file the importer wrote, with the formula guards it added dropped again."""
    block.columns = [list(map(unguard, c)) if any(map(_quoted, c)) else c for c in block.columns]
    return block


def clean_columns(records: list[list[Any]], *, texts_only: bool) -> list[list[str]]:
    """Records -> columns of text, trimmed (cells.trim: spaces, tabs, line breaks), NFC.

    Column by column, with C-level passes (map, zip) rather than a Python loop per cell.
    """
    widths = set(map(len, records))
    width = max(widths, default=0)
    if len(widths) > 1:
        records = [r if len(r) == width else [*r, *[""] * (width - len(r))] for r in records]
    columns: list[list[str]] = []
    for values in zip(*records, strict=True):
        texts = trim_all(
            values if texts_only else [v if v.__class__ is str else cell_text(v) for v in values]
        )
        # One joined string per column makes the common checks single C calls.
        joined = _JOIN.join(texts)
        if not joined.isascii():
            normal = unicodedata.normalize("NFC", joined)
            if normal != joined:
                # NUL is a starter that composes with nothing: NFC of the joined column is the
                # joined NFC of its cells, unless a cell holds a NUL itself.
                if joined.count(_JOIN) == len(texts) - 1:
                    texts = normal.split(_JOIN)
                else:
                    texts = [unicodedata.normalize("NFC", t) for t in texts]
        columns.append(texts)
    return columns


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


def clean_blocks(
    blocks: Iterator[RawBlock], *, settings: Settings, file_name: str, texts_only: bool
) -> Iterator[Block]:
    """Text, trimmed, NFC; blank rows dropped; row and cell limits enforced, in row order."""
    limit = settings.max_cell_chars
    last_row = settings.max_rows + 1
    seen = 0
    for start, records in blocks:
        count = len(records)
        columns = clean_columns(records, texts_only=texts_only)
        kept = _filled_rows(columns, count)
        # Where each limit is first passed, as a position in this block (count = not passed).
        # Blank rows count too: a file of nothing but line breaks must not keep us busy for long.
        flood = min(max(last_row + settings.max_rows + 1 - start, 0), count)
        too_long = min(
            (
                next(i for i, text in enumerate(column) if len(text) > limit)
                for column in columns
                if max(map(len, column)) > limit
            ),
            default=count,
        )
        too_many = kept[last_row - seen] if len(kept) > last_row - seen else count
        first = min(flood, too_long, too_many)
        if first < count:
            _raise_limit(
                file_name,
                settings,
                number=start + first,
                columns=columns,
                position=first,
                passed=_Limit.FLOOD if first == flood else _Limit.CELL if first == too_long else _Limit.ROWS,
            )
        seen += len(kept)
        if not kept:
            continue
        ragged = len(set(map(len, records))) > 1
        if len(kept) == count:
            numbers = list(range(start, start + count))
            block = Block(numbers, columns, list(map(len, records)) if ragged else None)
        else:
            block = Block(
                [start + i for i in kept],
                [[column[i] for i in kept] for column in columns],
                [len(records[i]) for i in kept] if ragged else None,
            )
        yield block


def _filled_rows(columns: list[list[str]], count: int) -> list[int]:
    """The positions of the rows with at least one non-blank cell."""
    if any("" not in column for column in columns):  # the usual case: no row can be blank
        return list(range(count))
    blank: Iterable[int] = (i for i, text in enumerate(columns[0]) if not text) if columns else range(count)
    for column in columns[1:]:
        blank = [i for i in blank if not column[i]]
    gaps = set(blank)
    return [i for i in range(count) if i not in gaps]


class _Limit(enum.Enum):
    """Which limit a block passed first."""

    FLOOD = "rows, blank rows included"
    ROWS = "rows"
    CELL = "cell length"


def _raise_limit(
    file_name: str,
    settings: Settings,
    *,
    number: int,
    columns: list[list[str]],
    position: int,
    passed: _Limit,
) -> None:
    if passed is _Limit.FLOOD:
        raise LimitExceededError(
            f"{file_name} goes on past row {number - 1:,}, far more than the limit of "
            f"{settings.max_rows:,} rows (blank rows included); split it.",
            limit=Limit.ROWS,
            allowed=settings.max_rows,
        )
    if passed is _Limit.ROWS:
        raise LimitExceededError(
            f"{file_name} has more than the limit of {settings.max_rows:,} rows; split it.",
            limit=Limit.ROWS,
            allowed=settings.max_rows,
        )
    limit = settings.max_cell_chars
    column, text = next((i, c[position]) for i, c in enumerate(columns) if len(c[position]) > limit)
    hint = (
        " A cell that long with line breaks in it is often a quote that is never closed."
        if "\n" in text
        else ""
    )
    raise LimitExceededError(
        f"{file_name}: the cell in row {number}, column {column + 1} has "
        f"{len(text):,} characters; the limit is {limit:,} (Excel's own).{hint}",
        limit=Limit.CELL_CHARS,
        allowed=limit,
    )
