"""What every source of records gives the reader: records in blocks from the start, row numbers kept.

One file per kind of source (text.py, workbook.py), each behind this small base: open_sheet asks
any of them the same questions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from importer.values import Notice

# Records read and cleaned at a time.
BLOCK_ROWS = 10_000

# The first row number of a run of consecutive records, and the records as the file gives them.
RawBlock = tuple[int, list[list[Any]]]
# Row numbers, and the record of each.
RawPicks = tuple[list[int], list[list[str]]]


class Source:
    """A file's records, in blocks of consecutive rows, each record one spreadsheet row.

    `texts_only`: every value is a str already (text files), else cells need cell_text.
    """

    encoding: str | None = None
    delimiter: str | None = None
    texts_only = True

    def __init__(self) -> None:
        self.warnings: list[Notice] = []
        self.row_estimate: int | None = None

    def blocks(self) -> Iterator[RawBlock]:
        """The records from the first row; asked again, read again (for rows taken back at the end)."""
        return iter(())

    def pick(self, numbers: list[int]) -> RawPicks | None:
        """The records of these rows (ascending) without reading the others; None if this source
        cannot, and the caller reads the blocks again up to the last one wanted."""
        return None
