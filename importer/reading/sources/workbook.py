"""Workbooks (.xlsx, .xlsm, .xls, .ods) -> raw records in blocks, read by python-calamine.

The records are as the workbook gives them (strings, numbers, dates); clean.py makes them text.
The file has passed the guard (guard.py) before calamine opens it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import python_calamine

from importer.errors import FileLevelError, UnreadableFileError
from importer.reading.problems import first_line, password_protected
from importer.reading.sources import base
from importer.reading.sources.base import RawBlock, Source
from importer.stamp import INSTRUCTIONS_ROWS, SAMPLE_WORKBOOK_SHEETS, holds_template_stamp
from importer.values import Notice, Remedy, WarningCode


class WorkbookSource(Source):
    """One sheet of a workbook (the first unless named): its records, in blocks, from the start."""

    texts_only = False

    def __init__(self, path: Path, *, sheet_name: str | None) -> None:
        super().__init__()
        self.path = path
        self.sheet_name = sheet_name
        first, warnings, self.row_estimate = workbook_blocks(path, sheet_name=sheet_name)
        self.warnings.extend(warnings)
        self._first: Iterator[RawBlock] | None = first

    def blocks(self) -> Iterator[RawBlock]:
        """The sheet's records: as opened the first time, from the workbook opened again after."""
        first, self._first = self._first, None
        return first if first is not None else reopen_workbook(self.path, sheet_name=self.sheet_name)


def reopen_workbook(path: Path, *, sheet_name: str | None) -> Iterator[RawBlock]:
    """A workbook sheet's records from the start again (for rows read back at the end)."""
    return workbook_blocks(path, sheet_name=sheet_name)[0]


def workbook_blocks(
    path: Path, *, sheet_name: str | None
) -> tuple[Iterator[RawBlock], list[Notice], int | None]:
    """(the chosen sheet's records in blocks, warnings, the sheet's height) of a workbook."""
    try:
        workbook = python_calamine.CalamineWorkbook.from_path(str(path))
    except python_calamine.PasswordError as exc:
        raise UnreadableFileError(password_protected(path)) from exc
    except BaseException as exc:  # calamine raises several unrelated types for corrupt files
        _reraise_unless_calamine_failure(exc)
        raise UnreadableFileError(
            f"{path.name} cannot be opened as a {path.suffix.lower()} workbook ({first_line(exc)}): "
            "it is damaged or not a spreadsheet. Save it again from your spreadsheet program and "
            "upload it again."
        ) from exc
    names: list[str] = list(workbook.sheet_names)
    if not names:
        raise UnreadableFileError(f"{path.name} has no sheets.")
    warnings: list[Notice] = []
    if sheet_name is None:
        chosen = names[0]
        if set(names[1:]) - _sample_workbooks_own(workbook, names):
            warnings.append(
                Notice(
                    WarningCode.SHEET_CHOSEN,
                    f"{path.name} has {len(names)} sheets; read the first, {chosen!r}.",
                    remedy=Remedy.CHOOSE_SHEET,
                )
            )
    elif sheet_name in names:
        chosen = sheet_name
    else:
        raise FileLevelError(
            f"{path.name} has no sheet named {sheet_name!r}; its sheets are "
            f"{', '.join(repr(n) for n in names)}.",
            remedy=Remedy.CHOOSE_SHEET,
        )
    try:
        sheet = workbook.get_sheet_by_name(chosen)
    except BaseException as exc:
        _reraise_unless_calamine_failure(exc)
        raise UnreadableFileError(f"{path.name}: cannot read sheet {chosen!r} ({first_line(exc)}).") from exc
    return _sheet_blocks(sheet, path=path), warnings, int(getattr(sheet, "height", 0) or 0) or None


def _sample_workbooks_own(workbook: Any, names: list[str]) -> set[str]:
    """The sheets that come with our workbooks: a sample sheet's instructions, the hidden list of teams.

    Known by name and content (each holds its template's stamp in a cell): whatever saved the file
    (Excel, LibreOffice, Google Sheets) keeps the cells, not always the document properties.
    """
    return {name for name in SAMPLE_WORKBOOK_SHEETS & set(names) if _holds_stamp(workbook, name)}


def _holds_stamp(workbook: Any, name: str) -> bool:
    try:
        rows = workbook.get_sheet_by_name(name).iter_rows()
        return holds_template_stamp(itertools.islice(rows, INSTRUCTIONS_ROWS))
    except Exception:  # unreadable: then it is not ours, and the warning names it
        return False


def _sheet_blocks(sheet: Any, *, path: Path) -> Iterator[RawBlock]:
    # calamine's iter_rows() starts at the sheet's row 1 (blank rows above the data included),
    # so the count is the row number the user sees.
    number = 0
    try:
        rows = sheet.iter_rows()
        while records := list(itertools.islice(rows, base.BLOCK_ROWS)):
            yield number + 1, records
            number += len(records)
    except BaseException as exc:
        _reraise_unless_calamine_failure(exc)
        raise UnreadableFileError(f"{path.name}: cannot read the sheet ({first_line(exc)}).") from exc


def _reraise_unless_calamine_failure(exc: BaseException) -> None:
    """Let Ctrl-C and exits through; a reader's error, or a panic inside calamine, is the file's fault.

    A Rust panic reaches Python as pyo3's PanicException, which derives from BaseException (an
    index out of range on a malformed .xls formula, for one): it is a damaged file, not a crash.
    """
    if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
        raise exc
