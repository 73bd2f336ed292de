"""The database: migrations, concurrent imports, batch undo, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, func, inspect, select, text
from sqlalchemy.orm import Session

from importer.pipeline import run_import
from importer.settings import Settings
from importer.store.engine import HEAD_REVISION, current_revision, open_database, upgrade_schema
from importer.store.models import ActivationToken, Base, Batch, Member, Organization
from importer.store.orgs import list_members, show_batch, undo_batch
from importer.values import Status, UserType
from tests.conftest import Org


def _script() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", "importer.store:migrations")
    return ScriptDirectory.from_config(config)


def test_head_revision_constant_matches_the_migrations() -> None:
    assert _script().get_current_head() == HEAD_REVISION


def test_an_empty_database_upgrades_to_a_schema_equal_to_the_models(db_url: str) -> None:
    engine = open_database(db_url)
    assert current_revision(engine) == HEAD_REVISION
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert upgrade_schema(engine) is False  # up to date: nothing to do
    assert email_key_collation(engine) == ("C" if engine.dialect.name == "postgresql" else None)


def email_key_collation(engine: Engine) -> str | None:
    """PostgreSQL: the collation of members.email_key (compare_metadata does not look at it)."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT collation_name FROM information_schema.columns "
                "WHERE table_name = 'members' AND column_name = 'email_key'"
            )
        ).scalar()


def test_a_database_at_the_previous_revision_upgrades_and_keeps_its_data(db_url: str) -> None:
    from alembic import command

    raw = create_engine(db_url)
    config = Config()
    config.set_main_option("script_location", "importer.store:migrations")
    with raw.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
    with raw.begin() as conn:
        conn.execute(
            text("INSERT INTO organizations (id, name, created_at) VALUES (1, 'Old Org', '2026-01-01')")
        )
    assert "activation_tokens" not in inspect(raw).get_table_names()
    raw.dispose()

    engine = open_database(db_url)
    assert current_revision(engine) == HEAD_REVISION
    assert email_key_collation(engine) == ("C" if engine.dialect.name == "postgresql" else None)
    with Session(engine) as session:
        org = session.scalars(select(Organization)).one()
        assert (org.name, org.password_min_length, org.password_require_symbol) == ("Old Org", 8, False)
        assert session.scalar(select(func.count()).select_from(ActivationToken)) == 0


def test_db_upgrade_command(db_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "importer", "--db", db_url, "db", "upgrade"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout.strip()) == (0, f"Database schema at revision {HEAD_REVISION}.")


def test_two_imports_of_the_same_file_at_once_create_nobody_twice(
    org: Org, db_url: str, tmp_path: Path
) -> None:
    rows = 3000
    sheet = tmp_path / "same.csv"
    sheet.write_text(
        "Name,Email,Role\n" + "".join(f"P{i},p{i}@example.com,Member\n" for i in range(rows)),
        encoding="utf-8",
    )
    command = [
        sys.executable,
        "-m",
        "importer",
        "--db",
        db_url,
        "import",
        str(sheet),
        "--org",
        org.name,
        "--as",
        org.owner,
        "--type",
        "portal",
        "--json",
        "--report-dir",
        str(tmp_path / "reports"),
    ]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = [p.communicate(timeout=120) for p in (first, second)]

    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    assert all("Traceback" not in err for _, err in outputs)
    summaries = [json.loads(out) for out, _ in outputs]
    assert sum(s["created"] for s in summaries) == rows
    assert sum(s["skipped"] for s in summaries) == rows
    with Session(org.engine) as session:
        assert session.scalar(select(func.count()).select_from(Member)) == rows + 1


def test_batch_undo_removes_pending_keeps_active(org: Org, tmp_path: Path) -> None:
    sheet = tmp_path / "b.csv"
    sheet.write_text(
        "Name,Email,Role\nA,a@example.com,Member\nB,b@example.com,Member\nC,c@example.com,Admin\n"
    )
    result = run_import(
        org.engine,
        sheet,
        org_ref=org.name,
        actor_email=org.owner,
        user_type=UserType.PORTAL,
        settings=Settings(report_dir=tmp_path / "r"),
    )
    with Session(org.engine) as session, session.begin():
        b = session.scalars(select(Member).where(Member.email == "b@example.com")).one()
        b.status = Status.ACTIVE
        session.add(
            ActivationToken(
                member_id=session.scalars(select(Member.id).where(Member.email == "a@example.com")).one(),
                token_hash="x" * 64,
                expires_at=b.created_at,
            )
        )

    undone = undo_batch(org.engine, result.batch_id)

    assert (undone.removed, undone.kept_active) == (2, ("b@example.com",))
    assert [m.email for m in list_members(org.engine, org.name)] == [org.owner, "b@example.com"]
    with Session(org.engine) as session:
        assert session.scalar(select(func.count()).select_from(ActivationToken)) == 0
    shown = show_batch(org.engine, result.batch_id)
    assert (shown.batch.outcome, shown.members_active, shown.members_pending, shown.batch.created) == (
        "undone",
        1,
        0,
        3,
    )
    assert shown.batch.sha256 == result.sha256 and shown.batch.file_name == "b.csv"


def test_an_unreachable_database_is_one_clear_error() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "importer",
            "--db",
            "postgresql://nobody@127.0.0.1:1/none",
            "members",
            "--org",
            "x",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Error: cannot open the database") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _import_command(db_url: str, org: Org, sheet: Path, reports: Path) -> list[str]:
    return [
        sys.executable, "-m", "importer", "--db", db_url, "import", str(sheet), "--org", org.name,
        "--as", org.owner, "--type", "portal", "--json", "--report-dir", str(reports),
    ]  # fmt: skip


DEADLINE_SECONDS = 120.0


def _wait_until(condition: Callable[[], bool], process: subprocess.Popen[Any], what: str) -> None:
    """Poll until the condition holds while the process runs; fail, naming `what`, past the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert process.poll() is None, f"the import ended before {what}: {process.communicate()}"
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.01)


def _checking_in_a_worker(pid: int) -> bool:
    """Whether the import has forked its checking worker: it does so inside its write transaction,
    after recording the batch, and writes each chunk's members as the worker hands them over."""
    try:
        return bool(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except OSError:
        return False


def _counts(engine: Engine) -> tuple[int, int]:
    """(members, batches) in the database."""
    with Session(engine) as session:
        members = session.scalar(select(func.count()).select_from(Member)) or 0
        return members, session.scalar(select(func.count()).select_from(Batch)) or 0


def test_an_import_killed_inside_its_transaction_leaves_nothing(
    org: Org, db_url: str, tmp_path: Path
) -> None:
    # Big enough to be checked in a worker process (Settings.worker_from_rows), which the import
    # forks only once its batch transaction is open: killed then, it has written its batch row
    # and is writing members, none of it committed.
    rows = 120_000
    sheet = tmp_path / "big.csv"
    sheet.write_text("Name,Email,Role\n" + "".join(f"P{i},p{i}@example.com,Member\n" for i in range(rows)))
    command = _import_command(db_url, org, sheet, tmp_path / "reports")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until(lambda: _checking_in_a_worker(process.pid), process, "checked rows in a worker")
    finally:
        process.kill()  # SIGKILL: no cleanup code runs
        process.wait()
    assert _counts(org.engine) == (1, 0), "the killed import left members or its batch behind"

    again = subprocess.run(command, capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["created"], summary["skipped"], summary["rejected"]) == (rows, 0, 0)
    assert _counts(org.engine) == (rows + 1, 1)


def _sleeping_on_the_database(pid: int, database: Path) -> bool:
    """Whether the process has the database open and sleeps in a system call (SQLite's busy
    handler waits for a lock by sleeping: nanosleep or clock_nanosleep)."""
    try:
        opened = {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
        call = Path(f"/proc/{pid}/syscall").read_text().split()[0]
    except OSError:
        return False
    return str(database) in opened and call in {"35", "230"}  # x86-64 nanosleep, clock_nanosleep


def test_sqlite_import_waits_for_a_locked_database(org: Org, db_url: str, tmp_path: Path) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite's database-wide write lock")
    sheet = tmp_path / "one.csv"
    sheet.write_text("Name,Email,Role\nA,a@example.com,Member\n")
    blocker = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    process = subprocess.Popen(
        _import_command(db_url, org, sheet, tmp_path / "r"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    database = Path(db_url.removeprefix("sqlite:///")).resolve()
    # Seen sleeping in SQLite's busy handler with the database open: it waits for the lock, and
    # is still running then (a process that gave up would have ended, not slept).
    _wait_until(lambda: _sleeping_on_the_database(process.pid, database), process, "waited for the lock")
    assert process.poll() is None, "the import gave up instead of waiting"
    blocker.execute("COMMIT")
    blocker.close()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert json.loads(out)["created"] == 1
