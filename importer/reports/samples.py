"""The sample sheets: CSV and a styled XLSX with dropdowns and instructions, from schemas/."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from openpyxl import Workbook
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet

from importer.cells import neutralize
from importer.sheets import ColumnKind, ColumnSpec, SheetSpec, error_codes_for
from importer.stamp import INSTRUCTIONS_SHEET, LISTS_SHEET, STAMP_PREFIX, template_stamp
from importer.values import ErrorCode

# Rows formatted cell by cell (PIN as text); dropdowns and checks reach further, they cost nothing.
TEMPLATE_ROWS = 1000
VALIDATED_ROWS = 10_000
HEADER_FILL = PatternFill("solid", fgColor="1F4E79")
HEADER_FONT = Font(bold=True, color="FFFFFF")
# Fixed so a template written today is byte-for-byte the one in sample_files/ (no "now" inside).
_STAMP_TIME = dt.datetime(2026, 1, 1)
_TEXT = "@"


def template_file_name(spec: SheetSpec, fmt: str) -> str:
    """The default file name of a sample sheet."""
    return f"{spec.user_type.value}-users-sample.{fmt}"


@dataclass(frozen=True, slots=True)
class UploadWords:
    """How the front end that hands out the sheet says to upload it and to get the team dropdown,
    in its own words (a command for the CLI, a page for the portal): the Instructions sheet shows
    them; the library names no command or page itself."""

    upload: str
    teams_elsewhere: str


def render_template(
    spec: SheetSpec, *, fmt: str, teams: Sequence[str] = (), words: UploadWords | None = None
) -> bytes:
    """The sample sheet for one user type as CSV (UTF-8) or XLSX bytes."""
    if fmt == "csv":
        text = io.StringIO(newline="")
        csv.writer(text).writerow([c.sample_header for c in spec.columns])
        return text.getvalue().encode("utf-8")
    data = io.BytesIO()
    _workbook(spec, teams=teams, words=words).save(data)
    return data.getvalue()


def write_template(
    spec: SheetSpec, path: Path, *, fmt: str, teams: Sequence[str] = (), words: UploadWords | None = None
) -> Path:
    """Write the sample sheet for one user type as CSV or XLSX."""
    path.write_bytes(render_template(spec, fmt=fmt, teams=teams, words=words))
    return path


@dataclass(frozen=True, slots=True)
class Dropdown:
    """A list a column's cells are chosen from, offered the same way by every workbook we write."""

    column: ColumnSpec
    values: tuple[str, ...]
    # Kept on the hidden Lists sheet: a list in a range has no length limit, unlike "a,b" (255).
    on_lists_sheet: bool

    @property
    def title(self) -> str:
        """The note's title when a cell is selected (Excel's limit: 32 characters)."""
        return self.column.header[:32]

    @property
    def prompt(self) -> str:
        """The note shown when a cell of the column is selected."""
        return "Choose from the list."

    @property
    def error_title(self) -> str:
        """The title of the box shown when a value not in the list is typed."""
        return f"Unknown {self.column.header}"[:32]

    @property
    def error(self) -> str:
        """The box shown when a value not in the list is typed."""
        return f"Choose a {self.column.header} from the list."


def dropdowns(spec: SheetSpec, *, teams: Sequence[str]) -> list[Dropdown]:
    """The sheet's dropdowns: Role from its allowed values, Team from the organization's teams."""
    found: list[Dropdown] = []
    for column in spec.columns:
        if column.kind is ColumnKind.ROLE and column.allowed:
            found.append(Dropdown(column, column.allowed, on_lists_sheet=False))
        elif column.kind is ColumnKind.TEAM and teams:
            found.append(Dropdown(column, tuple(teams), on_lists_sheet=True))
    return found


def plain_rule(column: ColumnSpec) -> str:
    """A column's rule as a sentence for a spreadsheet (no Markdown)."""
    text = column.rule.replace("`", "")
    return text[0].upper() + text[1:] + "."


def _workbook(spec: SheetSpec, *, teams: Sequence[str], words: UploadWords | None) -> Workbook:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None  # a new Workbook always has one sheet
    sheet.title = spec.title
    workbook.properties.creator = STAMP_PREFIX
    workbook.properties.title = f"{spec.title} users"
    workbook.properties.subject = spec.description
    workbook.properties.keywords = template_stamp(spec)
    workbook.properties.created = _STAMP_TIME
    workbook.properties.modified = _STAMP_TIME
    lists = _lists_sheet(workbook, spec, teams) if teams else None
    lists_of = {d.column.key: d for d in dropdowns(spec, teams=teams)}
    for position, column in enumerate(spec.columns, start=1):
        cell = sheet.cell(row=1, column=position, value=column.sample_header)
        cell.fill, cell.font = HEADER_FILL, HEADER_FONT
        cell.alignment = Alignment(vertical="center")
        cell.comment = Comment(plain_rule(column), STAMP_PREFIX, width=260, height=90)
        letter = get_column_letter(position)
        width = 34 if column.kind is ColumnKind.EMAIL else 24
        sheet.column_dimensions[letter].width = max(width, len(column.sample_header) + 4)
        cells = f"{letter}2:{letter}{VALIDATED_ROWS + 1}"
        if column.kind is ColumnKind.PIN:
            # Text, so Excel keeps the leading zeros of 0042 (the column default covers new rows too).
            sheet.column_dimensions[letter].number_format = _TEXT
            for (row_cell,) in sheet[f"{letter}2:{letter}{TEMPLATE_ROWS + 1}"]:
                row_cell.number_format = _TEXT
            low, high = column.min_length or 4, column.max_length or 8
            pin_check = DataValidation(
                type="textLength", operator="between", formula1=str(low), formula2=str(high)
            )
            pin_check.errorStyle = "warning"
            _describe(pin_check, column, f"{low} to {high} digits, or leave blank to have one generated.")
            pin_check.add(cells)
            sheet.add_data_validation(pin_check)
        elif column.key in lists_of:
            dropdown = lists_of[column.key]
            source = (
                f"{quote_sheetname(LISTS_SHEET)}!$A$1:$A${len(dropdown.values)}"
                if dropdown.on_lists_sheet and lists is not None
                else '"' + ",".join(dropdown.values) + '"'
            )
            _dropdown(sheet, cells, source, dropdown)
    sheet.freeze_panes = "A2"
    sheet.row_dimensions[1].height = 22
    _instructions(workbook, spec, teams=teams, words=words)
    return workbook


def _lists_sheet(workbook: Workbook, spec: SheetSpec, teams: Sequence[str]) -> Worksheet:
    """A hidden sheet of dropdown values (column A), marked as ours by the stamp beside them (B1)."""
    lists: Worksheet = workbook.create_sheet(LISTS_SHEET)
    lists.sheet_state = "hidden"
    for row, name in enumerate(teams, start=1):
        lists.cell(row=row, column=1, value=neutralize(name))
    lists.cell(row=1, column=2, value=template_stamp(spec))
    return lists


def _dropdown(sheet: Worksheet, cells: str, source: str, dropdown: Dropdown) -> None:
    validation = DataValidation(type="list", formula1=source, allow_blank=True)
    validation.error = dropdown.error
    validation.errorTitle = dropdown.error_title
    _describe(validation, dropdown.column, dropdown.prompt)
    validation.add(cells)
    sheet.add_data_validation(validation)


def _describe(validation: DataValidation, column: ColumnSpec, hint: str) -> None:
    """The note Excel shows when a cell of the column is selected (at most 255 characters)."""
    validation.showInputMessage = True
    validation.showErrorMessage = True
    validation.promptTitle = column.header[:32]
    validation.prompt = hint[:255]
    if not validation.error:
        validation.error = hint[:255]


def _instructions(
    workbook: Workbook, spec: SheetSpec, *, teams: Sequence[str], words: UploadWords | None
) -> None:
    sheet = workbook.create_sheet(INSTRUCTIONS_SHEET)
    wrap = Alignment(wrap_text=True, vertical="top")
    sheet.append([f"{spec.title} users: how to fill in this sheet"])
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.append([spec.description])
    sheet.append(
        [
            f'One member per row on the sheet "{spec.title}", below its header row. Keep the headers; '
            "columns marked (required) must be filled in. Every cell is read as text."
        ]
    )
    sheet.append([])
    header_row = sheet.max_row + 1
    sheet.append(["Column", "Required", "Rule", "Examples", "Also accepted as", "Error codes"])
    for cell in sheet[header_row]:
        cell.fill, cell.font = HEADER_FILL, HEADER_FONT
    for column in spec.columns:
        sheet.append(
            [
                column.header,
                "yes" if column.required else "no",
                plain_rule(column),
                ", ".join(e for e in column.examples if e),
                ", ".join(column.aliases),
                ", ".join(code.value for code in error_codes_for(column.kind)),
            ]
        )
        for cell in sheet[sheet.max_row]:
            cell.alignment = wrap
    sheet.append([])
    sheet.append(["Error codes", "", "What it means"])
    for cell in sheet[sheet.max_row]:
        cell.font = Font(bold=True)
    codes = [code for column in spec.columns for code in error_codes_for(column.kind)]
    duplicate = (
        ErrorCode.EMAIL_DUPLICATE_IN_FILE
        if ErrorCode.EMAIL_DUPLICATE_IN_FILE in codes
        else ErrorCode.MEMBER_DUPLICATE_IN_FILE
    )
    for code in dict.fromkeys([*codes, duplicate, ErrorCode.MEMBER_EXISTS]):
        sheet.append([code.value, "", code.description])
    sheet.append([])
    team_note = (
        ", ".join(teams)
        if teams
        else "any existing team of your organization" + (f" ({words.teams_elsewhere})." if words else ".")
    )
    for label, text in (
        ("Teams:", team_note),
        *((("Upload with:", words.upload.format(user_type=spec.user_type.value)),) if words else ()),
        ("Template version:", template_stamp(spec)),
    ):
        sheet.append([label, "", text])
        sheet.cell(row=sheet.max_row, column=1).font = Font(bold=True)
    for letter, width in (("A", 26), ("B", 10), ("C", 60), ("D", 26), ("E", 40), ("F", 34)):
        sheet.column_dimensions[letter].width = width
