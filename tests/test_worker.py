"""Big files are checked in a second process: the same result, the same errors, nothing lost."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from importer.checking import Checked, Checker, Members
from importer.errors import ImporterError, LimitExceededError
from importer.models import Batch, Member
from importer.read import Chunk
from importer.results import ImportResult
from importer.settings import Settings
from importer.sheets import UserType

from .conftest import Org, do_import, errors_of

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the worker process needs fork")


def counts(org: Org) -> tuple[int, int]:
    with Session(org.engine) as session:
        members = session.scalar(select(func.count()).select_from(Member)) or 0
        batches = session.scalar(select(func.count()).select_from(Batch)) or 0
    return members, batches


def sheet(tmp_path: Path, rows: list[str], *, header: str = "Name,Email,Role,Team") -> Path:
    path = tmp_path / "people.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def mixed_rows() -> list[str]:
    """Good rows, bad cells, a duplicate whose first copy is chunks earlier, an existing member."""
    rows = [f"Person {i},p{i}@example.com,Member,Sales" for i in range(40)]
    rows[3] = "Bad Role,bad@example.com,Boss,Sales"
    rows[11] = "No Address,not-an-address,Member,"
    rows[25] = "Again,p1@example.com,Member,"  # row 27; p1 is row 3, three chunks earlier
    rows[33] = "Owner Again,olive.owner@acme.example,Member,"  # the Owner exists already
    rows[38] = "Typo,ann@gmial.com,Admin,Support"
    return rows


def outcome(result: ImportResult) -> tuple[object, ...]:
    """Everything a user sees of an import, less its id and timings."""
    return (
        result.rows,
        result.created,
        errors_of(result),
        [e.message for e in result.errors],
        [(r.row_number, r.values) for r in result.rejected_rows],
        [(s.row_number, s.key) for s in result.skipped],
        [w.replace(result.batch_id, "<batch>") for w in result.warnings],
    )


def test_the_worker_gives_exactly_the_inline_result(org: Org, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = sheet(tmp_path, mixed_rows())
    inline = do_import(
        org, path, tmp_path, dry_run=True, settings=Settings(report_dir=tmp_path / "a", chunk_rows=7)
    )
    checked_here: list[int] = []
    original = Checker.check

    def spy(self: Checker, chunk: Chunk) -> Checked:
        checked_here.append(len(chunk))  # in the worker, this list is the worker's copy
        return original(self, chunk)

    monkeypatch.setattr(Checker, "check", spy)
    settings = Settings(report_dir=tmp_path / "b", chunk_rows=7, worker_from_rows=0)
    in_worker = do_import(org, path, tmp_path, settings=settings)
    assert checked_here == []  # every chunk was checked in the other process ...
    assert outcome(in_worker) == outcome(inline)  # ... with exactly the same result
    assert (in_worker.created, in_worker.rejected, len(in_worker.skipped)) == (35, 4, 1)
    assert (3, "Email", "email.duplicate_in_file") in errors_of(in_worker)
    assert (27, "Email", "email.duplicate_in_file") in errors_of(in_worker)
    assert any("Row 40: ann@gmial.com was accepted" in w for w in in_worker.warnings)
    assert counts(org)[0] == 1 + 35


def test_a_limit_passed_in_the_worker_is_one_clear_error_and_writes_nothing(org: Org, tmp_path: Path) -> None:
    path = sheet(tmp_path, [f"P{i},p{i}@example.com,Member," for i in range(30)])
    settings = Settings(report_dir=tmp_path / "r", chunk_rows=5, worker_from_rows=0, max_rows=20)
    before = counts(org)
    with pytest.raises(LimitExceededError, match="--max-rows"):
        do_import(org, path, tmp_path, settings=settings)
    assert counts(org) == before
    assert not (tmp_path / "r").exists()


def test_a_worker_that_dies_is_an_error_not_a_hang_and_writes_nothing(
    org: Org,
    tmp_path: Path,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    path = sheet(tmp_path, [f"P{i},p{i}@example.com,Member," for i in range(30)])
    original = Checker.check
    seen = {"chunks": 0}

    def die_on_third_chunk(self: Checker, chunk: Chunk) -> Checked:
        seen["chunks"] += 1
        if seen["chunks"] == 3:
            os._exit(9)  # as if killed by the out-of-memory killer
        return original(self, chunk)

    monkeypatch.setattr(Checker, "check", die_on_third_chunk)
    before = counts(org)
    settings = Settings(report_dir=tmp_path / "r", chunk_rows=5, worker_from_rows=0)
    with pytest.raises(ImporterError, match=r"stopped unexpectedly \(exit code 9\); nothing was written"):
        do_import(org, path, tmp_path, settings=settings)
    assert counts(org) == before
    monkeypatch.undo()
    assert do_import(org, path, tmp_path, settings=settings).created == 30


def test_no_portal_pins_come_back_from_the_worker(org: Org, tmp_path: Path) -> None:
    path = sheet(tmp_path, ["Desk,Sales,0042", "Lobby,,", "Lobby,,"], header="Name,Team,PIN")
    settings = Settings(report_dir=tmp_path / "r", chunk_rows=1, worker_from_rows=0)
    result = do_import(org, path, tmp_path, user_type=UserType.NO_PORTAL, settings=settings)
    assert (result.created, result.rejected) == (1, 2)
    assert result.generated_pins == []  # the generated PIN of a row taken back is not handed out
    path = sheet(tmp_path, ["Hall,,", "Gate,Support,"], header="Name,Team,PIN")
    result = do_import(org, path, tmp_path, user_type=UserType.NO_PORTAL, settings=settings)
    assert [(row, name, len(pin)) for row, name, pin in result.generated_pins] == [
        (2, "Hall", 6),
        (3, "Gate", 6),
    ]


def round_trip(members: Members) -> Members:
    """Through pickle, as the worker's pipe carries it."""
    return pickle.loads(pickle.dumps(members))  # noqa: S301 - bytes made just above


@pytest.mark.parametrize("count", [0, 1, 3])
def test_members_cross_to_the_importing_process_unchanged(count: int) -> None:
    names = ["Zoë Ångström", "", "O'Brien, Pat"][:count]
    portal = Members(
        source_rows=[2, 7, 1_048_576][:count],
        names=names,
        name_keys=[n.lower() for n in names],
        emails=["zoe@example.com", "", "pat@example.ie"][:count],
        email_keys=["zoe@example.com", "", "pat@example.ie"][:count],
        roles=["Admin", "Member", "Member"][:count],
        team_ids=[None, 3, 12][:count],
    )
    assert round_trip(portal) == portal
    no_portal = Members(
        source_rows=[5, 6, 9][:count], names=names, name_keys=names, team_ids=[1, None, None][:count]
    )
    no_portal.pin_hashes = ["sha256$aa$bb", "sha256$cc$dd", ""][:count]
    assert round_trip(no_portal) == no_portal
