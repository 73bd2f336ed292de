"""Conformance: csv-spectrum's edge cases read through the importer's reading path.

`../shared/corpus/csv-spectrum/` (see the corpus README) holds CSVs with the values a correct
parser reads. Each is opened as an upload (encoding and delimiter detected, rows parsed, cells
cleaned), and every cell of every row must be the suite's value as the README says cells are read
(trimmed, NFC). A missing corpus fails the test: it is part of the suite.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from importer.cells import trim
from importer.reading.sheet import open_sheet
from importer.settings import Settings
from importer.sheets import ColumnKind, ColumnSpec, SheetSpec
from importer.values import UserType

SPECTRUM = Path(__file__).parent.parent.parent.parent / "shared" / "corpus" / "csv-spectrum"
# The corpus README: location_coordinates.json disagrees with its own CSV; the CSV is right.
CORRECTIONS = {"location_coordinates": {0: {"Contact Phone Number": "2095257564"}}}


def cases() -> list[tuple[str, bool]]:
    """(name, with CRLF restored): the *_crlf files are read again with their line ends as CRLF."""
    names = sorted(path.stem for path in (SPECTRUM / "csvs").glob("*.csv"))
    if not names:
        return [("the csv-spectrum corpus is missing", False)]  # a case that fails, never an empty run
    return [(name, False) for name in names] + [(name, True) for name in names if name.endswith("_crlf")]


def any_columns(headers: list[str]) -> SheetSpec:
    """A sheet that declares exactly these columns, none required: every cell is read as text."""
    columns = tuple(
        ColumnSpec(
            key=f"c{i}", header=h, kind=ColumnKind.NAME, required=False, aliases=(), rule="", examples=()
        )
        for i, h in enumerate(headers)
    )
    return SheetSpec(
        user_type=UserType.PORTAL, title="csv-spectrum", version=1, description="", columns=columns
    )


def as_read(value: str) -> str:
    """A cell as the README says the importer reads it: trimmed, Unicode NFC."""
    return unicodedata.normalize("NFC", trim(value))


@pytest.mark.parametrize(
    ("name", "crlf"),
    cases(),
    ids=lambda v: ("CRLF restored" if v else "as stored") if isinstance(v, bool) else v,
)
def test_every_cell_is_read_as_the_suite_expects(name: str, crlf: bool, tmp_path: Path) -> None:
    path, answer = SPECTRUM / "csvs" / f"{name}.csv", SPECTRUM / "json" / f"{name}.json"
    assert path.is_file() and answer.is_file(), f"the csv-spectrum corpus is missing: {SPECTRUM}"
    expected: list[dict[str, str]] = json.loads(answer.read_text(encoding="utf-8"))
    if isinstance(expected, dict):
        expected = [expected]
    for index, fixes in CORRECTIONS.get(name, {}).items():
        expected[index] = {**expected[index], **fixes}
    data = path.read_bytes()
    if crlf:  # the suite's *_crlf files as written: every line end CRLF
        path = tmp_path / path.name
        path.write_bytes(data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    elif b"\r" not in data:  # this copy's line ends were made LF: a line end in a cell is LF too
        expected = [{k: v.replace("\r\n", "\n") for k, v in row.items()} for row in expected]
    headers = list(expected[0])

    sheet = open_sheet(path, any_columns(headers), settings=Settings())
    read = [
        dict(zip(sheet.headers, cells, strict=True))
        for chunk in sheet.iter_chunks(chunk_rows=2)
        for cells in chunk.raw
    ]

    assert list(sheet.headers) == headers
    assert read == [{header: as_read(value) for header, value in row.items()} for row in expected]
    assert sheet.warnings == []
