"""Regenerate the files tests/reading/test_sheet.py reads: `python tests/data/make_read_cases.py [DIR]`.

Deterministic: every run writes the same bytes (fixed zip timestamps and workbook properties),
and tests/reading/test_sheet.py checks that the committed files still match what this script builds.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

from openpyxl import Workbook

DATA_DIR = Path(__file__).resolve().parent
_ZIP_DATE = (2024, 1, 1, 0, 0, 0)
_CORE_TIMESTAMP = "2024-01-01T00:00:00Z"

Cell = str | int | float | None
# A sheet is its rows from row 1 down; `None` is a row with nothing in it.
Rows = Sequence[Sequence[Cell] | None]

PORTAL_HEADER = ("Name", "Email", "Role", "Team")
NO_PORTAL_HEADER = ("Name", "Team", "PIN")
# Every character here exists in Windows-1252, so the same people go into every format.
PEOPLE = (
    ("Zoë Ångström", "zoe@example.com", "Admin", "Sales"),
    ("José Müller", "jose@example.com", "Member", ""),
    ("Hopper, Grace", "grace@example.org", "member", "Research & Development"),
    ('Renée "Ré" Brügger €', "renee@example.com", "Member", "Finance"),
)
# The same logical sheet in each format: blank rows at 3, 4 (delimiters only), 7 and 8
# (whitespace only); row 5 holds a name with a line break, one CSV record over two lines.
BLANK_ROWS: Rows = (
    PORTAL_HEADER,
    ("Ada Lovelace", "ada@example.com", "Admin", "Sales"),
    None,
    ("", "", "", ""),
    ("Line\nBreak", "lb@example.com", "Member", ""),
    ("Bob Builder", "bob@example.com", "Member", "Ops"),
    None,
    ("  ", "\u00a0", " \t ", ""),
    ("Carol Chen", "carol@example.com", "Admin", ""),
)
STARTS_ROW_3: Rows = (
    None,
    None,
    PORTAL_HEADER,
    ("Ada Lovelace", "ada@example.com", "Admin", "Sales"),
    ("Grace Hopper", "grace@example.org", "Member", ""),
)
TEXT_VALUES: Rows = (
    PORTAL_HEADER,
    ("NA", "na@example.com", "Member", "NA"),
    ("None", "none@example.com", "Member", "None"),
    ("null", "null@example.com", "Member", "null"),
    ("N/A", "n-a@example.com", "Member", "N/A"),
    ("\u00a0 Padded Name \u00a0", "  padded@example.com ", " Member\t", "\u00a0"),
    ("Jose\u0301 Zoe\u0308", "nfd@example.com", "Member", ""),
    ('\'=HYPERLINK("http://evil.example","x")', "formula@example.com", "Member", "'+Sales"),
    ("'Ofa Tonga", "ofa@example.com", "Member", "'-"),
)


def csv_text(rows: Rows, *, delimiter: str = ",", lineterminator: str = "\r\n") -> str:
    """The rows as CSV text; a `None` row is an empty line."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=lineterminator)
    for row in rows:
        if row is None:
            out.write(lineterminator)
        else:
            writer.writerow(["" if c is None else c for c in row])
    return out.getvalue()


def deterministic_zip(data: bytes) -> bytes:
    """The same archive with fixed entry dates and workbook timestamps."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "docProps/core.xml":
                content = re.sub(
                    rb"(<dcterms:(created|modified)[^>]*>)[^<]*",
                    rb"\g<1>" + _CORE_TIMESTAMP.encode(),
                    content,
                )
            entry = zipfile.ZipInfo(info.filename, date_time=_ZIP_DATE)
            entry.compress_type = info.compress_type
            entry.external_attr = 0o644 << 16
            target.writestr(entry, content)
    return out.getvalue()


def xlsx_bytes(sheets: Sequence[tuple[str, Rows]]) -> bytes:
    """A workbook written by openpyxl, one worksheet per (title, rows)."""
    workbook = Workbook()
    workbook.remove(workbook.active)  # type: ignore[arg-type]
    workbook.properties.creator = "make_read_cases.py"
    for title, rows in sheets:
        sheet = workbook.create_sheet(title)
        for number, row in enumerate(rows, start=1):
            for column, value in enumerate(row or (), start=1):
                if value is not None:
                    sheet.cell(row=number, column=column, value=value)
    out = io.BytesIO()
    workbook.save(out)
    return deterministic_zip(out.getvalue())


def _ods_cell(value: Cell) -> str:
    if value is None or value == "":
        return "<table:table-cell/>"
    if isinstance(value, int | float):
        return (
            f'<table:table-cell office:value-type="float" office:value="{value}">'
            f"<text:p>{value}</text:p></table:table-cell>"
        )
    # A line break inside a cell is one paragraph per line in OpenDocument.
    paragraphs = "".join(f"<text:p>{escape(line)}</text:p>" for line in value.split("\n"))
    return f'<table:table-cell office:value-type="string">{paragraphs}</table:table-cell>'


def ods_bytes(title: str, rows: Rows) -> bytes:
    """A minimal OpenDocument spreadsheet; runs of empty rows use number-rows-repeated."""
    width = max(len(row) for row in rows if row is not None)
    xml_rows: list[str] = []
    blank_run = 0
    for row in (*rows, ()):
        if row is None:
            blank_run += 1
            continue
        if blank_run:
            xml_rows.append(
                f'<table:table-row table:number-rows-repeated="{blank_run}">'
                f'<table:table-cell table:number-columns-repeated="{width}"/></table:table-row>'
            )
            blank_run = 0
        if row:
            xml_rows.append(f"<table:table-row>{''.join(map(_ods_cell, row))}</table:table-row>")
    content = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<office:document-content"
        ' xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
        ' xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"'
        ' xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
        ' office:version="1.2">'
        f'<office:body><office:spreadsheet><table:table table:name="{escape(title)}">'
        f'<table:table-column table:number-columns-repeated="{width}"/>'
        f"{''.join(xml_rows)}"
        "</table:table></office:spreadsheet></office:body></office:document-content>\n"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"'
        ' manifest:version="1.2">'
        '<manifest:file-entry manifest:full-path="/" manifest:version="1.2"'
        ' manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>\n"
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        # The mimetype must be the first entry, stored uncompressed (ODF packaging rule).
        entries = (
            ("mimetype", "application/vnd.oasis.opendocument.spreadsheet", zipfile.ZIP_STORED),
            ("META-INF/manifest.xml", manifest, zipfile.ZIP_DEFLATED),
            ("content.xml", content, zipfile.ZIP_DEFLATED),
        )
        for name, text, compression in entries:
            entry = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            entry.compress_type = compression
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, text.encode("utf-8"))
    return out.getvalue()


def _utf8(text: str) -> bytes:
    return text.encode("utf-8")


def _portal(*, delimiter: str = ",", lineterminator: str = "\r\n") -> str:
    return csv_text((PORTAL_HEADER, *PEOPLE), delimiter=delimiter, lineterminator=lineterminator)


def _many_long_rows() -> str:
    rows = [PORTAL_HEADER] + [
        (f"Person {i}", f"p{i}@example.com", "Member", "", f"extra {i}") for i in range(1, 8)
    ]
    return csv_text(rows)


CASES: dict[str, Callable[[], bytes]] = {
    # Formats and encodings: the same four people in each.
    "portal-utf8.csv": lambda: _utf8(_portal(lineterminator="\n")),
    "portal-bom-utf8.csv": lambda: codecs.BOM_UTF8 + _utf8(_portal()),
    "portal-semicolon.csv": lambda: _utf8(_portal(delimiter=";")),
    # Excel's "CSV (Windows)" in a European locale: Windows-1252 and semicolons.
    "portal-cp1252.csv": lambda: _portal(delimiter=";").encode("cp1252"),
    # Excel's "Unicode Text": UTF-16 LE with a byte-order mark, tab-delimited.
    "portal-utf16-tab.txt": lambda: codecs.BOM_UTF16_LE + _portal(delimiter="\t").encode("utf-16-le"),
    "portal-pipe.csv": lambda: _utf8(_portal(delimiter="|", lineterminator="\n")),
    "portal.tsv": lambda: _utf8(_portal(delimiter="\t", lineterminator="\n")),
    "portal-upper-ext.CSV": lambda: _utf8(_portal()),
    "portal.xlsx": lambda: xlsx_bytes([("Members", (PORTAL_HEADER, *PEOPLE))]),
    "portal.xlsm": lambda: xlsx_bytes([("Members", (PORTAL_HEADER, *PEOPLE))]),
    "portal.ods": lambda: ods_bytes("Members", (PORTAL_HEADER, *PEOPLE)),
    # Workbooks.
    "no-portal.xlsx": lambda: xlsx_bytes(
        [
            (
                "Phones",
                (
                    NO_PORTAL_HEADER,
                    ("Front Desk Phone", "Support", "0042"),
                    ("Warehouse Phone 2", "", 1234),
                    ("Lobby Phone", "", None),
                    ("Float PIN Phone", "Ops", 5678.0),
                ),
            )
        ]
    ),
    "no-portal.ods": lambda: ods_bytes(
        "Phones",
        (
            NO_PORTAL_HEADER,
            ("Front Desk Phone", "Support", "0042"),
            ("Warehouse Phone 2", "", 1234),
            ("Lobby Phone", "", None),
            ("Float PIN Phone", "Ops", 5678.0),
        ),
    ),
    "portal-two-sheets.xlsx": lambda: xlsx_bytes(
        [
            ("Members", (PORTAL_HEADER, ("Ada Lovelace", "ada@example.com", "Admin", ""))),
            (
                "More members",
                (
                    PORTAL_HEADER,
                    ("Grace Hopper", "grace@example.org", "Member", "Navy"),
                    ("Alan Turing", "alan@example.org", "Member", ""),
                ),
            ),
        ]
    ),
    "portal-data-starts-row-3.xlsx": lambda: xlsx_bytes([("Members", STARTS_ROW_3)]),
    "portal-data-starts-row-3.csv": lambda: _utf8(csv_text([None, ("", "", "", ""), *STARTS_ROW_3[2:]])),
    "portal-data-starts-row-3.ods": lambda: ods_bytes("Members", STARTS_ROW_3),
    # Headers.
    "portal-aliases.csv": lambda: _utf8(
        csv_text(
            [
                ("E-mail Address", "Department Code", " Full Name ", "role (required)", "TEAM_NAME"),
                ("ada@example.com", "D-17", "Ada Lovelace", "Admin", "Sales"),
                ("grace@example.org", "D-42", "Grace Hopper", "Member", ""),
            ]
        )
    ),
    "portal-sample-headers.csv": lambda: _utf8(
        csv_text(
            [
                ("Name (required)", "Email (required)", "Role (required)", "Team", "Errors"),
                ("Ada Lovelace", "ada@example.com", "Admin", "Sales", "EMAIL_INVALID"),
            ]
        )
    ),
    # Blank rows and row numbers.
    "portal-blank-rows.csv": lambda: _utf8(csv_text(BLANK_ROWS)),
    "portal-blank-rows.xlsx": lambda: xlsx_bytes([("Members", BLANK_ROWS)]),
    "portal-blank-rows.ods": lambda: ods_bytes("Members", BLANK_ROWS),
    # Every cell is text.
    "portal-text-values.csv": lambda: _utf8(csv_text(TEXT_VALUES)),
    "portal-text-values.xlsx": lambda: xlsx_bytes([("Members", TEXT_VALUES)]),
    # Files that cannot be imported, and rows that do not fit the header.
    "portal-missing-email.csv": lambda: _utf8(
        csv_text([("Name", "Role", "Team"), ("Ada Lovelace", "Admin", "Sales")])
    ),
    "portal-empty.csv": lambda: b"",
    "portal-blank-only.csv": lambda: _utf8(csv_text([None, ("", "", ""), None])),
    "portal-header-only.csv": lambda: _utf8(csv_text([PORTAL_HEADER])),
    "portal-duplicate-email.csv": lambda: _utf8(
        csv_text(
            [
                ("Name", "Email", "E-mail", "Role"),
                ("Ada Lovelace", "ada@example.com", "ada@example.org", "Admin"),
            ]
        )
    ),
    "portal.pdf": lambda: b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< >>\n%%EOF\n",
    "portal-csv-named.xlsx": lambda: _utf8(_portal()),
    "portal-utf16-no-bom.csv": lambda: _portal().encode("utf-16-le"),
    "portal-undecodable.csv": lambda: _utf8(_portal())[:-2] + b"\x81\x8d\r\n",
    "portal-ragged.csv": lambda: _utf8(
        "Name,Email,Role,Team\r\n"
        "Short Row,short@example.com\r\n"
        "Long Row,long@example.com,Member,Sales,Extra,More\r\n"
        "Trailing Commas,tc@example.com,Member,,,,\r\n"
    ),
    "portal-ragged-many.csv": lambda: _utf8(_many_long_rows()),
}


def build_cases() -> dict[str, bytes]:
    """Every data file by name, as bytes."""
    return {name: build() for name, build in CASES.items()}


def main(out_dir: Path = DATA_DIR) -> None:
    """Write every data file into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in build_cases().items():
        (out_dir / name).write_bytes(data)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DATA_DIR)
