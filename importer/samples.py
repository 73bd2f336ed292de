"""The sample sheets: CSV and a styled XLSX with dropdowns and instructions, from schemas/."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from openpyxl import Workbook
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.worksheet.datavalidation import DataValidation

from importer.sheets import ColumnKind, SheetSpec

TEMPLATE_ROWS = 1000
HEADER_FILL = PatternFill("solid", fgColor="1F4E79")
HEADER_FONT = Font(bold=True, color="FFFFFF")
# Fixed so a template written today is byte-for-byte the one in sample_files/ (no "now" inside).
_STAMP_TIME = dt.datetime(2026, 1, 1)


def template_stamp(spec: SheetSpec) -> str:
    """The version stamp written into sample workbooks."""
    return f"member-importer/{spec.user_type.value}/v{spec.version}"


def template_file_name(spec: SheetSpec, fmt: str) -> str:
    """The default file name of a sample sheet."""
    return f"{spec.user_type.value}-users-sample.{fmt}"


def write_template(spec: SheetSpec, path: Path, *, fmt: str, teams: Sequence[str] = ()) -> Path:
    """Write the sample sheet for one user type as CSV or XLSX."""
    if fmt == "csv":
        with path.open("w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerow([c.sample_header for c in spec.columns])
    else:
        _workbook(spec, teams=teams).save(path)
    return path


def _workbook(spec: SheetSpec, *, teams: Sequence[str]) -> Workbook:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None  # a new Workbook always has one sheet
    sheet.title = spec.title
    workbook.properties.creator = "member-importer"
    workbook.properties.title = f"{spec.title} users"
    workbook.properties.keywords = template_stamp(spec)
    workbook.properties.created = _STAMP_TIME
    workbook.properties.modified = _STAMP_TIME
    for position, column in enumerate(spec.columns, start=1):
        cell = sheet.cell(row=1, column=position, value=column.sample_header)
        cell.fill, cell.font = HEADER_FILL, HEADER_FONT
        cell.alignment = Alignment(vertical="center")
        cell.comment = Comment(column.rule, "member-importer")
        letter = get_column_letter(position)
        sheet.column_dimensions[letter].width = max(18, len(column.sample_header) + 4)
        cells = f"{letter}2:{letter}{TEMPLATE_ROWS + 1}"
        if column.kind is ColumnKind.PIN:
            # Text format, so Excel keeps the leading zeros of 0042.
            for (row_cell,) in sheet[cells]:
                row_cell.number_format = "@"
        elif column.kind is ColumnKind.ROLE and column.allowed:
            _dropdown(sheet, cells, '"' + ",".join(column.allowed) + '"', column.header)
        elif column.kind is ColumnKind.TEAM and teams:
            lists = workbook.create_sheet("Lists")
            lists.sheet_state = "hidden"
            for row, name in enumerate(teams, start=1):
                lists.cell(row=row, column=1, value=name)
            source = f"{quote_sheetname('Lists')}!$A$1:$A${len(teams)}"
            _dropdown(sheet, cells, source, column.header)
    sheet.freeze_panes = "A2"
    _instructions(workbook, spec, teams=teams)
    return workbook


def _dropdown(sheet: object, cells: str, source: str, header: str) -> None:
    validation = DataValidation(type="list", formula1=source, allow_blank=True, showDropDown=False)
    validation.error = f"Choose a {header} from the list."
    validation.errorTitle = f"Unknown {header}"
    validation.add(cells)
    sheet.add_data_validation(validation)  # type: ignore[attr-defined]


def _instructions(workbook: Workbook, spec: SheetSpec, *, teams: Sequence[str]) -> None:
    sheet = workbook.create_sheet("Instructions")
    bold = Font(bold=True)
    sheet.append([f"{spec.title} users: how to fill in this sheet"])
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.append([spec.description])
    sheet.append([])
    sheet.append(["Column", "Required", "Rule", "Examples"])
    for cell in sheet[4]:
        cell.font = bold
    for column in spec.columns:
        sheet.append(
            [
                column.header,
                "yes" if column.required else "no",
                column.rule,
                ", ".join(e for e in column.examples if e),
            ]
        )
    sheet.append([])
    if teams:
        sheet.append(["Teams of the organization:", ", ".join(teams)])
    sheet.append(["Template version:", template_stamp(spec)])
    sheet.append(["Upload with:", f"importer import FILE --type {spec.user_type.value} --org ORG --as YOU"])
    for letter, width in (("A", 26), ("B", 12), ("C", 80), ("D", 40)):
        sheet.column_dimensions[letter].width = width
