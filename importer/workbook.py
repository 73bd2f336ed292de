"""Workbooks around an import: rejected.xlsx with the bad cells marked, and the stamp of an upload."""

from __future__ import annotations

import re
import zipfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as DefusedET
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import Cell
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from importer.cells import neutralize
from importer.results import ImportResult, RowError
from importer.samples import HEADER_FILL, HEADER_FONT, STAMP_PATTERN, template_stamp
from importer.settings import MAX_CELL_CHARS
from importer.sheets import ERRORS_HEADER, SheetSpec, UserType, load_sheet, normalize_header

# Excel's built-in "Bad" cell style (light red fill, dark red text): one shared style, so 10k
# marked cells cost a name lookup each, and Excel lists them under Styles > Bad.
BAD_STYLE = "Bad"
ERRORS_HEADER_FILL = PatternFill("solid", fgColor="9C0006")
COMMENT_AUTHOR = "member-importer"
REJECTED_SHEET_TITLE = "Rejected rows"
# Cell comments are what makes a big workbook slow to write (openpyxl's VML): the first rows get
# them; every row still has its bad cells filled and its messages in the Errors column.
COMMENTED_ROWS = 2_000
# Widths are measured on the first rows only: enough to size columns, cheap for 10k rows.
_WIDTH_SAMPLE_ROWS = 500
_MIN_WIDTH, _MAX_WIDTH, _ERRORS_MAX_WIDTH = 10, 50, 100
# XML 1.0 cannot hold these; OOXML writes them as _xHHHH_, which Excel and calamine decode again.
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_LITERAL_ESCAPE = re.compile(r"_(x[0-9A-Fa-f]{4}_)")
_CORE_PROPERTIES = "docProps/core.xml"
_CORE_KEYWORDS = "{http://schemas.openxmlformats.org/package/2006/metadata/core-properties}keywords"
_MAX_CORE_BYTES = 256 * 1024
_STAMP_EXTENSIONS = frozenset({".xlsx", ".xlsm"})


def write_rejected_xlsx(result: ImportResult, path: Path, *, pin_columns: set[int]) -> None:
    """Write the rejected rows in the admin's own columns, each bad cell filled and commented."""
    from importer.report import PIN_REMOVED  # here, not at the top: report.py imports this module

    # The Errors column of an earlier rejected.xlsx/csv is stale: today's messages replace it.
    errors_key = normalize_header(ERRORS_HEADER)
    keep = [i for i, header in enumerate(result.headers) if normalize_header(header) != errors_key]
    headers = [result.headers[i] for i in keep]
    pins = {out for out, i in enumerate(keep) if i in pin_columns}
    errors_by_row: dict[int, list[RowError]] = defaultdict(list)
    for error in result.errors:
        errors_by_row[error.row_number].append(error)
    position: dict[str, int] = {}
    for index, header in enumerate(headers):
        position.setdefault(header, index)

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(REJECTED_SHEET_TITLE)
    rows = [
        _row_texts(
            [row.values[i] if i < len(row.values) else "" for i in keep],
            errors_by_row[row.row_number],
            row.row_number,
            pins,
            PIN_REMOVED,
        )
        for row in result.rejected_rows
    ]
    for index, width in enumerate(_widths(headers, rows), start=1):
        sheet.column_dimensions[get_column_letter(index)].width = width
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(headers) + 1)}{len(rows) + 1}"
    sheet.append(_header_cells(sheet, headers))
    for count, (rejected, texts) in enumerate(zip(result.rejected_rows, rows, strict=True)):
        with_comments = count < COMMENTED_ROWS
        bad: dict[int, list[RowError]] = defaultdict(list)
        for error in errors_by_row[rejected.row_number]:
            if error.column in position:
                bad[position[error.column]].append(error)
        cells: list[Cell | str | None] = []
        for index, text in enumerate(texts):
            if index in bad:
                cell = WriteOnlyCell(sheet, value=text or None)
                cell.style = BAD_STYLE
                if with_comments:
                    cell.comment = _comment("\n\n".join(f"{e.message} ({e.code.value})" for e in bad[index]))
                cells.append(cell)
            else:
                cells.append(text or None)
        sheet.append(cells)
    workbook.save(path)


def read_template_stamp(path: Path) -> str | None:
    """The sample-sheet stamp (`member-importer/<type>/v<n>`) of an .xlsx/.xlsm upload, if it has one."""
    if path.suffix.lower() not in _STAMP_EXTENSIONS:
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(_CORE_PROPERTIES)
            if info.file_size > _MAX_CORE_BYTES:
                return None
            with archive.open(info) as member:
                data = member.read(_MAX_CORE_BYTES + 1)
        if len(data) > _MAX_CORE_BYTES:
            return None
        root: Element = DefusedET.fromstring(
            data, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except Exception:  # a broken, hostile or foreign file simply has no stamp
        return None
    keywords = root.find(_CORE_KEYWORDS)
    if keywords is None or not keywords.text:
        return None
    match = STAMP_PATTERN.search(keywords.text)
    return match.group() if match else None


def describe_template_stamp(stamp: str | None, *, spec: SheetSpec) -> str | None:
    """A warning when an upload came from another sheet's or an older template, else None."""
    if stamp is None or stamp == template_stamp(spec):
        return None
    match = STAMP_PATTERN.fullmatch(stamp)
    if match is None:
        return None
    user_type, version = match.group("type"), int(match.group("version"))
    download = f"`importer template {spec.user_type.value} --format xlsx`"
    if user_type != spec.user_type.value:
        try:
            other = load_sheet(UserType(user_type)).title
        except ValueError:
            other = user_type
        return (
            f"This file was made from the {other} sample sheet but is imported as {spec.title} "
            f"(--type {spec.user_type.value}); check the type, or start again from {download}."
        )
    if version < spec.version:
        changed = "; ".join(spec.changes_since(version))
        return (
            f"This file was made from version {version} of the {spec.title} sample sheet; the current "
            f"version is {spec.version}. What changed since: {changed}. Its columns were read by their "
            f"headers; for the current columns, rules and dropdowns download a fresh sample sheet "
            f"with {download}."
        )
    return (
        f"This file was made from version {version} of the {spec.title} sample sheet, newer than this "
        f"importer knows (version {spec.version}); its columns were read by their headers."
    )


def xlsx_text(value: str) -> str:
    """A cell value as an inert string that survives the XML of a workbook and reads back the same."""
    text = _LITERAL_ESCAPE.sub(r"_x005F_\1", neutralize(value))
    text = _XML_ILLEGAL.sub(lambda m: f"_x{ord(m.group()):04X}_", text)
    return text[:MAX_CELL_CHARS]


def _row_texts(
    values: Sequence[str], errors: list[RowError], row_number: int, pin_columns: set[int], pin_note: str
) -> list[str]:
    """The row's cells (PINs blanked, as in rejected.csv) and its Errors cell."""
    texts = ["" if index in pin_columns else xlsx_text(value) for index, value in enumerate(values)]
    messages = [f"{e.column}: {e.message}" for e in errors]
    if any(values[i] for i in pin_columns if i < len(values)):
        messages.append(pin_note)
    texts.append(_plain(f"Row {row_number}: " + " | ".join(messages)))
    return texts


def _plain(text: str) -> str:
    """Messages and comments: characters XML cannot hold become U+FFFD (they are read, not imported)."""
    return _XML_ILLEGAL.sub("\ufffd", text)[:MAX_CELL_CHARS]


def _header_cells(sheet: WriteOnlyWorksheet, headers: Sequence[str]) -> list[Cell]:
    cells = []
    for header in (*headers, ERRORS_HEADER):
        cell = WriteOnlyCell(sheet, value=xlsx_text(header))
        cell.fill, cell.font = HEADER_FILL, HEADER_FONT
        cell.alignment = Alignment(vertical="center")
        cells.append(cell)
    errors_cell = cells[-1]
    errors_cell.fill = ERRORS_HEADER_FILL
    errors_cell.comment = _comment(
        "What is wrong with each row. Fix the red cells (each has a note saying how) and upload this "
        "file again: this column is ignored, and rows already imported are skipped."
    )
    return cells


def _comment(text: str) -> Comment:
    lines = sum(1 + len(part) // 48 for part in text.split("\n"))
    return Comment(_plain(text), COMMENT_AUTHOR, width=320, height=min(400, 24 + 15 * lines))


def _widths(headers: Sequence[str], rows: list[list[str]]) -> list[float]:
    """Column widths from the header and the first rows' values, within sensible bounds."""
    widths = [len(h) + 4 for h in (*headers, ERRORS_HEADER)]
    for texts in rows[:_WIDTH_SAMPLE_ROWS]:
        for index, text in enumerate(texts):
            longest = max((len(line) for line in text.split("\n")), default=0)
            widths[index] = max(widths[index], longest + 2)
    limits = [_MAX_WIDTH] * len(headers) + [_ERRORS_MAX_WIDTH]
    return [float(min(limit, max(_MIN_WIDTH, width))) for width, limit in zip(widths, limits, strict=True)]
