"""Hostile and broken input (issue 6): a clear answer for every file, nothing lost, nothing leaked.

The small files are in tests/data/hostile-* (built by tests/data/make_hostile_cases.py); the large
ones (a 200 MB zip bomb, a zip of 10,001 parts) are built by fixtures.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import socket
import struct
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import python_calamine
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from importer.errors import (
    FileLevelError,
    ImporterError,
    LimitExceededError,
    UnreadableFileError,
    UnsupportedFileError,
)
from importer.reading.sheet import open_sheet
from importer.settings import Settings
from importer.sheets import load_sheet
from importer.store.engine import open_database
from importer.store.models import Batch, Member
from importer.store.orgs import create_organization, list_members
from importer.values import Limit, Remedy, UserType
from tests.conftest import DATA_DIR, Org, do_import, errors_of

SHEET = "xl/worksheets/sheet1.xml"
REPORT_FILES = ("report.html", "errors.csv", "rejected.csv", "summary.json")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_hostile_cases", DATA_DIR / "make_hostile_cases.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES = _generator()


def read_all(path: Path, user_type: UserType = UserType.PORTAL, *, settings: Settings | None = None) -> int:
    """Open and read every row of a file; the number of data rows."""
    sheet = open_sheet(path, load_sheet(user_type), settings=settings or Settings())
    return sum(len(chunk.raw) for chunk in sheet.iter_chunks(chunk_rows=1000))


def refusal(path: Path, *, settings: Settings | None = None) -> FileLevelError:
    """The file-level error reading a file raises (fails the test if there is none)."""
    with pytest.raises(FileLevelError) as caught:
        read_all(path, settings=settings)
    message = str(caught.value)
    assert path.name in message
    assert "\n" not in message and "\r" not in message
    return caught.value


def counts(org: Org) -> tuple[int, int]:
    """(members, batches) in the database."""
    with Session(org.engine) as session:
        members = session.scalar(select(func.count()).select_from(Member)) or 0
        batches = session.scalar(select(func.count()).select_from(Batch)) or 0
    return members, batches


def _contents(data: bytes) -> object:
    """A zip's parts (so zlib versions do not matter), else the bytes themselves."""
    if not data.startswith(b"PK"):
        return data
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def test_data_files_match_their_generator() -> None:
    stale = [
        name
        for name, data in CASES.build_cases().items()
        if not (DATA_DIR / name).is_file() or _contents((DATA_DIR / name).read_bytes()) != _contents(data)
    ]
    assert stale == [], "run: python tests/data/make_hostile_cases.py"


# --- limits: each just over, and just at ----------------------------------------------------------


def _unpacked(path: Path) -> int:
    with zipfile.ZipFile(path) as archive:
        return sum(info.file_size for info in archive.infolist())


@pytest.fixture(scope="module")
def repetitive_workbook(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A real workbook whose sheet is 2 MB of near-identical rows: (path, its sheet's compression ratio)."""
    rows = [CASES.PORTAL_HEADER] + [("Same Name", "same@example.com", "Member", "")] * 12_000
    path = tmp_path_factory.mktemp("ratio") / "repetitive.xlsx"
    path.write_bytes(CASES.xlsx_bytes(CASES.sheet_xml(rows)))
    with zipfile.ZipFile(path) as archive:
        sheet = archive.getinfo("xl/worksheets/sheet1.xml")
    assert sheet.file_size > 1024 * 1024  # big enough for the ratio to count
    return path, sheet.file_size / sheet.compress_size


@pytest.mark.parametrize(
    ("name", "over", "at", "limit"),
    [
        ("portal-utf8.csv", Settings(max_rows=3), Settings(max_rows=4), Limit.ROWS),
        ("portal.xlsx", Settings(max_rows=3), Settings(max_rows=4), Limit.ROWS),
        ("portal.ods", Settings(max_rows=3), Settings(max_rows=4), Limit.ROWS),
        ("portal-utf8.csv", Settings(max_columns=3), Settings(max_columns=4), Limit.COLUMNS),
        ("portal.xlsx", Settings(max_columns=3), Settings(max_columns=4), Limit.COLUMNS),
        ("portal.ods", Settings(max_columns=3), Settings(max_columns=4), Limit.COLUMNS),
        ("portal-utf8.csv", Settings(max_cell_chars=21), Settings(max_cell_chars=22), Limit.CELL_CHARS),
        ("portal.xlsx", Settings(max_cell_chars=21), Settings(max_cell_chars=22), Limit.CELL_CHARS),
        ("portal.xlsx", Settings(max_cells=19), Settings(max_cells=20), Limit.CELLS),
        ("portal.ods", Settings(max_cells=19), Settings(max_cells=20), Limit.CELLS),
        ("hostile-no-ref-tall.xlsx", Settings(max_cells=15_599), Settings(max_cells=15_600), Limit.CELLS),
    ],
)
@pytest.mark.usefixtures("read_blocks")
def test_each_limit_refuses_a_file_just_over_it_naming_the_limit(
    data_dir: Path, name: str, over: Settings, at: Settings | None, limit: Limit
) -> None:
    path = data_dir / name
    error = refusal(path, settings=over)
    assert isinstance(error, LimitExceededError)
    assert (error.limit, error.allowed) == (limit, getattr(over, limit.value))
    assert (error.remedy, error.remedy_arg) == (Remedy.RAISE_LIMIT, limit)
    assert "limit" in str(error) and "--" not in str(error)
    if at is not None:
        assert read_all(path, settings=at) >= 0


@pytest.mark.parametrize("name", ["portal-utf8.csv", "portal.xlsx", "portal.ods", "hostile-encrypted.xlsx"])
def test_file_size_limit_just_over_and_at(data_dir: Path, name: str) -> None:
    path = data_dir / name
    size = path.stat().st_size
    error = refusal(path, settings=Settings(max_file_bytes=size - 1))
    assert isinstance(error, LimitExceededError)
    assert str(error) == f"{name} is {size:,} bytes; the limit is {size - 1:,}."
    assert (error.limit, error.allowed) == (Limit.FILE_BYTES, size - 1)
    if name != "hostile-encrypted.xlsx":
        assert read_all(path, settings=Settings(max_file_bytes=size)) == 4


def test_unpacked_size_limit_is_read_from_the_zip_directory(data_dir: Path) -> None:
    path = data_dir / "portal.xlsx"
    total = _unpacked(path)
    error = refusal(path, settings=Settings(max_unpacked_bytes=total - 1))
    assert isinstance(error, LimitExceededError)
    assert f"unpacks to {total:,} bytes" in str(error)
    assert f"limit on a workbook's unpacked size is {total - 1:,} bytes" in str(error)
    assert (error.limit, error.allowed) == (Limit.UNPACKED_BYTES, total - 1)
    assert read_all(path, settings=Settings(max_unpacked_bytes=total)) == 4


def test_compression_ratio_limit_just_over_and_at(repetitive_workbook: tuple[Path, float]) -> None:
    path, ratio = repetitive_workbook
    error = refusal(path, settings=Settings(max_compression_ratio=math.ceil(ratio) - 1))
    assert isinstance(error, LimitExceededError)
    assert "xl/worksheets/sheet1.xml" in str(error)
    assert f"a compression ratio of {ratio:,.0f} to 1" in str(error)
    assert (error.limit, error.allowed) == (Limit.COMPRESSION_RATIO, math.ceil(ratio) - 1)
    assert read_all(path, settings=Settings(max_compression_ratio=math.ceil(ratio))) == 12_000


@pytest.mark.usefixtures("read_blocks")
def test_blank_lines_without_end_are_refused_by_the_row_limit(tmp_path: Path) -> None:
    path = tmp_path / "blank-flood.csv"
    path.write_bytes(b"Name,Email,Role\r\n" + b"\r\n" * 1000)
    error = refusal(path, settings=Settings(max_rows=100))
    assert isinstance(error, LimitExceededError)
    assert "blank rows included" in str(error) and error.limit is Limit.ROWS


@pytest.mark.usefixtures("read_blocks")
def test_a_line_longer_than_any_row_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "one-long-line.csv"
    path.write_bytes(b"Name,Email,Role\r\n" + b"x" * 10_000 + b"\r\n")
    error = refusal(path, settings=Settings(max_columns=4, max_cell_chars=100))
    assert isinstance(error, LimitExceededError)
    assert "line 2 is longer than 414 characters" in str(error)
    assert "more than 4 cells of 100 characters can hold" in str(error)
    assert (error.limit, error.allowed) == (Limit.CELL_CHARS, 100)


@pytest.mark.usefixtures("read_blocks")
def test_a_cell_past_the_csv_modules_own_limit_names_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "huge-cell.csv"
    path.write_bytes(b'Name,Email,Role\r\n"' + (b"x" * 50 + b"\r\n") * 4_000 + b'",a@example.com,Member\r\n')
    error = refusal(path, settings=Settings(max_cell_chars=100))
    assert isinstance(error, LimitExceededError)
    assert "(Excel's own)." in str(error) and error.limit is Limit.CELL_CHARS
    assert "never closed" in str(error)


# --- zip bombs: refused from the zip directory, before anything is unpacked -----------------------


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An .xlsx whose sheet is 200 MB of zeros in one cell (about 200 KB packed): a zip bomb."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.xlsx"
    template = zipfile.ZipFile(io.BytesIO(CASES.xlsx_bytes(CASES.sheet_xml([]))))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in template.infolist():
            if info.filename != SHEET:
                archive.writestr(info, template.read(info))
        with archive.open(SHEET, "w") as part:
            opening = '<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>'
            part.write(f'<worksheet xmlns="{CASES._MAIN_NS}">{opening}'.encode())
            block = b"0" * (1024 * 1024)
            for _ in range(200):
                part.write(block)
            part.write(b"</t></is></c></row></sheetData></worksheet>")
    return path


# Time is a guard against hanging, not a speed target (that is the benchmark's job); "before
# parsing" is asserted by the `calamine_never_called` fixture instead.
HANG_GUARD_SECONDS = 10


@pytest.fixture
def calamine_never_called(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the file reaches python-calamine's parser."""

    def refuse(*args: object, **kwargs: object) -> None:
        pytest.fail("the file reached calamine: it should have been refused before parsing")

    monkeypatch.setattr(
        "importer.reading.sources.workbook.python_calamine.CalamineWorkbook.from_path", refuse
    )


@pytest.mark.usefixtures("calamine_never_called")
def test_zip_bomb_is_refused_before_parsing(zip_bomb: Path) -> None:
    started = time.perf_counter()
    error = refusal(zip_bomb)
    seconds = time.perf_counter() - started
    assert isinstance(error, LimitExceededError)
    assert SHEET in str(error)
    assert "unpacks from" in str(error) and "a compression ratio of 1,0" in str(error)
    assert "the limit is 200 to 1." in str(error)
    assert (error.limit, error.allowed) == (Limit.COMPRESSION_RATIO, 200)
    assert seconds < HANG_GUARD_SECONDS


@pytest.mark.usefixtures("calamine_never_called")
def test_zip_bomb_over_the_unpacked_limit_names_that_limit(zip_bomb: Path) -> None:
    started = time.perf_counter()
    limits = Settings(max_unpacked_bytes=100 * 1024 * 1024, max_compression_ratio=10_000)
    error = refusal(zip_bomb, settings=limits)
    assert isinstance(error, LimitExceededError)
    assert error.limit is Limit.UNPACKED_BYTES and "unpacks to" in str(error)
    assert time.perf_counter() - started < HANG_GUARD_SECONDS


def test_zip_bomb_through_the_pipeline_writes_nothing(org: Org, zip_bomb: Path, tmp_path: Path) -> None:
    before = counts(org)
    with pytest.raises(LimitExceededError):
        do_import(org, zip_bomb, tmp_path)
    assert counts(org) == before


def test_a_part_that_lies_about_its_size_is_refused(zip_bomb: Path, tmp_path: Path) -> None:
    """The directory says 1,000 bytes; the data unpacks to 200 MB: refused, not unpacked."""
    data = bytearray(zip_bomb.read_bytes())
    name = SHEET.encode()
    for signature, size_at, name_at in ((b"PK\x01\x02", 24, 46), (b"PK\x03\x04", 22, 30)):
        at = data.find(signature + b"")
        while at >= 0:
            length = struct.unpack_from("<H", data, at + (28 if signature == b"PK\x01\x02" else 26))[0]
            if data[at + name_at : at + name_at + length] == name:
                struct.pack_into("<I", data, at + size_at, 1000)
            at = data.find(signature, at + 4)
    liar = tmp_path / "liar.xlsx"
    liar.write_bytes(bytes(data))
    started = time.perf_counter()
    error = refusal(liar)
    assert isinstance(error, UnreadableFileError)
    assert "damaged" in str(error)
    assert time.perf_counter() - started < HANG_GUARD_SECONDS
    # calamine, the second line of defence, refuses it as fast
    with pytest.raises(python_calamine.CalamineError):
        python_calamine.CalamineWorkbook.from_path(str(liar)).get_sheet_by_name("Members")


@pytest.mark.usefixtures("calamine_never_called")
def test_a_zip_of_too_many_parts_is_refused_from_its_end_record(tmp_path: Path) -> None:
    path = tmp_path / "parts.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        for number in range(10_001):
            archive.writestr(f"p/{number}.xml", b"")
    started = time.perf_counter()
    error = refusal(path)
    assert isinstance(error, UnreadableFileError)
    assert "10,001 parts" in str(error)
    assert time.perf_counter() - started < HANG_GUARD_SECONDS


# --- sheets calamine would try to allocate billions of cells for (it aborts the process) ----------


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("hostile-far-cell.xlsx", "as far right as column 16,384"),
        ("hostile-no-ref-wide.xlsx", "as far right as column 300"),
        ("hostile-repeat-columns.ods", "as far right as column 16,384"),
        ("hostile-tall-wide.xlsx", "1,048,576 rows by 200 columns (209,715,200 cells"),
        ("hostile-repeat-rows.ods", "1,000,002 rows by 150 columns"),
    ],
)
@pytest.mark.usefixtures("calamine_never_called")
def test_sheets_too_large_to_hold_are_refused_before_calamine_reads_them(
    data_dir: Path, name: str, says: str
) -> None:
    started = time.perf_counter()
    error = refusal(data_dir / name)
    assert isinstance(error, LimitExceededError)
    assert says in str(error)
    assert error.limit is (Limit.COLUMNS if "as far right" in says else Limit.CELLS)
    assert time.perf_counter() - started < HANG_GUARD_SECONDS


def test_the_scan_measures_sheets_exactly_as_calamine_does(data_dir: Path) -> None:
    """The limits above would be wrong if the scan and calamine disagreed on a sheet's size."""
    for name in (
        "hostile-no-ref-tall.xlsx",
        "hostile-no-ref-wide.xlsx",
        "portal-blank-rows.xlsx",
        "portal.ods",
        # Formatted empty cells to column XFD hold no value: calamine does not place them.
        "portal-packaged.xlsx",
        "portal-formatted-no-ref.xlsx",
        "portal-formatted-blanks.xls",
    ):
        sheet = python_calamine.CalamineWorkbook.from_path(str(data_dir / name)).get_sheet_by_index(0)
        rows, columns = sheet.height, sheet.width
        assert (
            read_all(data_dir / name, settings=Settings(max_cells=rows * columns, max_columns=columns)) >= 0
        )
        with pytest.raises(LimitExceededError):
            read_all(data_dir / name, settings=Settings(max_cells=rows * columns - 1, max_columns=columns))


# --- .xls: measured from its records before calamine reads them (it parses every sheet at once) --


@pytest.mark.parametrize(
    ("name", "error_type", "says"),
    [
        ("hostile-xls-huge-dimensions.xls", UnreadableFileError, "declares 4,294,967,295 rows by 65,535"),
        ("hostile-xls-far-column.xls", LimitExceededError, "as far right as column 65,536 (in sheet 1)"),
        ("hostile-xls-last-cell.xls", LimitExceededError, "as far right as column 256 (in sheet 1)"),
    ],
)
@pytest.mark.usefixtures("calamine_never_called")
def test_xls_sheets_too_large_to_hold_are_refused_before_calamine_reads_them(
    data_dir: Path, name: str, error_type: type[FileLevelError], says: str
) -> None:
    started = time.perf_counter()
    error = refusal(data_dir / name)
    assert isinstance(error, error_type)
    assert says in str(error)
    assert time.perf_counter() - started < HANG_GUARD_SECONDS


def test_a_crafted_xls_gets_one_line_not_an_abort(data_dir: Path, tmp_path: Path) -> None:
    """5.6 KB that calamine would answer with a 11 PB allocation, which aborts the process (134)."""
    url = f"sqlite:///{tmp_path / 'importer.db'}"
    engine = open_database(url)
    create_organization(engine, "Acme", owner_email="olive@acme.example", owner_name="Olive")
    engine.dispose()
    command = [sys.executable, "-m", "importer", "--db", url, "import", "--type", "portal", "--org", "Acme"]
    done = subprocess.run(
        [*command, "--as", "olive@acme.example", str(data_dir / "hostile-xls-huge-dimensions.xls")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1
    assert "hostile-xls-huge-dimensions.xls is not a valid .xls workbook" in done.stderr


@pytest.mark.parametrize(
    ("name", "rows"),
    [
        ("portal-packaged.xlsx", 1),  # pictures, macros, printer settings, UTF-16 customXml, a thumbnail
        ("portal-thumbnail.ods", 1),  # as LibreOffice saves every .ods
        ("portal-formatted-blanks.xls", 1),  # formatted empty cells to IV65536, declared as used
        ("portal-formatted-no-ref.xlsx", 1),
    ],
)
def test_parts_no_reader_parses_and_formatted_empty_cells_do_not_count(
    data_dir: Path, name: str, rows: int
) -> None:
    assert read_all(data_dir / name) == rows


def test_a_sheet_is_measured_wherever_its_relationship_puts_it(data_dir: Path) -> None:
    """Only the parts a reader parses are inspected, found as it finds them: a sheet filed as a picture
    is still a sheet."""
    error = refusal(data_dir / "hostile-far-cell-elsewhere.xlsx")
    assert isinstance(error, LimitExceededError)
    assert "as far right as column 16,384 (in xl/media/image1.png)" in str(error)


# --- XML attacks ----------------------------------------------------------------------------------


XML_ATTACKS = [
    "hostile-billion-laughs.xlsx",
    "hostile-billion-laughs-sheet.xlsx",
    "hostile-xxe.xlsx",
    "hostile-xxe-sheet.xlsx",
    "hostile-xxe.ods",
    "hostile-doctype-only.xlsx",
]


@pytest.mark.parametrize("name", XML_ATTACKS)
@pytest.mark.usefixtures("calamine_never_called")
def test_xml_with_a_dtd_is_refused_fast_and_never_expanded(data_dir: Path, name: str) -> None:
    started = time.perf_counter()
    error = refusal(data_dir / name)
    assert isinstance(error, UnreadableFileError)
    assert "<!DOCTYPE>" in str(error)
    assert "root:" not in str(error)
    assert time.perf_counter() - started < HANG_GUARD_SECONDS


@pytest.mark.parametrize("name", XML_ATTACKS)
def test_calamine_alone_never_expands_entities_either(data_dir: Path, name: str) -> None:
    """The second line of defence: without our check, calamine refuses the entities or ignores the DTD."""
    started = time.perf_counter()
    refused, cells = "", []
    try:
        workbook = python_calamine.CalamineWorkbook.from_path(str(data_dir / name))
        cells = [str(c) for row in workbook.get_sheet_by_index(0).iter_rows() for c in row]
    except python_calamine.CalamineError as exc:
        refused = str(exc)
    assert time.perf_counter() - started < HANG_GUARD_SECONDS
    assert "entity" in refused or not refused
    assert not [c for c in cells if "root:" in c or "lol" in c or len(c) > 100]


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP port on 127.0.0.1 that records whatever connects to it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    seen: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            seen.append(connection.recv(1024))
            connection.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], seen
    stop.set()
    thread.join()
    server.close()


def test_external_entities_reach_neither_the_network_nor_the_disk(
    tmp_path: Path, listener: tuple[int, list[bytes]]
) -> None:
    port, seen = listener
    prolog = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE sst [\n'
        ' <!ENTITY file SYSTEM "file:///etc/passwd">\n'
        f' <!ENTITY web SYSTEM "http://127.0.0.1:{port}/leak">\n]>\n'
    )
    path = tmp_path / "xxe-live.xlsx"
    path.write_bytes(CASES.entity_sheet_in_shared_strings(prolog, "&web;", "&file;"))
    with pytest.raises(UnreadableFileError):
        read_all(path)
    with pytest.raises(python_calamine.CalamineError):
        python_calamine.CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python()
    # A probe of our own, after the reads: the listener accepts in order, so any connection the
    # reads made (synchronously, before it) is seen first.
    with socket.create_connection(("127.0.0.1", port)) as probe:
        probe.sendall(b"probe")
    deadline = time.monotonic() + 30
    while b"probe" not in seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [b"probe"]


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("hostile-utf16-sheet.xlsx", "is UTF-16 XML"),
        ("hostile-latin1-sheet.xlsx", "is XML in 'ISO-8859-1'"),
        ("hostile-lt-in-tag.xlsx", "a '<' inside a tag"),
        ("hostile-gt-in-tag.xlsx", "a '>' inside a quoted value"),
    ],
)
def test_xml_a_scan_could_misread_is_refused(data_dir: Path, name: str, says: str) -> None:
    error = refusal(data_dir / name)
    assert isinstance(error, UnreadableFileError)
    assert says in str(error)


# --- broken files: a clear one-line answer, nothing written ---------------------------------------


@pytest.mark.parametrize(
    ("name", "error_type", "says"),
    [
        ("portal-empty.csv", FileLevelError, "is empty: there is no header row"),
        ("hostile-empty.xlsx", FileLevelError, "is empty: there is no header row"),
        ("portal-blank-only.csv", FileLevelError, "is empty"),
        ("hostile-unterminated-quote.csv", UnreadableFileError, "opens in row 3 (line 3) is never closed"),
        ("hostile-duplicate-headers.csv", FileLevelError, "both mean Name"),
        ("hostile-random.csv", UnreadableFileError, "neither UTF-8 nor Windows-1252"),
        ("hostile-random.xlsx", UnsupportedFileError, "neither a zip package nor an Excel file"),
        ("portal-csv-named.xlsx", UnsupportedFileError, "give it the .csv extension"),
        ("hostile-csv-named.ods", UnsupportedFileError, "give it the .csv extension"),
        ("hostile-encrypted.xlsx", UnreadableFileError, "is password-protected"),
        ("hostile-encrypted.ods", UnreadableFileError, "is password-protected"),
        ("hostile-ole-junk.xlsx", UnsupportedFileError, "older Office file"),
        ("hostile-xlsx-named.xls", UnsupportedFileError, "give it the right extension"),
        ("hostile-zip-not-workbook.xlsx", UnreadableFileError, "damaged or not a spreadsheet"),
        ("portal-undecodable.csv", UnreadableFileError, "neither UTF-8 nor Windows-1252"),
        ("hostile-utf16-no-bom.csv", UnreadableFileError, "UTF-16 without a byte-order mark"),
    ],
)
def test_broken_files_get_one_clear_line_and_write_nothing(
    org: Org, data_dir: Path, tmp_path: Path, name: str, error_type: type[Exception], says: str
) -> None:
    before = counts(org)
    with pytest.raises(ImporterError) as caught:
        do_import(org, data_dir / name, tmp_path)
    error = caught.value
    assert isinstance(error, error_type)
    assert isinstance(error, FileLevelError)
    assert name in str(error) and says in str(error)
    assert "\n" not in str(error)
    assert counts(org) == before
    assert not (tmp_path / "reports").exists()


def test_a_real_office_encrypted_workbook_says_password_protected(data_dir: Path) -> None:
    """calamine agrees the generated container is an encrypted workbook (it checks its streams)."""
    with pytest.raises(python_calamine.PasswordError):
        python_calamine.CalamineWorkbook.from_path(str(data_dir / "hostile-encrypted.xlsx"))


def test_ragged_files_are_answered_row_by_row(org: Org, data_dir: Path, tmp_path: Path) -> None:
    # A header-only file is a file-level error (tests/test_pipeline.py).
    ragged = do_import(org, data_dir / "portal-ragged.csv", tmp_path)
    assert (ragged.rows, ragged.created, ragged.rejected) == (3, 2, 1)
    assert errors_of(ragged) == [(2, "Role", "role.missing")]
    assert ragged.warnings == [
        "Row 3 has more cells than the header row; the cells past column 4 were ignored."
    ]


def test_a_quote_closed_further_down_joins_rows_into_one_rejected_cell(
    org: Org, tmp_path: Path, write_csv
) -> None:  # type: ignore[no-untyped-def]
    """What any CSV reader does; the joined cell is that row's error, and nothing is created from it."""
    path = write_csv(
        "late-quote.csv",
        "Name,Email,Role,Team",
        '"Grace Hopper,grace@example.org,Member,',
        'Alan Turing,"alan@example.org",Member,',
        "Ada Lovelace,ada@example.com,Member,",
    )
    result = do_import(org, path, tmp_path)
    assert (result.rows, result.created, result.rejected) == (2, 1, 1)
    assert next(code for row, _, code in errors_of(result) if row == 2) == "name.invalid"


# --- markup and control characters, through the whole pipeline ------------------------------------


def test_control_bidi_and_zero_width_characters_are_row_errors(
    org: Org, data_dir: Path, tmp_path: Path
) -> None:
    result = do_import(org, data_dir / "hostile-controls.csv", tmp_path)
    assert errors_of(result) == [
        *[(row, "Name", "name.invalid") for row in range(2, 12)],
        (12, "Email", "email.invalid"),
        (13, "Email", "email.invalid"),
        (14, "Email", "email.invalid"),
        (17, "Role", "role.invalid"),
        (17, "Team", "team.unknown"),
    ]
    created = {m.email: m.name for m in list_members(org.engine, org.name)}
    # no-break spaces are trimmed like spaces; markup is stored exactly as given
    assert created["nbsp@example.com"] == "No Break"
    assert created["markup@example.com"] == "<script>alert('name')</script>"
    html = (result.report_dir / "report.html").read_text(encoding="utf-8")  # type: ignore[operator]
    assert "<img src=x" not in html and "<b>Member</b>" not in html and "<script>alert" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_control_characters_do_not_break_the_csv_reports(org: Org, data_dir: Path, tmp_path: Path) -> None:
    result = do_import(org, data_dir / "hostile-controls.csv", tmp_path)
    folder = result.report_dir
    assert folder is not None
    errors = (folder / "errors.csv").read_text(encoding="utf-8-sig")
    with io.StringIO(errors, newline="") as f:
        import csv

        rows = list(csv.reader(f))
    assert rows[0] == ["row", "column", "value", "code", "message"]
    assert len(rows) == 1 + len(result.errors)
    json.loads((folder / "summary.json").read_text(encoding="utf-8"))


# --- look-alike addresses -------------------------------------------------------------------------


def test_look_alike_addresses_are_never_the_existing_member(
    org: Org, data_dir: Path, tmp_path: Path, write_csv
) -> None:  # type: ignore[no-untyped-def]
    first = do_import(
        org, write_csv("ali.csv", "Name,Email,Role,Team", "Ali,ali@example.com,Member,"), tmp_path
    )
    assert first.created == 1
    result = do_import(org, data_dir / "hostile-lookalike.csv", tmp_path)
    skipped = {s.row_number: s.code.value for s in result.skipped}
    assert skipped == {5: "member.exists"}  # ALI@example.com, and nothing else
    rejected = {e.row_number for e in result.errors}
    created = {m.email for m in list_members(org.engine, org.name)}
    for row, address in (
        (2, "al\u0131@example.com"),
        (3, "\uff41li@example.com"),
        (4, "\u0430li@example.com"),
    ):
        assert row in rejected or address in created, address
    ali = [m for m in list_members(org.engine, org.name) if m.email == "ali@example.com"]
    assert len(ali) == 1 and ali[0].name == "Ali"


# --- Excel coercions ------------------------------------------------------------------------------


def test_pins_stored_as_numbers_keep_their_digits_or_explain(
    org: Org, data_dir: Path, tmp_path: Path
) -> None:
    result = do_import(org, data_dir / "hostile-pin-numbers.xlsx", tmp_path, user_type=UserType.NO_PORTAL)
    assert errors_of(result) == [
        (3, "PIN", "pin.invalid"),
        (4, "PIN", "pin.invalid"),
        (5, "PIN", "pin.invalid"),
    ]
    messages = {e.row_number: e.message for e in result.errors}
    assert "leading zeros" in messages[3]
    assert "number" in messages[4]
    assert sorted(m.name for m in list_members(org.engine, org.name) if m.email is None) == [
        "Six Digit Phone",
        "Text Phone",
    ]


def test_dates_numbers_and_booleans_where_text_belongs_are_text(
    org: Org, data_dir: Path, tmp_path: Path
) -> None:
    result = do_import(org, data_dir / "hostile-dates-as-text.xlsx", tmp_path)
    assert errors_of(result) == [
        (2, "Email", "email.invalid"),
        (2, "Role", "role.invalid"),
        (2, "Team", "team.unknown"),
    ]
    assert result.rejected_rows[0].values == ("2024-01-01", "2024-01-01 12:00:00", "TRUE", "3.25")
    assert result.created == 1


# --- secrets --------------------------------------------------------------------------------------


def test_pins_appear_in_no_report_and_no_error_message(org: Org, tmp_path: Path, write_csv) -> None:  # type: ignore[no-untyped-def]
    pins = ["8675309", "739164", "4815162342", "31337x", "0042"]
    path = write_csv(
        "phones.csv",
        "Name,Team,PIN",
        "Desk,Support,8675309",
        "Lobby,,739164",
        "Lab,Nowhere,0042",
        "Long,,4815162342",
        "Letters,,31337x",
        "Blank,,",
    )
    result = do_import(org, path, tmp_path, user_type=UserType.NO_PORTAL)
    assert (result.created, result.rejected) == (3, 3)
    folder = result.report_dir
    assert folder is not None
    for name in REPORT_FILES:
        text = (folder / name).read_text(encoding="utf-8-sig")
        assert [pin for pin in pins if pin in text] == [], name
    generated = (folder / "pins.csv").read_text(encoding="utf-8-sig").splitlines()[1].split(",")[-1]
    for name in REPORT_FILES:
        assert generated not in (folder / name).read_text(encoding="utf-8-sig"), name
    assert [e for e in result.errors if any(pin in e.message or pin in e.value for pin in pins)] == []
    # and a file-level error about the same file names no cell
    with pytest.raises(ImporterError) as caught:
        do_import(org, path, tmp_path, user_type=UserType.NO_PORTAL, settings=Settings(max_cell_chars=5))
    assert [pin for pin in pins if pin in str(caught.value)] == []
