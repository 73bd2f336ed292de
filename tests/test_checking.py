"""Big files are checked in a second process: the same result, the same errors, nothing lost."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from importer import pipeline
from importer.checking import Checked, Checker, check_all
from importer.errors import CheckingStoppedError, ImporterError, LimitExceededError
from importer.forked import can_fork
from importer.reading.sheet import Chunk
from importer.reading.sources import base as sources
from importer.reports import files as report
from importer.settings import Settings
from importer.store.models import Batch, Member
from importer.values import ImportResult, Limit, Members, UserType

from .conftest import Org, do_import, errors_of

pytestmark = pytest.mark.skipif(not can_fork(), reason="checks run in a forked worker on Linux only")


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 2 records: the header's block is all the importing process reads itself, so the
    worker really reads (and limit-checks) the rest of these small files."""
    monkeypatch.setattr(sources, "BLOCK_ROWS", 2)


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


def test_a_limit_passed_in_the_worker_is_one_clear_error_and_writes_nothing(
    org: Org,
    tmp_path: Path,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    path = sheet(tmp_path, [f"P{i},p{i}@example.com,Member," for i in range(30)])
    settings = Settings(report_dir=tmp_path / "r", chunk_rows=5, worker_from_rows=0, max_rows=20)
    raised_through: list[tuple[bool, str]] = []

    def watched(checker: Checker, chunks, *, worker: bool, **options):  # type: ignore[no-untyped-def]
        try:
            yield from check_all(checker, chunks, worker=worker, **options)
        except Exception as exc:
            raised_through.append((worker, type(exc).__name__))
            raise

    monkeypatch.setattr(pipeline, "check_all", watched)
    before = counts(org)
    with pytest.raises(LimitExceededError, match="rows") as caught:
        do_import(org, path, tmp_path, settings=settings)
    assert caught.value.limit is Limit.ROWS
    assert raised_through == [(True, "LimitExceededError")]  # found by the worker, raised here
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
    with pytest.raises(
        CheckingStoppedError, match=r"stopped unexpectedly \(exit code 9\); nothing was written"
    ):
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
    assert [(p.row, p.name, len(p.pin)) for p in result.generated_pins] == [
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
        emails=["zoe@example.com", "", "pat@example.ie"][:count],
        roles=["Admin", "Member", "Member"][:count],
        team_ids=[None, 3, 12][:count],
    )
    assert round_trip(portal) == portal
    no_portal = Members(source_rows=[5, 6, 9][:count], names=names, team_ids=[1, None, None][:count])
    no_portal.pin_hashes = ["sha256$aa$bb", "sha256$cc$dd", ""][:count]
    assert round_trip(no_portal) == no_portal


ORPHAN_SCRIPT = """
import sys, threading
from pathlib import Path
from importer.store import load
from importer.store.engine import open_database
from importer.store.orgs import create_organization
from importer.pipeline import run_import
from importer.settings import Settings
from importer.values import UserType

def stuck(self, members):  # the first write never returns: the worker fills the pipe and waits
    threading.Event().wait()
load.MemberLoader.insert = stuck
engine = open_database(sys.argv[1])
create_organization(engine, "Acme", owner_email="o@acme.example", owner_name="O")
run_import(engine, Path(sys.argv[2]), org_ref="Acme", actor_email="o@acme.example",
           user_type=UserType.PORTAL,
           settings=Settings(report_dir=Path(sys.argv[3]), chunk_rows=50, worker_from_rows=0))
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _lingers_after_killing(importer: subprocess.Popen[bytes], helper: int) -> bool:
    """SIGKILL the import; whether its helper is still alive 10 s later (then it is killed too)."""
    importer.send_signal(signal.SIGKILL)
    importer.wait()
    deadline = time.monotonic() + 10
    while _alive(helper) and time.monotonic() < deadline:
        time.sleep(0.05)
    lingering = _alive(helper)
    if lingering:
        os.kill(helper, signal.SIGKILL)
    return lingering


def test_a_killed_import_takes_its_worker_with_it(tmp_path: Path) -> None:
    # A nightly job's timeout kills the importer: its worker must not linger on, holding a copy of
    # the importer's memory and of its database connection.
    path = sheet(tmp_path, [f"P{i},p{i}@example.com,Member," for i in range(5000)])
    importer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            ORPHAN_SCRIPT,
            f"sqlite:///{tmp_path / 'o.db'}",
            str(path),
            str(tmp_path / "r"),
        ]
    )
    children = Path(f"/proc/{importer.pid}/task/{importer.pid}/children")
    deadline = time.monotonic() + 30
    workers: list[int] = []
    while not workers and time.monotonic() < deadline and importer.poll() is None:
        time.sleep(0.05)
        workers = [int(p) for p in children.read_text().split()]
    assert workers, "the import never started its worker"
    # Wait until the worker is ahead, blocked writing a chunk to the full pipe: the moment a worker
    # left behind would hang on forever if it outlived the import.
    while not _blocked_writing(workers[0]) and time.monotonic() < deadline and importer.poll() is None:
        time.sleep(0.05)
    assert _blocked_writing(workers[0]), "the worker never got ahead of the import"
    assert not _lingers_after_killing(importer, workers[0])


def _blocked_writing(pid: int) -> bool:
    """Whether a thread of the process sleeps in a write to a pipe (the reader is behind)."""
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            call = (task / "syscall").read_text().split()[0]
            waits_on = (task / "wchan").read_text()
        except (OSError, IndexError):
            continue
        if call == "1" and "pipe_write" in waits_on:  # x86-64 write(2), asleep in the pipe
            return True
    return False


def test_rejected_xlsx_written_alongside_is_the_same_workbook(org: Org, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # A big report writes rejected.xlsx in a second process while it writes the other files.
    path = sheet(tmp_path, mixed_rows())
    inline = do_import(org, path, tmp_path, dry_run=True, settings=Settings(report_dir=tmp_path / "a"))
    original = report.write_rejected_xlsx

    def spy(result: ImportResult, target: Path, **options: object) -> None:
        (target.parent / "writer.pid").write_text(str(os.getpid()))  # a file: the child's memory is its own
        original(result, target, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(report, "write_rejected_xlsx", spy)
    monkeypatch.setattr(report, "XLSX_ALONGSIDE_FROM", 1)
    alongside = do_import(org, path, tmp_path, settings=Settings(report_dir=tmp_path / "b"))
    assert alongside.report_dir is not None and inline.report_dir is not None
    assert int((alongside.report_dir / "writer.pid").read_text()) != os.getpid()

    def cells(folder: Path) -> list[list[object]]:
        sheet = load_workbook(folder / "rejected.xlsx").worksheets[0]
        return [[c.value for c in row] for row in sheet.iter_rows()]

    rejected_here = cells(inline.report_dir)
    assert len(rejected_here) == 1 + 4
    assert cells(alongside.report_dir) == [
        [str(v).replace(inline.batch_id, alongside.batch_id) if v else v for v in row]
        for row in rejected_here
    ]


def test_a_failed_workbook_alongside_fails_the_import_and_writes_nothing(  # type: ignore[no-untyped-def]
    org: Org, tmp_path: Path, monkeypatch
) -> None:
    def disk_full(result: ImportResult, target: Path, **options: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "write_rejected_xlsx", disk_full)
    monkeypatch.setattr(report, "XLSX_ALONGSIDE_FROM", 1)
    before = counts(org)
    with pytest.raises(OSError, match="No space left on device"):
        do_import(org, sheet(tmp_path, mixed_rows()), tmp_path)
    assert counts(org) == before

    def dies(result: ImportResult, target: Path, **options: object) -> None:
        os._exit(9)

    monkeypatch.setattr(report, "write_rejected_xlsx", dies)
    with pytest.raises(
        ImporterError, match=r"the process writing rejected.xlsx stopped unexpectedly \(exit code 9\)"
    ):
        do_import(org, sheet(tmp_path, mixed_rows()), tmp_path)
    assert counts(org) == before

    def odd(result: ImportResult, target: Path, **options: object) -> None:
        raise TwoPartError("disk", "full")  # pickled fine, cannot be unpickled: __init__ wants two

    monkeypatch.setattr(report, "write_rejected_xlsx", odd)
    with pytest.raises(ImporterError, match=r"writing rejected.xlsx failed \(TypeError"):
        do_import(org, sheet(tmp_path, mixed_rows()), tmp_path)
    assert counts(org) == before
    # The other report files were written meanwhile; a report of a batch that is not there is not kept.
    assert not (tmp_path / "reports").exists() or list((tmp_path / "reports").iterdir()) == []


class TwoPartError(Exception):
    def __init__(self, first: str, second: str) -> None:
        super().__init__(f"{first} {second}")


XLSX_ORPHAN_SCRIPT = """
import os, sys, time
from pathlib import Path
from importer.reports import files as report
from importer.store.engine import open_database
from importer.store.orgs import create_organization
from importer.pipeline import run_import
from importer.settings import Settings
from importer.values import UserType

def stuck(result, target, **options):  # a huge report, still being written
    Path(sys.argv[3], "writer.pid").write_text(str(os.getpid()))
    time.sleep(60)

report.write_rejected_xlsx = stuck
report.XLSX_ALONGSIDE_FROM = 1
engine = open_database(sys.argv[1])
create_organization(engine, "Acme", owner_email="o@acme.example", owner_name="O")
run_import(engine, Path(sys.argv[2]), org_ref="Acme", actor_email="o@acme.example",
           user_type=UserType.PORTAL, settings=Settings(report_dir=Path(sys.argv[3])))
"""


def test_a_killed_import_takes_its_workbook_writer_with_it(tmp_path: Path) -> None:
    path = sheet(tmp_path, [f"P{i},p{i}@bad,Member," for i in range(20)])
    reports = tmp_path / "r"
    reports.mkdir()
    importer = subprocess.Popen(
        [sys.executable, "-c", XLSX_ORPHAN_SCRIPT, f"sqlite:///{tmp_path / 'o.db'}", str(path), str(reports)]
    )
    pid_file = reports / "writer.pid"
    deadline = time.monotonic() + 30
    while not _writer_asleep(pid_file) and time.monotonic() < deadline and importer.poll() is None:
        time.sleep(0.05)
    assert _writer_asleep(pid_file), "the import never started writing its workbook"
    assert not _lingers_after_killing(importer, int(pid_file.read_text()))


def _writer_asleep(pid_file: Path) -> bool:
    """Whether the stuck writer has written its whole pid and sleeps (in its time.sleep)."""
    try:
        pid = int(pid_file.read_text())
        call = Path(f"/proc/{pid}/syscall").read_text().split()[0]
    except (OSError, ValueError):
        return False
    return call in {"35", "230"}  # x86-64 nanosleep, clock_nanosleep


def test_the_worker_checks_ahead_and_writes_the_rejected_files_before_the_last_rows_are_saved(  # type: ignore[no-untyped-def]
    org: Org, tmp_path: Path, monkeypatch
) -> None:
    # On PostgreSQL the server sets the pace: the worker must not wait for it, chunk by chunk,
    # before checking on. Here the first write does not return until rejected.xlsx is on disk,
    # which only a worker that ran through the whole file (far past a pipe's 64 KiB) can have made.
    rows = [f"Person {i},p{i}@example.com,Member,Sales" for i in range(6000)]
    rows[5990] = "Late Bad,not-an-address,Member,"
    settings = Settings(report_dir=tmp_path / "r", chunk_rows=100, worker_from_rows=0)
    write = pipeline.MemberLoader.insert
    seen_early: list[bool] = []

    def first_write_waits_for_the_files(self, members: Members) -> set[int]:  # type: ignore[no-untyped-def]
        if not seen_early:
            files = list((tmp_path / "r").glob("*/rejected.xlsx"))
            deadline = time.monotonic() + 30
            while not files and time.monotonic() < deadline:
                time.sleep(0.02)
                files = list((tmp_path / "r").glob("*/rejected.xlsx"))
            seen_early.append(bool(files))
        return write(self, members)

    monkeypatch.setattr(pipeline.MemberLoader, "insert", first_write_waits_for_the_files)
    result = do_import(org, sheet(tmp_path, rows), tmp_path, settings=settings)
    assert seen_early == [True], "the worker waited for the writes instead of checking ahead"
    assert result.created == 5999 and [r.row_number for r in result.rejected_rows] == [5992]
    assert result.report_dir is not None
    sheet_rows = list(
        load_workbook(result.report_dir / "rejected.xlsx").worksheets[0].iter_rows(values_only=True)
    )
    assert sheet_rows[1][:2] == ("Late Bad", "not-an-address")
    assert "5992" in (result.report_dir / "errors.csv").read_text(encoding="utf-8-sig")


def test_a_process_with_threads_checks_in_a_spawned_worker_with_the_same_result(
    org: Org, tmp_path: Path, helpers_started: list[bool]
) -> None:
    # A job worker or the portal runs threads beside its imports, so it may not fork: its worker is
    # a fresh interpreter that opens the sheet again. The same rows, errors and report files.
    path = sheet(tmp_path, mixed_rows())
    inline = do_import(org, path, tmp_path, dry_run=True, settings=Settings(report_dir=tmp_path / "a"))
    assert helpers_started == []  # a small file, checked inline
    beside = threading.Event()
    thread = threading.Thread(target=beside.wait)
    thread.start()
    try:
        settings = Settings(report_dir=tmp_path / "b", chunk_rows=7, worker_from_rows=0)
        result = do_import(org, path, tmp_path, settings=settings)
    finally:
        beside.set()
        thread.join()
    assert helpers_started == [True]
    assert errors_of(result) == errors_of(inline)
    assert [r.row_number for r in result.skipped] == [r.row_number for r in inline.skipped] == [35]
    assert result.created == inline.created == 35
    assert result.report_dir is not None and inline.report_dir is not None
    for name in ("errors.csv", "rejected.csv"):
        assert (result.report_dir / name).read_bytes() == (inline.report_dir / name).read_bytes()
    with Session(org.engine) as session:
        assert session.scalar(select(func.count()).where(Member.batch_id == result.batch_id)) == 35


def test_a_limit_passed_in_a_spawned_worker_is_one_clear_error_and_writes_nothing(
    org: Org, tmp_path: Path
) -> None:
    path = sheet(tmp_path, [f"P{i},p{i}@example.com,Member," for i in range(30)])
    settings = Settings(report_dir=tmp_path / "r", chunk_rows=5, worker_from_rows=0, max_rows=20)
    beside = threading.Event()
    thread = threading.Thread(target=beside.wait)
    thread.start()
    before = counts(org)
    try:
        with pytest.raises(LimitExceededError, match="rows") as caught:
            do_import(org, path, tmp_path, settings=settings)
    finally:
        beside.set()
        thread.join()
    assert caught.value.limit is Limit.ROWS
    assert counts(org) == before
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("first_copy_beside_an_existing_member", [False, True])
def test_a_late_duplicate_takes_back_exactly_its_first_copy(  # type: ignore[no-untyped-def]
    org: Org, tmp_path: Path, first_copy_beside_an_existing_member: bool
) -> None:
    # The first copy was written chunks before its second turned up: it is taken back, by its member
    # id when its chunk was written whole, by its row number when its chunk met an existing member.
    rows = [f"Person {i},p{i}@example.com,Member,Sales" for i in range(30)]
    rows[1] = "First Copy,dup@example.com,Member,"  # row 3, in the first chunk (rows 2-6)
    rows[25] = "Second Copy,DUP@example.com,Member,"  # row 27
    if first_copy_beside_an_existing_member:
        rows[3] = "Owner Again,olive.owner@acme.example,Member,"  # row 5, same chunk
    settings = Settings(report_dir=tmp_path / "r", chunk_rows=5, worker_from_rows=0)
    result = do_import(org, sheet(tmp_path, rows), tmp_path, settings=settings)
    assert [r.row_number for r in result.rejected_rows] == [3, 27]
    assert {e.code.value for e in result.errors} == {"email.duplicate_in_file"}
    skipped = [5] if first_copy_beside_an_existing_member else []
    assert [r.row_number for r in result.skipped] == skipped
    with Session(org.engine) as session:
        emails = set(session.scalars(select(Member.email).where(Member.batch_id == result.batch_id)))
    assert result.created == len(emails) == 30 - 2 - len(skipped)
    assert "dup@example.com" not in emails and "p0@example.com" in emails and "p29@example.com" in emails
