"""Sheets saved by real programs give the same verdict as the same rows sent as CSV (issue 11).

LibreOffice saves one CSV of member rows (some bad) as .xlsx, .xls and .ods; XlsxWriter writes the
rows with a picture on the sheet. Each is imported and compared with the CSV's own verdict: the
counts, and every error as (row, column, code).
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
import xlsxwriter

from importer.values import ImportResult
from tests.conftest import OWNER, Org, do_import, errors_of

ROWS = [
    ("Name", "Email", "Role", "Team"),
    ("Ada Lovelace", "ada@example.com", "Member", "Sales"),
    ("Grace Hopper", "grace@example.com", "admin", ""),
    ("", "nobody@example.com", "Member", ""),  # name.missing
    ("Bad Address", "not-an-address", "Member", ""),  # email.invalid
    ("Wrong Role", "role@example.com", "Boss", ""),  # role.invalid
    ("Wrong Team", "team@example.com", "Member", "Salez"),  # team.unknown
    ("", "", "", ""),  # a blank row: skipped, row numbers kept
    ("Olive Owner", OWNER, "Member", ""),  # already a member: skipped
    ("1234", "digits@example.com", "Member", "support"),  # a number in a spreadsheet, text here
    ("Twice", "same@example.com", "Member", ""),
    ("Twice Again", "SAME@example.com", "Member", ""),  # email.duplicate_in_file, both rows
]
FORMATS = ("xlsx", "xls", "ods")
# Writing the CSV as UTF-8 text, comma-separated, double quotes (LibreOffice's CSV filter options).
CSV_FILTER = "CSV:44,34,76,1"


def csv_text() -> str:
    return "".join(",".join(row) + "\n" for row in ROWS)


@pytest.fixture(scope="session")
def libreoffice_sheets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The rows as CSV, and as LibreOffice saves them in each format (once per test session).

    soffice takes one --convert-to per call (a second one replaces the first), so the three run at
    once, each with a profile of its own: parallel test runs never share one either.
    """
    soffice = shutil.which("soffice")
    assert soffice is not None, "LibreOffice (soffice) is needed for these tests"
    folder = tmp_path_factory.mktemp("libreoffice")
    source = folder / "members.csv"
    source.write_text(csv_text(), encoding="utf-8")
    runs = {
        extension: subprocess.Popen(
            [
                soffice,
                f"-env:UserInstallation={(folder / f'profile-{extension}').as_uri()}",
                "--headless",
                "--norestore",
                f"--infilter={CSV_FILTER}",
                "--convert-to",
                extension,
                "--outdir",
                str(folder / extension),
                str(source),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for extension in FORMATS
    }
    sheets = {"csv": source}
    for extension, run in runs.items():
        output, _ = run.communicate(timeout=180)
        sheets[extension] = folder / extension / f"members.{extension}"
        assert run.returncode == 0 and sheets[extension].is_file(), output
    return sheets


def noisy_png(size: int = 64) -> bytes:
    """A valid PNG of seeded noise, like a photo's bytes (XlsxWriter reads its size from the header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    noise = random.Random(11)
    pixels = b"".join(b"\x00" + noise.randbytes(3 * size) for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(pixels))
        + chunk(b"IEND", b"")
    )


def verdict(result: ImportResult) -> tuple[int, int, int, list[tuple[int, str, str]]]:
    return result.created, len(result.skipped), result.rejected, sorted(errors_of(result))


@pytest.fixture
def csv_verdict(org: Org, libreoffice_sheets: dict[str, Path], tmp_path: Path) -> tuple[object, ...]:
    """What the rows as CSV give (a dry run: it writes nothing)."""
    result = verdict(do_import(org, libreoffice_sheets["csv"], tmp_path / "csv", dry_run=True))
    created, skipped, rejected, errors = result
    assert (created, skipped, rejected) == (3, 1, 6)  # the CSV itself is judged as expected
    assert {code for _, _, code in errors} >= {
        "name.missing",
        "email.invalid",
        "role.invalid",
        "team.unknown",
    }
    return result


@pytest.mark.parametrize("extension", FORMATS)
def test_a_sheet_saved_by_libreoffice_gives_the_csvs_verdict(
    org: Org,
    libreoffice_sheets: dict[str, Path],
    csv_verdict: tuple[object, ...],
    tmp_path: Path,
    extension: str,
) -> None:
    assert verdict(do_import(org, libreoffice_sheets[extension], tmp_path)) == csv_verdict


def test_a_sheet_with_a_picture_written_by_xlsxwriter_gives_the_csvs_verdict(
    org: Org, csv_verdict: tuple[object, ...], tmp_path: Path
) -> None:
    path = tmp_path / "members-with-logo.xlsx"
    picture = tmp_path / "logo.png"
    picture.write_bytes(noisy_png())
    workbook = xlsxwriter.Workbook(str(path), {"strings_to_numbers": True})
    sheet = workbook.add_worksheet("Members")
    for number, row in enumerate(ROWS):
        for column, value in enumerate(row):
            if value:
                sheet.write(number, column, value)
    sheet.insert_image("F2", str(picture))
    workbook.close()
    assert verdict(do_import(org, path, tmp_path)) == csv_verdict
