"""importer.reading.sheet: real files in, the rows and messages a user would see out.

The files in tests/data/ are built by tests/data/make_read_cases.py.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import sys
import unicodedata
import zipfile
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
import xlsxwriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook, load_workbook

from importer.cells import FORMULA_TRIGGERS, KEPT_AT_EDGES, TRIMMED, neutralize, trim, unguard
from importer.errors import (
    FileLevelError,
    LimitExceededError,
    MissingColumnsError,
    UnreadableFileError,
    UnsupportedFileError,
    WrongSheetTypeError,
)
from importer.reading.sheet import OpenedSheet, open_sheet
from importer.reports.samples import write_template
from importer.settings import Settings
from importer.sheets import load_sheet
from importer.store.orgs import list_members
from importer.values import Limit, Remedy, UserType, WarningCode
from tests.conftest import Org, do_import, errors_of

# Every test here runs twice: at the real block size and with blocks of 2 records.
pytestmark = pytest.mark.usefixtures("read_blocks")

PORTAL_EXPECTED_HEADERS = "Name (required), Email (required), Role (required), Team (optional)"
# (row, name, email, role, team) of the four people every format case holds.
PEOPLE_ROWS = [
    (2, "Zoë Ångström", "zoe@example.com", "Admin", "Sales"),
    (3, "José Müller", "jose@example.com", "Member", ""),
    (4, "Hopper, Grace", "grace@example.org", "member", "Research & Development"),
    (5, 'Renée "Ré" Brügger €', "renee@example.com", "Member", "Finance"),
]

Row = tuple[object, ...]


def read_rows(
    path: Path,
    user_type: UserType = UserType.PORTAL,
    *,
    sheet_name: str | None = None,
    settings: Settings | None = None,
    chunk_rows: int = 1000,
) -> tuple[OpenedSheet, list[Row]]:
    """Open a file and read all its rows as (row number, *cells in the sheet's column order)."""
    spec = load_sheet(user_type)
    sheet = open_sheet(path, spec, sheet_name=sheet_name, settings=settings or Settings())
    rows: list[Row] = []
    for chunk in sheet.iter_chunks(chunk_rows=chunk_rows):
        frame = chunk.frame[[key for key in spec.keys if key in chunk.frame.columns]]
        rows.extend((number, *cells) for number, *cells in frame.itertuples(name=None))
    return sheet, rows


def file_error(
    path: Path,
    user_type: UserType = UserType.PORTAL,
    *,
    sheet_name: str | None = None,
    settings: Settings | None = None,
) -> FileLevelError:
    """The error opening (and reading) a file raises; fails the test if there is none."""
    with pytest.raises(FileLevelError) as caught:
        read_rows(path, user_type, sheet_name=sheet_name, settings=settings)
    return caught.value


# --- formats and encodings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "encoding", "delimiter"),
    [
        ("portal-utf8.csv", "utf-8", ","),
        ("portal-bom-utf8.csv", "utf-8-sig", ","),
        ("portal-semicolon.csv", "utf-8", ";"),
        ("portal-cp1252.csv", "cp1252", ";"),
        ("portal-utf16-tab.txt", "utf-16", "\t"),
        ("portal-pipe.csv", "utf-8", "|"),
        ("portal.tsv", "utf-8", "\t"),
        ("portal-upper-ext.CSV", "utf-8", ","),
        ("portal.xlsx", None, None),
        ("portal.xlsm", None, None),
        ("portal.ods", None, None),
    ],
)
def test_every_format_reads_the_same_people(
    data_dir: Path, name: str, encoding: str | None, delimiter: str | None
) -> None:
    sheet, rows = read_rows(data_dir / name)
    assert rows == PEOPLE_ROWS
    assert (sheet.encoding, sheet.delimiter, sheet.header_row) == (encoding, delimiter, 1)
    assert sheet.headers == ("Name", "Email", "Role", "Team")
    assert sheet.columns == {"name": 0, "email": 1, "role": 2, "team": 3}


@pytest.mark.parametrize(
    "name",
    ["portal-utf8.csv", "portal-bom-utf8.csv", "portal-utf16-tab.txt", "portal.xlsx", "portal.ods"],
)
def test_utf8_utf16_and_workbooks_read_without_warnings(data_dir: Path, name: str) -> None:
    sheet, _ = read_rows(data_dir / name)
    assert sheet.warnings == []


def test_cp1252_is_decoded_and_reported(data_dir: Path) -> None:
    sheet, rows = read_rows(data_dir / "portal-cp1252.csv")
    assert [(row, name) for row, name, *_ in rows] == [(r[0], r[1]) for r in PEOPLE_ROWS]
    assert len(sheet.warnings) == 1
    warning = sheet.warnings[0]
    assert "portal-cp1252.csv" in warning
    assert "Windows-1252" in warning
    assert "cp1252" in warning
    assert "CSV UTF-8" in warning


def test_chunks_hold_text_frames_indexed_by_row(data_dir: Path) -> None:
    spec = load_sheet(UserType.PORTAL)
    sheet = open_sheet(data_dir / "portal.xlsx", spec, settings=Settings())
    chunks = list(sheet.iter_chunks(chunk_rows=3))
    assert [list(c.frame.index) for c in chunks] == [[2, 3, 4], [5]]
    frame = pd.concat([c.frame for c in chunks])
    assert list(frame.columns) == ["name", "email", "role", "team"]
    assert {type(v) for v in frame.to_numpy().ravel()} == {str}
    assert [r for c in chunks for r in c.raw] == [tuple(r[1:]) for r in PEOPLE_ROWS]
    with pytest.raises(RuntimeError):
        next(sheet.iter_chunks(chunk_rows=3))


# --- workbooks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["no-portal.xlsx", "no-portal.ods"])
def test_pins_keep_leading_zeros_and_numbers_lose_no_decimal(data_dir: Path, name: str) -> None:
    sheet, rows = read_rows(data_dir / name, UserType.NO_PORTAL)
    assert rows == [
        (2, "Front Desk Phone", "Support", "0042"),
        (3, "Warehouse Phone 2", "", "1234"),
        (4, "Lobby Phone", "", ""),
        (5, "Float PIN Phone", "Ops", "5678"),
    ]
    assert sheet.warnings == []


def test_first_sheet_is_read_with_a_warning_naming_it(data_dir: Path) -> None:
    sheet, rows = read_rows(data_dir / "portal-two-sheets.xlsx")
    assert rows == [(2, "Ada Lovelace", "ada@example.com", "Admin", "")]
    assert sheet.warnings == ["portal-two-sheets.xlsx has 2 sheets; read the first, 'Members'."]
    assert [(w.code, w.remedy) for w in sheet.warnings] == [(WarningCode.SHEET_CHOSEN, Remedy.CHOOSE_SHEET)]


def _filled_sample(path: Path, user_type: UserType, *, teams: list[str], stamped: bool = True) -> Path:
    """The sample workbook as `importer template ... --format xlsx` writes it, with one member typed in."""
    write_template(load_sheet(user_type), path, fmt="xlsx", teams=teams)
    book = load_workbook(path)
    book.worksheets[0].append(
        ["Ada Lovelace", "ada@example.com", "Member", *teams[:1]]
        if user_type is UserType.PORTAL
        else ["Lobby Phone", *teams[:1], "0042"]
    )
    if not stamped:  # as a program that drops the document properties would save it
        book.properties.keywords = None
    book.save(path)
    return path


@pytest.mark.parametrize("user_type", list(UserType))
@pytest.mark.parametrize("teams", [[], ["Sales", "Support"]], ids=["no-teams", "teams-sheet"])
@pytest.mark.parametrize("stamped", [True, False], ids=["stamped", "unstamped"])
def test_the_sample_workbooks_own_sheets_bring_no_warning(
    tmp_path: Path, user_type: UserType, teams: list[str], stamped: bool
) -> None:
    path = _filled_sample(tmp_path / "filled.xlsx", user_type, teams=teams, stamped=stamped)
    sheet, rows = read_rows(path, user_type)
    assert len(rows) == 1
    assert sheet.warnings == []


def test_a_real_sheet_beside_the_sample_workbooks_own_is_still_named(tmp_path: Path) -> None:
    path = _filled_sample(tmp_path / "filled.xlsx", UserType.PORTAL, teams=["Sales"])
    book = load_workbook(path)
    book.create_sheet("More members").append(["Name", "Email", "Role"])
    book.save(path)
    sheet, _ = read_rows(path)
    assert sheet.warnings == ["filled.xlsx has 4 sheets; read the first, 'Portal Access'."]
    assert [w.remedy for w in sheet.warnings] == [Remedy.CHOOSE_SHEET]


def test_a_sheet_named_instructions_that_is_not_ours_is_a_real_sheet(tmp_path: Path) -> None:
    path = tmp_path / "own.xlsx"
    book = Workbook()
    first = book.active
    assert first is not None
    first.title = "Members"
    first.append(["Name", "Email", "Role"])
    first.append(["Ada", "ada@example.com", "Admin"])
    book.create_sheet("Instructions").append(["Fill in one row per person."])
    book.save(path)
    sheet, _ = read_rows(path)
    assert sheet.warnings == ["own.xlsx has 2 sheets; read the first, 'Members'."]
    assert [w.remedy for w in sheet.warnings] == [Remedy.CHOOSE_SHEET]


def test_sheet_is_chosen_by_name(data_dir: Path) -> None:
    sheet, rows = read_rows(data_dir / "portal-two-sheets.xlsx", sheet_name="More members")
    assert rows == [
        (2, "Grace Hopper", "grace@example.org", "Member", "Navy"),
        (3, "Alan Turing", "alan@example.org", "Member", ""),
    ]
    assert sheet.warnings == []


def test_missing_sheet_lists_the_sheets(data_dir: Path) -> None:
    error = file_error(data_dir / "portal-two-sheets.xlsx", sheet_name="Staff")
    assert str(error) == (
        "portal-two-sheets.xlsx has no sheet named 'Staff'; its sheets are 'Members', 'More members'."
    )
    assert error.remedy is Remedy.CHOOSE_SHEET


@pytest.mark.parametrize(
    "name",
    [
        "portal-data-starts-row-3.csv",
        "portal-data-starts-row-3.xlsx",
        "portal-data-starts-row-3.ods",
    ],
)
def test_header_below_blank_rows_keeps_spreadsheet_row_numbers(data_dir: Path, name: str) -> None:
    sheet, rows = read_rows(data_dir / name)
    assert (sheet.header_row, rows) == (
        3,
        [
            (4, "Ada Lovelace", "ada@example.com", "Admin", "Sales"),
            (5, "Grace Hopper", "grace@example.org", "Member", ""),
        ],
    )


def test_ods_file_is_a_valid_package(data_dir: Path) -> None:
    with zipfile.ZipFile(data_dir / "portal.ods") as archive:
        first = archive.infolist()[0]
        assert (first.filename, first.compress_type) == ("mimetype", zipfile.ZIP_STORED)
        assert archive.read("mimetype") == b"application/vnd.oasis.opendocument.spreadsheet"
        assert {"META-INF/manifest.xml", "content.xml"} <= set(archive.namelist())


# --- headers -----------------------------------------------------------------------------------


def test_header_aliases_map_and_unknown_columns_warn(data_dir: Path) -> None:
    spec = load_sheet(UserType.PORTAL)
    sheet = open_sheet(data_dir / "portal-aliases.csv", spec, settings=Settings())
    assert sheet.columns == {"email": 0, "name": 2, "role": 3, "team": 4}
    assert [sheet.header_of(k) for k in spec.keys] == [
        "Full Name",
        "E-mail Address",
        "role (required)",
        "TEAM_NAME",
    ]
    chunks = list(sheet.iter_chunks(chunk_rows=10))
    frame = pd.concat([c.frame for c in chunks])[list(spec.keys)]
    assert list(frame.itertuples(name=None)) == [
        (2, "Ada Lovelace", "ada@example.com", "Admin", "Sales"),
        (3, "Grace Hopper", "grace@example.org", "Member", ""),
    ]
    # The unknown column is still in the raw cells, in the file's order.
    assert [r for c in chunks for r in c.raw] == [
        ("ada@example.com", "D-17", "Ada Lovelace", "Admin", "Sales"),
        ("grace@example.org", "D-42", "Grace Hopper", "Member", ""),
    ]
    assert sheet.warnings == ["Ignored column not in the Portal Access sheet: 'Department Code'."]


def test_sample_headers_match_and_report_errors_column_is_ignored_quietly(
    data_dir: Path,
) -> None:
    sheet, rows = read_rows(data_dir / "portal-sample-headers.csv")
    assert rows == [(2, "Ada Lovelace", "ada@example.com", "Admin", "Sales")]
    assert sheet.columns == {"name": 0, "email": 1, "role": 2, "team": 3}
    assert sheet.warnings == []


@pytest.mark.parametrize(
    ("name", "columns"),
    [
        ("portal-utf8.csv", "the columns 'Email', 'Role'"),
        ("portal.xlsx", "the columns 'Email', 'Role'"),
        ("portal-aliases.csv", "the columns 'E-mail Address', 'role (required)'"),
    ],
)
def test_a_portal_sheet_read_as_no_portal_is_refused_naming_its_type(
    data_dir: Path, name: str, columns: str
) -> None:
    # Read as No Portal Access, every row would become a phone user with a generated PIN.
    error = file_error(data_dir / name, UserType.NO_PORTAL)
    assert isinstance(error, WrongSheetTypeError)
    assert (error.expected, error.looks_like) == (UserType.NO_PORTAL, UserType.PORTAL)
    assert str(error) == (
        f"{name} looks like a Portal Access sheet, not a No Portal Access sheet: it has {columns}, "
        "which only a Portal Access sheet has. Import it as a Portal Access sheet (type portal), "
        "or remove those columns."
    )


def test_a_no_portal_sheet_read_as_portal_says_which_type_it_looks_like(data_dir: Path) -> None:
    error = file_error(data_dir / "no-portal.xlsx", UserType.PORTAL)
    assert isinstance(error, MissingColumnsError)
    assert (error.expected, error.looks_like) == (UserType.PORTAL, UserType.NO_PORTAL)
    assert "missing required columns Email, Role in the header row (row 1)." in str(error)
    assert (
        "It looks like a No Portal Access sheet: it has the column 'PIN', which only a No Portal "
        "Access sheet has. Import it as a No Portal Access sheet (type no-portal)."
    ) in str(error)


@pytest.mark.parametrize("user_type", list(UserType))
def test_a_filled_in_sample_sheet_read_as_the_other_type_names_its_stamp(
    tmp_path: Path, user_type: UserType
) -> None:
    path = write_template(load_sheet(user_type), tmp_path / "filled.xlsx", fmt="xlsx")
    book = load_workbook(path)
    book.worksheets[0].append(
        ["Ada Lovelace", "ada@example.com", "Member"]
        if user_type is UserType.PORTAL
        else ["Lobby", "", "0042"]
    )
    book.save(path)
    other = UserType.NO_PORTAL if user_type is UserType.PORTAL else UserType.PORTAL
    error = file_error(path, other)
    assert isinstance(error, WrongSheetTypeError | MissingColumnsError)
    assert error.looks_like is user_type
    assert f", and the stamp of the {load_sheet(user_type).title} sample sheet" in str(error)
    assert f"(type {user_type.value})" in str(error)


# --- blank rows and row numbers ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["portal-blank-rows.csv", "portal-blank-rows.xlsx", "portal-blank-rows.ods"])
def test_blank_rows_are_skipped_but_counted(data_dir: Path, name: str) -> None:
    sheet, rows = read_rows(data_dir / name, chunk_rows=2)
    assert rows == [
        (2, "Ada Lovelace", "ada@example.com", "Admin", "Sales"),
        (5, "Line\nBreak", "lb@example.com", "Member", ""),
        (6, "Bob Builder", "bob@example.com", "Member", "Ops"),
        (9, "Carol Chen", "carol@example.com", "Admin", ""),
    ]
    assert sheet.warnings == []


@pytest.mark.parametrize(
    ("name", "user_type"),
    [
        ("portal-header-only.csv", UserType.PORTAL),
        ("header-and-blank-rows.csv", UserType.PORTAL),
        ("portal-template.xlsx", UserType.PORTAL),
        ("no-portal-template.xlsx", UserType.NO_PORTAL),  # PIN cells formatted as text, all empty
    ],
)
def test_a_sheet_with_no_rows_below_the_header_is_a_file_level_error(
    data_dir: Path, tmp_path: Path, name: str, user_type: UserType
) -> None:
    path = data_dir / name
    if name == "header-and-blank-rows.csv":
        path = tmp_path / name
        path.write_text("Name,Email,Role,Team\n,,,\n\n  ,\t,,\n", encoding="utf-8")
    elif name.endswith("template.xlsx"):
        path = write_template(load_sheet(user_type), tmp_path / name, fmt="xlsx", teams=["Sales"])
    error = file_error(path, user_type)
    assert str(error) == (
        f"{name} has no rows below the header (row 1): nothing to import. "
        "Fill in one member per row below the header and upload it again."
    )


# --- every cell is text ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["portal-text-values.csv", "portal-text-values.xlsx"])
def test_cells_are_trimmed_nfc_text(data_dir: Path, name: str) -> None:
    sheet, rows = read_rows(data_dir / name)
    assert rows == [
        (2, "NA", "na@example.com", "Member", "NA"),
        (3, "None", "none@example.com", "Member", "None"),
        (4, "null", "null@example.com", "Member", "null"),
        (5, "N/A", "n-a@example.com", "Member", "N/A"),
        (6, "Padded Name", "padded@example.com", "Member", ""),
        (7, "Jos\u00e9 Zo\u00eb", "nfd@example.com", "Member", ""),
        # A user's file: every apostrophe is the user's (only our rejected files carry guards).
        (8, '\'=HYPERLINK("http://evil.example","x")', "formula@example.com", "Member", "'+Sales"),
        (9, "'Ofa Tonga", "ofa@example.com", "Member", "'-"),
    ]
    assert sheet.warnings == []


# --- files that cannot be imported -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "user_type", "missing"),
    [
        ("portal-missing-email.csv", UserType.PORTAL, "missing required column Email in"),
        ("no-portal.xlsx", UserType.PORTAL, "missing required columns Email, Role in"),
    ],
)
def test_missing_required_columns_are_named(
    data_dir: Path, name: str, user_type: UserType, missing: str
) -> None:
    error = file_error(data_dir / name, user_type)
    assert isinstance(error, MissingColumnsError)
    assert missing in str(error)
    assert "header row (row 1)" in str(error)
    assert str(error).endswith(f"Expected headers for a Portal Access sheet: {PORTAL_EXPECTED_HEADERS}.")


@pytest.mark.parametrize(
    ("name", "error_type", "says"),
    [
        ("portal-empty.csv", FileLevelError, ["is empty", PORTAL_EXPECTED_HEADERS]),
        ("portal-blank-only.csv", FileLevelError, ["is empty", PORTAL_EXPECTED_HEADERS]),
        (
            "portal-duplicate-email.csv",
            FileLevelError,
            ["'Email' (column 2)", "'E-mail' (column 3)", "both mean Email"],
        ),
        ("portal.pdf", UnsupportedFileError, ["'.pdf'", ".csv", ".xlsx", ".ods"]),
        ("portal-csv-named.xlsx", FileLevelError, ["give it the .csv extension"]),
        ("portal-utf16-no-bom.csv", UnreadableFileError, ["byte-order mark", "CSV UTF-8"]),
        ("portal-undecodable.csv", UnreadableFileError, ["0x81", "CSV UTF-8"]),
        ("does-not-exist.csv", UnreadableFileError, ["cannot read the file"]),
    ],
)
def test_file_level_errors_are_one_clear_line(
    data_dir: Path, name: str, error_type: type[Exception], says: list[str]
) -> None:
    error = file_error(data_dir / name)
    assert isinstance(error, error_type)
    message = str(error)
    assert name in message
    assert "\n" not in message
    assert [s for s in says if s not in message] == []


@pytest.mark.parametrize("name", ["portal-empty.csv", "portal-blank-only.csv"])
def test_an_empty_file_says_to_start_from_the_sample_sheet(data_dir: Path, name: str) -> None:
    error = file_error(data_dir / name)
    assert isinstance(error, FileLevelError)
    assert "Start from the Portal Access sample sheet" in str(error)
    assert (error.remedy, error.remedy_arg) == (Remedy.START_FROM_TEMPLATE, UserType.PORTAL)
    assert "`" not in str(error) and "importer " not in str(error)


@pytest.mark.parametrize(
    ("settings", "limit", "allowed", "says"),
    [
        (Settings(max_file_bytes=100), Limit.FILE_BYTES, 100, "the limit is 100"),
        (Settings(max_columns=3), Limit.COLUMNS, 3, "the limit is 3"),
        (Settings(max_rows=3), Limit.ROWS, 3, "more than the limit of 3 rows"),
        (Settings(max_cell_chars=11), Limit.CELL_CHARS, 11, "row 2, column 1 has 12 characters"),
    ],
)
def test_limits_raise_naming_the_limit(
    data_dir: Path, settings: Settings, limit: Limit, allowed: int, says: str
) -> None:
    error = file_error(data_dir / "portal-utf8.csv", settings=settings)
    assert isinstance(error, LimitExceededError)
    assert (error.limit, error.allowed, error.remedy, error.remedy_arg) == (
        limit,
        allowed,
        Remedy.RAISE_LIMIT,
        limit,
    )
    assert says in str(error) and "--" not in str(error)


def test_limits_allow_a_file_at_the_limit(data_dir: Path) -> None:
    limits = Settings(max_columns=4, max_rows=4, max_cell_chars=22)
    _, rows = read_rows(data_dir / "portal-utf8.csv", settings=limits)
    assert rows == PEOPLE_ROWS


# --- rows that do not fit the header -----------------------------------------------------------


def test_short_rows_are_padded_and_long_rows_warn(data_dir: Path) -> None:
    sheet, rows = read_rows(data_dir / "portal-ragged.csv")
    assert rows == [
        (2, "Short Row", "short@example.com", "", ""),
        (3, "Long Row", "long@example.com", "Member", "Sales"),
        (4, "Trailing Commas", "tc@example.com", "Member", ""),
    ]
    # Empty cells past the header (trailing delimiters) are not worth a warning.
    assert sheet.warnings == [
        "Row 3 has more cells than the header row; the cells past column 4 were ignored."
    ]


def test_many_long_rows_warn_five_times_then_count(data_dir: Path) -> None:
    sheet, rows = read_rows(data_dir / "portal-ragged-many.csv")
    assert [row for row, *_ in rows] == [2, 3, 4, 5, 6, 7, 8]
    assert [w.split(" has ")[0] for w in sheet.warnings] == [
        "Row 2",
        "Row 3",
        "Row 4",
        "Row 5",
        "Row 6",
        "7 rows in all had more cells than the header row; the extras were ignored.",
    ]


# --- the data files ----------------------------------------------------------------------------


def _load_generator(data_dir: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_read_cases", data_dir / "make_read_cases.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _contents(data: bytes) -> object:
    """A zip's members (so zlib versions do not matter), else the bytes themselves."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return data
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(i.filename, archive.read(i)) for i in archive.infolist()]


def test_data_files_match_their_generator(data_dir: Path) -> None:
    built: dict[str, bytes] = _load_generator(data_dir).build_cases()
    stale = [
        name
        for name, data in built.items()
        if not (data_dir / name).is_file() or _contents((data_dir / name).read_bytes()) != _contents(data)
    ]
    assert stale == [], "run: python tests/data/make_read_cases.py"


@pytest.mark.parametrize(
    "last_line",
    [
        'Bob,"bob@example.com\n',  # would be read as an email with no role
        '"Bob Brügger,bob@example.com,Member\n',  # would be read as a name with no email or role
        '"Bob Brügger,bob@example.com,Member',  # and without a final line break
        '"Bob Brügger,bob@example.com,Member\r\n',
        'Bob,bob@example.com,"Member',
    ],
)
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252", "utf-16"])
def test_a_quote_left_open_on_the_last_line_is_never_closed(
    tmp_path: Path, last_line: str, encoding: str
) -> None:
    path = tmp_path / "last.csv"
    path.write_bytes(f"Name,Email,Role\nAda,ada@example.com,Admin\n{last_line}".encode(encoding))
    error = file_error(path)
    assert isinstance(error, UnreadableFileError)
    assert str(error) == (
        "last.csv: the quote that opens in row 3 (line 3) is never closed, so the rest of the file "
        "would be read as one cell. Close that quote, or remove it, and upload the file again."
    )


@pytest.mark.parametrize(
    "last_line",
    ['"Bob",bob@example.com,Member', 'Bob,"bob@example.com",Member\n', 'Bob "B",bob@example.com,Member'],
)
def test_quotes_closed_on_the_last_line_are_read(tmp_path: Path, last_line: str) -> None:
    path = tmp_path / "last.csv"
    path.write_text(f"Name,Email,Role\nAda,ada@example.com,Admin\n{last_line}", encoding="utf-8")
    _, rows = read_rows(path)
    assert rows[-1][2:] == ("bob@example.com", "Member")


@pytest.mark.parametrize("cell", ["header", "data"])
def test_a_cell_past_the_csv_modules_own_limit_is_the_cell_limit(tmp_path: Path, cell: str) -> None:
    # 131,072 characters is the csv module's own cap on a field; past it, the cell limit answers.
    huge = "x" * 140_000
    path = tmp_path / "huge.csv"
    header, row = (
        ("Name,Email,Role," + huge, "Ada,ada@example.com,Admin,")
        if cell == "header"
        else ("Name,Email,Role", f"{huge},ada@example.com,Admin")
    )
    path.write_text(f"{header}\n{row}\n", encoding="utf-8")
    before = csv.field_size_limit()
    error = file_error(path)
    assert isinstance(error, LimitExceededError)
    message = str(error)
    assert message.startswith("huge.csv: ") and "\n" not in message and len(message) < 300
    assert "the limit is 32,767 (Excel's own)." in message
    assert (error.limit, error.allowed) == (Limit.CELL_CHARS, 32_767)
    assert csv.field_size_limit() == before


def test_the_library_leaves_the_csv_modules_limit_alone(tmp_path: Path) -> None:
    # Process-wide state belongs to the entry points (the CLI raises it for --max-cell-chars).
    path = tmp_path / "people.csv"
    path.write_text("Name,Email,Role\nAda,ada@example.com,Admin\n", encoding="utf-8")
    before = csv.field_size_limit()
    read_rows(path, settings=Settings(max_cell_chars=before + 10))
    assert csv.field_size_limit() == before


@pytest.mark.parametrize(
    ("layout", "by_line"),
    [
        ("one line a row", True),
        ("CRLF, a BOM, blank lines and no final line break", True),
        ("a line break inside a quoted cell", False),
        ("a lone CR ending a row", False),
    ],
)
def test_rows_read_back_by_number_are_the_rows_first_read(tmp_path: Path, layout: str, by_line: bool) -> None:
    # Duplicates found late take back rows read long before; they must come back exactly as read.
    rows = [f"P{i}, p{i}@example.com ,=Member,Sales" for i in range(12)]
    text = "Name,Email,Role,Team\n" + "\n".join(rows) + "\n"
    if layout.startswith("CRLF"):
        text = "\ufeff" + text.replace("\n", "\r\n").replace("P3,", "\r\nP3,").rstrip("\r\n")
    elif layout.startswith("a line break"):
        text = text.replace("P7,", '"P7\nsecond line",')
    elif layout.startswith("a lone CR"):
        text = text.replace("P5,", "P4b,x@example.com,Member,\rP5,")
    path = tmp_path / "back.csv"
    path.write_bytes(text.encode("utf-8"))
    opened = open_sheet(path, load_sheet(UserType.PORTAL), settings=Settings())
    first = {
        row: chunk.row(i)
        for chunk in opened.iter_chunks(chunk_rows=5)
        for i, row in enumerate(chunk.frame.index)
    }

    wanted = set(list(first)[1::3]) | {max(first)}
    reader = opened._pick.__self__  # type: ignore[union-attr]
    assert reader.one_line_records is by_line
    assert opened.pick_rows(wanted) == {row: first[row] for row in wanted}
    assert opened.pick_rows({max(first) + 5}) == {}  # a row past the end is not there


def test_a_file_changed_before_rows_are_read_back_is_an_error(tmp_path: Path) -> None:
    # Rows read back at the end (late duplicates) must be the rows first read, or nothing is written.
    path = tmp_path / "people.csv"
    rows = ["Name,Email,Role", "Ada,ada@example.com,Admin", "Bob,bob@example.com,Member"]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    opened = open_sheet(path, load_sheet(UserType.PORTAL), settings=Settings())
    list(opened.iter_chunks(chunk_rows=5))
    rows[1] = "Evelyn,evelyn@example.com,Admin"  # saved again meanwhile
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(UnreadableFileError, match=r"people\.csv changed while it was being imported"):
        opened.pick_rows({2})


# --- the formula guard: dropped only from files the importer wrote ------------------------------

GUARDED_ROWS = [  # (name, email, team) as the user gave them
    ("'=Formula Fan", "'-ann@example.com", "'+Sales"),
    ("-Minus", "'=bob@example.com", "@Sales"),
    ("''-Two", "o'brien@example.com", "'"),
]


def test_apostrophes_in_a_users_file_are_part_of_the_cells(tmp_path: Path) -> None:
    # A valid local part may start with an apostrophe; only the importer's own files carry guards.
    path = tmp_path / "people.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(
            [("Name", "Email", "Role", "Team"), *[(n, e, "Member", t) for n, e, t in GUARDED_ROWS]]
        )
    _, rows = read_rows(path)
    assert rows == [(row, n, e, "Member", t) for row, (n, e, t) in enumerate(GUARDED_ROWS, start=2)]


@pytest.mark.parametrize("errors_header", ["Errors", " errors "])
def test_the_guard_is_dropped_from_a_file_with_our_errors_column(tmp_path: Path, errors_header: str) -> None:
    path = tmp_path / "rejected.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("Name", "Email", "Role", "Team", errors_header))
        writer.writerows(
            (neutralize(n), neutralize(e), "Member", neutralize(t), "Row 2: ...") for n, e, t in GUARDED_ROWS
        )
    opened, rows = read_rows(path)
    assert rows == [(row, n, e, "Member", t) for row, (n, e, t) in enumerate(GUARDED_ROWS, start=2)]
    assert opened.pick_rows({3}) == {3: ("-Minus", "'=bob@example.com", "Member", "@Sales", "Row 2: ...")}


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=12, alphabet=st.sampled_from("'=+-@\t\r\nab ")) | st.text(max_size=6))
def test_the_guard_and_its_inverse_give_back_every_value(value: str) -> None:
    guarded = neutralize(value)
    assert unguard(guarded) == value
    assert not guarded.startswith(FORMULA_TRIGGERS)


@pytest.mark.parametrize("kind", ["rejected.csv", "rejected.xlsx"])
def test_an_address_starting_with_an_apostrophe_survives_the_rejected_files(
    org: Org, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "people.csv"
    path.write_text(
        "Name,Email,Role,Team\nAnn,'-ann@example.com,Membr,\nBob,'=bob@example.com,Member,\n",
        encoding="utf-8",
    )
    first = do_import(org, path, tmp_path)
    assert (first.created, errors_of(first)) == (1, [(2, "Role", "role.invalid")])
    assert first.report_dir is not None
    rejected = first.report_dir / kind
    if kind == "rejected.csv":
        rejected.write_text(
            rejected.read_text(encoding="utf-8-sig").replace("Membr", "Member"), encoding="utf-8"
        )
    else:
        book = load_workbook(rejected)
        book.worksheets[0]["C2"] = "Member"
        book.save(rejected)
    again = do_import(org, rejected, tmp_path)
    assert (again.created, again.rejected) == (1, 0)
    emails = {m.email for m in list_members(org.engine, org.name)}
    assert {"'-ann@example.com", "'=bob@example.com"} <= emails
    assert "-ann@example.com" not in emails and "=bob@example.com" not in emails


# --- trimming: spaces, tabs and line breaks at a cell's edges, nothing else -----------------------

# Characters str.strip() removes that are no space: they must reach the rules and be refused.
EDGE_CONTROLS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\u2028", "\u2029"]
# What trimming removes: every Unicode space (the no-break ones too), tabs, CR and LF.
EDGE_SPACES = [" ", "\t", "\r", "\n", "\u00a0", "\u2007", "\u202f", "\u3000", "\u2003", "\u1680"]


def test_trimming_removes_spaces_tabs_and_line_breaks_and_nothing_else() -> None:
    chars = [chr(c) for c in range(sys.maxunicode + 1)]
    zs = {c for c in chars if unicodedata.category(c) == "Zs"}
    assert set(TRIMMED) == zs | {"\t", "\r", "\n"}  # as the README says
    assert set(KEPT_AT_EDGES) == {c for c in chars if c.isspace()} - set(TRIMMED)  # strip() alone drops them
    assert set(EDGE_CONTROLS) == set(KEPT_AT_EDGES)


@pytest.mark.parametrize("char", EDGE_SPACES)
def test_spaces_tabs_and_line_breaks_at_a_cells_edges_are_trimmed(tmp_path: Path, char: str) -> None:
    path = tmp_path / "spaces.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(
            [("Name", "Email", "Role"), (f"{char}Ada{char}", f"ada@example.com{char}", f"{char}Admin")]
        )
    _, rows = read_rows(path)
    assert rows == [(2, "Ada", "ada@example.com", "Admin")]


def test_control_characters_at_a_cells_edges_are_kept_and_refused(org: Org, tmp_path: Path) -> None:
    path = tmp_path / "controls.csv"
    rows = [("Name", "Email", "Role", "Team")]
    for char in EDGE_CONTROLS:
        rows += [
            (f"Ada{char}", "ada@example.com", "Admin", ""),
            (f"{char}Bob", f"bob@example.com{char}", "Member", ""),
            ("Cy", f"{char}cy@example.com", f"Member{char}", f"{char}Sales"),
        ]
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    _, read = read_rows(path)
    assert read == [(number, *cells) for number, cells in enumerate(rows[1:], start=2)]
    result = do_import(org, path, tmp_path)
    codes = [(e.column, e.code.value) for e in result.errors if e.code.value != "email.duplicate_in_file"]
    assert codes == [
        ("Name", "name.invalid"),
        ("Name", "name.invalid"),
        ("Email", "email.invalid"),
        ("Email", "email.invalid"),
        ("Role", "role.invalid"),
        ("Team", "team.unknown"),
    ] * len(EDGE_CONTROLS)
    assert result.created == 0


@pytest.mark.parametrize("char", [*EDGE_CONTROLS, *EDGE_SPACES[4:]], ids=lambda c: f"U+{ord(c):04X}")
def test_a_workbook_cell_is_trimmed_as_a_csv_cell(tmp_path: Path, char: str) -> None:
    # XlsxWriter, not openpyxl: it writes the C0 controls XML cannot hold as _xHHHH_, as Excel does.
    book = xlsxwriter.Workbook(str(tmp_path / "edges.xlsx"))
    sheet = book.add_worksheet()
    for row, cells in enumerate(
        [["Name", "Email", "Role"], [f"{char}Ada{char}", f"ada@example.com{char}", "Admin"]]
    ):
        for column, cell in enumerate(cells):
            sheet.write_string(row, column, cell)
    book.close()
    _, rows = read_rows(tmp_path / "edges.xlsx")
    assert rows == [(2, trim(f"{char}Ada{char}"), trim(f"ada@example.com{char}"), "Admin")]
    assert (rows[0][1] == "Ada") is (char in EDGE_SPACES)
