"""Workbooks around an import: rejected.xlsx with the bad cells marked, and the stamp of an upload."""

from __future__ import annotations

import re
import zipfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape as xml_escape

import defusedxml.ElementTree as DefusedET
import xlsxwriter
from xlsxwriter.worksheet import Worksheet

from importer.cells import neutralize
from importer.reports.samples import LISTS_SHEET, STAMP_PATTERN, dropdowns, template_stamp
from importer.settings import MAX_CELL_CHARS
from importer.sheets import ERRORS_HEADER, SheetSpec, header_lookup, load_sheet, normalize_header
from importer.values import ImportResult, RowError, UserType

# The look of Excel's built-in "Bad" cell style (light red fill, dark red text).
BAD_FORMAT = {"bg_color": "#FFC7CE", "font_color": "#9C0006"}
HEADER_FORMAT = {"bold": True, "font_color": "#FFFFFF", "bg_color": "#1F4E79", "valign": "vcenter"}
ERRORS_HEADER_FORMAT = {**HEADER_FORMAT, "bg_color": "#9C0006"}
COMMENT_AUTHOR = "member-importer"
REJECTED_SHEET_TITLE = "Rejected rows"
# Cell comments make a big workbook slow to open: the first rows get them; every row still has
# its bad cells filled and its messages in the Errors column.
COMMENTED_ROWS = 2_000
# A worksheet's rows, less the header: Excel's own limit (rejected.csv has every rejected row).
XLSX_MAX_ROWS = 1_048_575
# Widths are measured on the first rows only: enough to size columns, cheap for 10k rows.
_WIDTH_SAMPLE_ROWS = 500
_MIN_WIDTH, _MAX_WIDTH, _ERRORS_MAX_WIDTH = 10, 50, 100
# XML 1.0 cannot hold these: XlsxWriter writes them as _xHHHH_, which Excel and calamine decode.
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_CORE_PROPERTIES = "docProps/core.xml"
_CORE_KEYWORDS = "{http://schemas.openxmlformats.org/package/2006/metadata/core-properties}keywords"
_MAX_CORE_BYTES = 256 * 1024
_STAMP_EXTENSIONS = frozenset({".xlsx", ".xlsm"})
# Values only, never formulas, numbers or links guessed from text.
_WORKBOOK_OPTIONS = {
    "constant_memory": True,  # rows stream to disk as written
    "strings_to_numbers": False,
    "strings_to_formulas": False,
    "strings_to_urls": False,
}


def write_rejected_xlsx(
    result: ImportResult,
    path: Path,
    *,
    pin_columns: set[int],
    spec: SheetSpec | None = None,
    teams: Sequence[str] = (),
) -> None:
    """Write the rejected rows in the admin's own columns, each bad cell filled and commented, with
    the sample sheet's dropdowns (Role, the organization's teams) on the columns that hold them.

    XlsxWriter, row by row (3.0 s for 23,000 rejected rows; openpyxl took 5.5 s).
    """
    from importer.reports.files import PIN_REMOVED  # here, not at the top: report.py imports this module

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
    rejected = result.rejected_rows[:XLSX_MAX_ROWS]  # the report warns when rows are left out
    rows = [
        _row_texts(
            [row.values[i] if i < len(row.values) else "" for i in keep],
            errors_by_row[row.row_number],
            row.row_number,
            pins,
            PIN_REMOVED,
        )
        for row in rejected
    ]

    workbook = xlsxwriter.Workbook(str(path), _WORKBOOK_OPTIONS)
    try:
        sheet = workbook.add_worksheet(REJECTED_SHEET_TITLE)
        bad = workbook.add_format(BAD_FORMAT)
        for index, width in enumerate(_widths(headers, rows)):
            sheet.set_column(index, index, width)
        sheet.freeze_panes(1, 0)
        sheet.autofilter(0, 0, len(rows), len(headers))
        _write_header(workbook, sheet, headers)
        for count, (row, texts) in enumerate(zip(rejected, rows, strict=True), start=1):
            marked: dict[int, list[RowError]] = defaultdict(list)
            for error in errors_by_row[row.row_number]:
                if error.column in position:
                    marked[position[error.column]].append(error)
            for index, text in enumerate(texts):
                if index in marked:
                    if text:
                        _write_text(sheet, count, index, text, bad)
                    else:  # a blank cell, filled
                        sheet.write_blank(count, index, None, bad)
                    if count <= COMMENTED_ROWS:
                        note = "\n\n".join(f"{e.message} ({e.code.value})" for e in marked[index])
                        sheet.write_comment(count, index, *_comment(note))
                elif text:
                    _write_text(sheet, count, index, text)
        if spec is not None and rows:
            _add_dropdowns(workbook, sheet, spec, headers=headers, rows=len(rows), teams=teams)
    finally:
        workbook.close()


def _add_dropdowns(
    workbook: xlsxwriter.Workbook,
    sheet: Worksheet,
    spec: SheetSpec,
    *,
    headers: Sequence[str],
    rows: int,
    teams: Sequence[str],
) -> None:
    """The sample sheet's dropdowns on the rejected rows, in whichever column the admin put each."""
    lookup = header_lookup(spec)
    positions: dict[str, int] = {}
    for index, header in enumerate(headers):
        key = lookup.get(normalize_header(header))
        if key is not None:
            positions.setdefault(key, index)
    lists: Worksheet | None = None
    for dropdown in dropdowns(spec, teams=teams):
        column = positions.get(dropdown.column.key)
        if column is None:
            continue
        if dropdown.on_lists_sheet:
            if lists is None:  # hidden, marked as ours (the reader then keeps quiet about it)
                lists = workbook.add_worksheet(LISTS_SHEET)
                lists.hide()
                _write_text(lists, 0, 1, template_stamp(spec))
            for row, value in enumerate(dropdown.values):
                _write_text(lists, row, 0, xlsx_text(value))
            source = f"={LISTS_SHEET}!$A$1:$A${len(dropdown.values)}"
        else:
            source = '"' + ",".join(dropdown.values) + '"'
        sheet.data_validation(
            1,
            column,
            rows,
            column,
            {
                "validate": "list",
                "source": source,
                "input_title": dropdown.title,
                "input_message": dropdown.prompt,
                "error_title": dropdown.error_title,
                "error_message": dropdown.error,
            },
        )


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
    """A cell value as an inert string (a formula guard, Excel's length cap); the writer escapes it."""
    return _fit(neutralize(value))


def _fit(text: str) -> str:
    """Text cut to Excel's cell cap, which counts UTF-16 units (an emoji is two), as XlsxWriter does.

    Cut here, so XlsxWriter never cuts a text itself after _literal has looked at it.
    """
    if len(text) <= MAX_CELL_CHARS // 2:
        return text
    units = text.encode("utf-16-le")
    if len(units) <= 2 * MAX_CELL_CHARS:
        return text
    return units[: 2 * MAX_CELL_CHARS].decode("utf-16-le", errors="ignore")  # never half an emoji


_RUN_OPEN, _RUN_CLOSE = '<r><t xml:space="preserve">', "</t></r>"


def _literal(text: str) -> str:
    """Text XlsxWriter writes as the text it is (call it on text already cut by _fit).

    XlsxWriter copies a string that starts with `<r>` and ends with `</r>` into the sheet's XML
    unescaped, as rich text: a cell of the upload could inject markup, a formula among it. Every
    text that starts with `<r>` is therefore wrapped in a rich-text run of its own, escaped here;
    a run too long for a cell once escaped loses characters at its end, never its wrapping.
    """
    if not text.startswith("<r>"):
        return text
    while True:
        wrapped = f"{_RUN_OPEN}{xml_escape(text)}{_RUN_CLOSE}"
        over = len(wrapped.encode("utf-16-le")) // 2 - MAX_CELL_CHARS
        if over <= 0:
            return wrapped
        text = text[:-over]


def _write_text(sheet: Worksheet, row: int, column: int, text: str, *formats: object) -> None:
    """Write a text cell; anything XlsxWriter would cut or drop silently is an error instead."""
    status = sheet.write_string(row, column, _literal(text), *formats)
    if status != 0:
        raise ValueError(f"rejected.xlsx: cannot write row {row + 1}, column {column + 1} (status {status})")


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
    return _fit(_XML_ILLEGAL.sub("\ufffd", text))


def _write_header(workbook: xlsxwriter.Workbook, sheet: Worksheet, headers: Sequence[str]) -> None:
    header, errors_header = workbook.add_format(HEADER_FORMAT), workbook.add_format(ERRORS_HEADER_FORMAT)
    for index, text in enumerate(headers):
        _write_text(sheet, 0, index, xlsx_text(text), header)
    _write_text(sheet, 0, len(headers), ERRORS_HEADER, errors_header)
    sheet.write_comment(
        0,
        len(headers),
        *_comment(
            "What is wrong with each row. Fix the red cells (each has a note saying how) and upload "
            "this file again: this column is ignored, and rows already imported are skipped."
        ),
    )


def _comment(text: str) -> tuple[str, dict[str, object]]:
    """A note's text and its box: wide enough to read, tall enough for its lines."""
    lines = sum(1 + len(part) // 48 for part in text.split("\n"))
    size = {"author": COMMENT_AUTHOR, "width": 320, "height": min(400, 24 + 15 * lines)}
    return _plain(text), size


def _widths(headers: Sequence[str], rows: list[list[str]]) -> list[float]:
    """Column widths from the header and the first rows' values, within sensible bounds."""
    widths = [len(h) + 4 for h in (*headers, ERRORS_HEADER)]
    for texts in rows[:_WIDTH_SAMPLE_ROWS]:
        for index, text in enumerate(texts):
            longest = max((len(line) for line in text.split("\n")), default=0)
            widths[index] = max(widths[index], longest + 2)
    limits = [_MAX_WIDTH] * len(headers) + [_ERRORS_MAX_WIDTH]
    return [float(min(limit, max(_MIN_WIDTH, width))) for width, limit in zip(widths, limits, strict=True)]
