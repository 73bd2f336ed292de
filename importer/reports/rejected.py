"""One view of the rejected rows, shared by the files that show them (rejected.csv, rejected.xlsx,
report.html): which columns are kept, which hold PINs, each row's errors, its Errors cell."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from importer.sheets import ERRORS_HEADER, ColumnKind, SheetSpec, header_lookup, normalize_header
from importer.values import ImportResult, RejectedRow, RowError

PIN_REMOVED = (
    "PIN left out of this report for security: enter it again, or leave it blank to have one generated."
)
_NO_ERRORS: list[RowError] = []


def pin_positions(headers: Sequence[str], spec: SheetSpec) -> set[int]:
    """The positions of the upload's columns that hold PINs."""
    lookup = header_lookup(spec)
    pin_keys = {c.key for c in spec.columns if c.kind is ColumnKind.PIN}
    return {i for i, h in enumerate(headers) if lookup.get(normalize_header(h)) in pin_keys}


@dataclass(frozen=True, slots=True)
class RejectedView:
    """The rejected rows as every report shows them.

    `keep`: the upload's columns, less an Errors column (an earlier rejected file's messages are
    stale: today's replace them); `pin_columns`: the positions of PIN columns, whose values never
    leave the database; `errors_by_row`: each row's errors, in order.
    """

    result: ImportResult
    keep: tuple[int, ...]
    pin_columns: frozenset[int]
    errors_by_row: dict[int, list[RowError]]

    @classmethod
    def of(cls, result: ImportResult, *, pin_columns: set[int] | frozenset[int]) -> RejectedView:
        """The view of a result's rejected rows."""
        errors_key = normalize_header(ERRORS_HEADER)
        keep = tuple(i for i, header in enumerate(result.headers) if normalize_header(header) != errors_key)
        errors_by_row: dict[int, list[RowError]] = defaultdict(list)
        for error in result.errors:
            errors_by_row[error.row_number].append(error)
        return cls(result, keep, frozenset(pin_columns), dict(errors_by_row))

    @property
    def headers(self) -> list[str]:
        """The kept columns' headers (the Errors column goes after them)."""
        return [self.result.headers[i] for i in self.keep]

    def errors_of(self, row: RejectedRow) -> list[RowError]:
        """The row's errors."""
        return self.errors_by_row.get(row.row_number, _NO_ERRORS)

    def kept_values(self, row: RejectedRow) -> list[str]:
        """The row's values in the kept columns, PINs blanked (the file can be uploaded again)."""
        values = row.values
        return ["" if i in self.pin_columns or i >= len(values) else values[i] for i in self.keep]

    def shown_values(self, row: RejectedRow) -> list[str]:
        """The row's values in every column, each PIN shown as dots (for reading, not re-uploading)."""
        return ["•" * len(v) if i in self.pin_columns and v else v for i, v in enumerate(row.values)]

    def errors_text(self, row: RejectedRow) -> str:
        """The row's Errors cell: each error as `Column: message`, and the note of a removed PIN."""
        messages = [f"{e.column}: {e.message}" for e in self.errors_of(row)]
        values = row.values
        if any(values[i] for i in self.pin_columns if i < len(values)):
            messages.append(PIN_REMOVED)
        return " | ".join(messages)
