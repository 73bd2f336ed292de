"""Random sheets through the library entry point the CLI uses (hypothesis).

Invariants, whatever the sheet: only an ImporterError (file level) may be raised, and then nothing is
written; otherwise rows = created + skipped + rejected, every rejected row has at least one error,
and importing the same file again creates nothing.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from importer.errors import ImporterError
from importer.pipeline import run_import
from importer.settings import Settings
from importer.store.engine import open_database
from importer.store.models import Batch, Member
from importer.store.orgs import create_organization, create_teams
from importer.values import UserType

OWNER = "olive.owner@acme.example"
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "cp1252")
DELIMITERS = (",", ";", "\t", "|")
HEADERS = {
    UserType.PORTAL: ["Name", "Email", "Role", "Team"],
    UserType.NO_PORTAL: ["Name", "Team", "PIN"],
}

# Any character a file can hold (no lone surrogates), with the troublemakers made likely.
_ANY_CHAR = st.characters(exclude_categories=("Cs",))
_NASTY = ("\x00", "\x07", "\r", "\n", "\x85", "\u202e", "\u2066", "\u200b", "\u00a0", "\ufeff", '"', "'")
_NASTY_CHAR = st.sampled_from(
    [*_NASTY, ",", ";", "\t", "|", "=", "<", ">", "&", "ı", "ａ", "а", "é", "\u0301"]
)
_TEXT = st.text(st.one_of(_ANY_CHAR, _NASTY_CHAR), max_size=12)
_CELL = st.one_of(
    _TEXT,
    st.sampled_from(["", " ", "Ada", "Member", "Admin", "Owner", "Sales", "sales", "0042", "123456", "NA"]),
    st.builds(lambda n: f"p{n}@example.com", st.integers(0, 5)),
    st.builds(lambda n, s: f"{s}{n}@example.com", st.integers(0, 3), _TEXT),
)


@st.composite
def sheets(draw: st.DrawFn) -> tuple[UserType, list[list[str]], str, str]:
    """(user type, rows from the header down, encoding, delimiter): ragged, blank and odd rows too."""
    user_type = draw(st.sampled_from(list(UserType)))
    header = list(HEADERS[user_type])
    if draw(st.booleans()):
        header = draw(st.permutations(header))
    if draw(st.integers(0, 4)) == 0:
        header.append(draw(_TEXT))
    width = len(header)
    row = st.lists(_CELL, min_size=0, max_size=width + 2)
    blank = st.sampled_from([[], [""] * width, [" "] * width])
    body = draw(st.lists(st.one_of(row, row, row, blank), max_size=12))
    return user_type, [header, *body], draw(st.sampled_from(ENCODINGS)), draw(st.sampled_from(DELIMITERS))


def write_sheet(path: Path, rows: list[list[str]], *, encoding: str, delimiter: str) -> bool:
    """Write the rows as delimited text; False if the encoding cannot hold them."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerows(rows)
    try:
        path.write_bytes(out.getvalue().encode(encoding))
    except UnicodeEncodeError:
        return False
    return True


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="importer-properties-") as folder:
        yield Path(folder)


def _counts(engine: Engine) -> tuple[int, int]:
    with Session(engine) as session:
        members = session.scalar(select(func.count()).select_from(Member)) or 0
        batches = session.scalar(select(func.count()).select_from(Batch)) or 0
    return members, batches


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sheet=sheets())
def test_random_sheets_keep_the_invariants(
    workdir: Path, sheet: tuple[UserType, list[list[str]], str, str]
) -> None:
    user_type, rows, encoding, delimiter = sheet
    folder = Path(tempfile.mkdtemp(dir=workdir))
    path = folder / ("sheet.tsv" if delimiter == "\t" else "sheet.csv")
    if not write_sheet(path, rows, encoding=encoding, delimiter=delimiter):
        return
    engine = open_database(f"sqlite:///{folder}/t.db")
    try:
        create_organization(engine, "Acme Corp", owner_email=OWNER, owner_name="Olive Owner")
        create_teams(engine, "Acme Corp", ["Sales", "Support"])
        options = {
            "org_ref": "Acme Corp",
            "actor_email": OWNER,
            "user_type": user_type,
            "settings": Settings(report_dir=folder / "reports", chunk_rows=3),
        }
        before = _counts(engine)
        refused: ImporterError | None = None
        try:
            first = run_import(engine, path, **options)  # type: ignore[arg-type]
        except ImporterError as exc:  # a file-level answer: one line, nothing written
            refused = exc
        if refused is not None:
            assert "\n" not in str(refused)
            assert _counts(engine) == before
            return
        assert first.rows == first.created + len(first.skipped) + first.rejected
        erring = {e.row_number for e in first.errors}
        assert {r.row_number for r in first.rejected_rows} <= erring
        assert _counts(engine)[0] == before[0] + first.created

        again = run_import(engine, path, **options)  # type: ignore[arg-type]
        assert again.created == 0
        assert again.rows == first.rows
        assert again.rows == again.created + len(again.skipped) + again.rejected
    finally:
        engine.dispose()
