"""Background jobs: an import run by a worker equals the CLI's, progress rises, a killed worker's
job is finished by another, a file-level error fails once, the per-organization limit."""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from importer import pipeline
from importer.accounts.audit import list_events
from importer.cli.app import cli
from importer.errors import ConflictError
from importer.jobs import (
    JobSettings,
    JobStatus,
    JobView,
    MailSettings,
    Queue,
    batch_job,
    job_view,
    report_file,
    report_files,
    runner,
    start_embedded_worker,
    submit_activations,
    submit_import,
    submit_undo,
    table,
)
from importer.settings import Settings
from importer.store.engine import open_database
from importer.store.models import AuditAction, Batch, Job, Member, StoredFile, Team
from importer.store.orgs import create_organization, create_teams
from importer.values import UserType
from tests import conftest
from tests.conftest import OWNER, Org, do_import

FAST = JobSettings(imports=Settings(chunk_rows=2000), poll_seconds=0.2, lease_seconds=30)
DEADLINE = 120.0


def wait_for(what: Callable[[], Any], *, deadline: float = DEADLINE, step: float = 0.05) -> Any:
    """tests.conftest.wait_for with this module's deadline."""
    return conftest.wait_for(what, deadline=deadline, step=step)


def ended(engine: Engine, job_id: int) -> Callable[[], JobView | None]:
    def check() -> JobView | None:
        view = job_view(engine, job_id)
        return view if view.status in (JobStatus.DONE, JobStatus.FAILED) else None

    return check


@pytest.fixture
def redis_url() -> str:
    """The tests' Redis database (7 unless IMPORTER_TEST_REDIS_URL names another), emptied first."""
    return conftest.fresh_redis()


@pytest.fixture
def queue(db_url: str, request: pytest.FixtureRequest) -> Queue:
    """SQLite: the embedded queue beside the database; PostgreSQL: Redis."""
    if db_url.startswith("sqlite"):
        return Queue(None, database_url=db_url)
    return Queue(request.getfixturevalue("redis_url"), database_url=db_url)


@pytest.fixture
def worker(org: Org, queue: Queue) -> Iterator[None]:
    handle = start_embedded_worker(org.engine, queue=queue, settings=FAST, threads=2)
    yield
    handle.stop()


def portal_sheet(rows: int, *, start: int = 0) -> bytes:
    lines = ["Name,Email,Role,Team"]
    teams = ["Sales", "Support", "Engineering", ""]
    lines += [f"Person {i},person{i}@example.com,Member,{teams[i % 4]}" for i in range(start, start + rows)]
    return ("\n".join(lines) + "\n").encode()


def cli_import(tmp_path: Path, sheet: Path, *, user_type: str = "portal") -> tuple[dict[str, Any], Path, str]:
    """The CLI's --json of the same sheet on a fresh database with the same organization."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = open_database(url)
    create_organization(engine, "Acme Corp", owner_email=OWNER, owner_name="Olive Owner")
    create_teams(engine, "Acme Corp", ["Sales", "Support", "Engineering"])
    engine.dispose()
    reports = tmp_path / "cli-reports"
    result = CliRunner().invoke(
        cli,
        ["--db", url, "import", str(sheet), "--org", "Acme Corp", "--as", OWNER, "--type", user_type,
         "--report-dir", str(reports), "--json"],
    )  # fmt: skip
    assert result.exit_code in (0, 3), result.output
    return json.loads(result.stdout), reports, url


def members_of(engine: Engine, org_name: str = "Acme Corp") -> list[tuple[Any, ...]]:
    with Session(engine) as session:
        rows = session.execute(
            select(Member.name, Member.email, Member.role, Team.name, Member.status, Member.user_type)
            .join(Team, Team.id == Member.team_id, isouter=True)
            .order_by(Member.name)
        ).all()
    return [tuple(row) for row in rows]


def without_run(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in ("batch_id", "report_dir")}


@pytest.mark.parametrize("stored", ["whole", "in parts"])
def test_import_job_equals_the_cli(
    org: Org,
    queue: Queue,
    worker: None,
    data_dir: Path,
    tmp_path: Path,
    stored: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sheet = data_dir / "portal-every-error.csv"
    size = sheet.stat().st_size
    if stored == "in parts":  # as the portal stores a big upload: read from its file, part by part
        monkeypatch.setattr(table, "UPLOAD_PART_BYTES", 256)
    with sheet.open("rb") as upload:
        job_id = submit_import(
            org.engine, organization_id=org.id, actor=org.owner, file_name=sheet.name,
            content=upload if stored == "in parts" else sheet.read_bytes(), user_type=UserType.PORTAL,
        )  # fmt: skip
    with Session(org.engine) as session:
        parts = session.scalars(
            select(StoredFile.size).where(StoredFile.job_id == job_id).order_by(StoredFile.name)
        ).all()
    assert sum(parts) == size
    assert len(parts) == (-(-size // 256) if stored == "in parts" else 1) and (
        stored == "whole" or size > 256
    )
    assert queue.wake(job_id)
    view = wait_for(ended(org.engine, job_id))
    assert view.status is JobStatus.DONE, view.error
    expected, reports, cli_url = cli_import(tmp_path, sheet)
    assert view.summary is not None
    assert without_run(view.summary) == without_run(expected)
    assert view.summary["rejected"] > 0
    assert view.batch_id == view.summary["batch_id"]
    assert batch_job(org.engine, org.id, view.batch_id) == view
    names = report_files(org.engine, organization_id=org.id, batch_id=view.batch_id)
    assert {"report.html", "rejected.csv", "rejected.xlsx", "errors.csv", "summary.json"} <= set(names)
    cli_folder = reports / expected["batch_id"]
    for name in ("errors.csv", "rejected.csv"):
        got = report_file(org.engine, organization_id=org.id, batch_id=view.batch_id, name=name)
        assert got == (cli_folder / name).read_bytes()
    summary = report_file(org.engine, organization_id=org.id, batch_id=view.batch_id, name="summary.json")
    assert summary is not None
    assert without_run(json.loads(summary)) == without_run(expected)
    # Another organization's id, or no such file: nothing.
    assert (
        report_file(org.engine, organization_id=org.id + 1, batch_id=view.batch_id, name="errors.csv") is None
    )
    assert report_file(org.engine, organization_id=org.id, batch_id=view.batch_id, name="nope.csv") is None
    assert report_files(org.engine, organization_id=org.id + 1, batch_id=view.batch_id) == []
    # The upload is gone once the job is done; the members are the CLI's.
    with Session(org.engine) as session:
        assert (
            session.scalar(select(func.count()).select_from(StoredFile).where(StoredFile.job_id == job_id))
            == 0
        )
    cli_engine = open_database(cli_url)
    assert members_of(org.engine) == members_of(cli_engine)
    cli_engine.dispose()


def test_a_job_worker_checks_a_big_file_in_a_spawned_process_as_the_cli_would(
    org: Org, queue: Queue, data_dir: Path, tmp_path: Path, helpers_started: list[bool]
) -> None:
    # A job worker runs threads (its poller, each job's heartbeat), so it may not fork: a file big
    # enough for a second process is checked in a spawned one, and the job ends as the CLI's import.
    settings = replace(FAST, imports=Settings(chunk_rows=5, worker_from_rows=0))
    handle = start_embedded_worker(org.engine, queue=queue, settings=settings, threads=1)
    try:
        sheet = data_dir / "portal-every-error.csv"
        job_id = submit_import(
            org.engine, organization_id=org.id, actor=org.owner, file_name=sheet.name,
            content=sheet.read_bytes(), user_type=UserType.PORTAL,
        )  # fmt: skip
        assert queue.wake(job_id)
        view = wait_for(ended(org.engine, job_id))
    finally:
        handle.stop()
    assert view.status is JobStatus.DONE, view.error
    assert helpers_started == [True]
    expected, _, cli_url = cli_import(tmp_path, sheet)
    assert view.summary is not None and without_run(view.summary) == without_run(expected)
    cli_engine = open_database(cli_url)
    assert members_of(org.engine) == members_of(cli_engine)
    cli_engine.dispose()


def test_progress_rises(org: Org, queue: Queue, worker: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # However fast the machine, each chunk's count is written at once and the worker waits (up to
    # 10 s) until a reader of the job has seen it: the test sees every step, not only the heartbeats
    # that happened to fall inside the import.
    shown = threading.Condition()
    seen: list[int] = []
    original = runner._Heartbeat.progress

    def progress(self: Any, progress: Any) -> None:
        original(self, progress)
        if 0 < progress.rows_done < 40_000:
            self.beat()
            with shown:
                shown.wait_for(lambda: progress.rows_done in seen, timeout=10)

    monkeypatch.setattr(runner._Heartbeat, "progress", progress)
    monkeypatch.setattr(pipeline, "PROGRESS_INTERVAL_SECONDS", 0.0)  # every chunk is told
    job_id = submit_import(
        org.engine, organization_id=org.id, actor=org.owner, file_name="big.csv",
        content=portal_sheet(40_000), user_type=UserType.PORTAL,
    )  # fmt: skip
    queue.wake(job_id)

    def done() -> JobView | None:
        view = job_view(org.engine, job_id)
        if view.status is JobStatus.RUNNING and (not seen or view.rows_done != seen[-1]):
            with shown:
                seen.append(view.rows_done)
                shown.notify_all()
        return view if view.status in (JobStatus.DONE, JobStatus.FAILED) else None

    view = wait_for(done, step=0.02)
    assert view.status is JobStatus.DONE
    assert (view.rows_done, view.rows_total) == (40_000, 40_000)
    rising = [rows for rows in seen if 0 < rows < 40_000]
    assert len(rising) >= 2, seen
    assert rising == sorted(rising)


def test_file_level_error_fails_once(org: Org, queue: Queue, worker: None, tmp_path: Path) -> None:
    bad = submit_import(
        org.engine, organization_id=org.id, actor=org.owner, file_name="members.xlsx",
        content=b"Name,Email\nAda,ada@example.com\n", user_type=UserType.PORTAL,
    )  # fmt: skip
    queue.wake(bad)
    view = wait_for(ended(org.engine, bad))
    assert view.status is JobStatus.FAILED
    (tmp_path / "members.xlsx").write_bytes(b"Name,Email\nAda,ada@example.com\n")
    result = CliRunner().invoke(
        cli,
        ["--db", str(org.engine.url.render_as_string(hide_password=False)), "import",
         str(tmp_path / "members.xlsx"), "--org", org.name, "--as", org.owner, "--type", "portal"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert view.error is not None and view.error in result.output.replace("\n", " ").replace("  ", " ")
    # A later job runs to its end while the failed one stays failed after one attempt: not retried.
    later = submit_import(
        org.engine, organization_id=org.id, actor=org.owner, file_name="ok.csv",
        content=portal_sheet(3), user_type=UserType.PORTAL,
    )  # fmt: skip
    queue.wake(later)
    assert wait_for(ended(org.engine, later)).status is JobStatus.DONE
    wait_for(
        lambda: (
            job_view(org.engine, bad).status is JobStatus.FAILED and job_view(org.engine, bad).attempts == 1
        )
    )
    assert job_view(org.engine, bad).attempts == 1


def test_a_second_undo_of_a_batch_is_refused_while_the_first_waits(org: Org, tmp_path: Path) -> None:
    sheet = tmp_path / "two.csv"
    sheet.write_bytes(portal_sheet(2))
    batch_id = do_import(org, sheet, tmp_path).batch_id
    first = submit_undo(org.engine, organization_id=org.id, actor=org.owner, batch_id=batch_id)
    assert job_view(org.engine, first).status is JobStatus.QUEUED  # no worker runs here
    with pytest.raises(ConflictError, match="being undone already"):
        submit_undo(org.engine, organization_id=org.id, actor=org.owner, batch_id=batch_id)


def test_activations_and_undo_jobs(org: Org, queue: Queue, tmp_path: Path) -> None:
    mail = MailSettings(
        sender="Acme <no-reply@acme.example>",
        base_url="https://portal.acme.example",
        outbox=tmp_path / "outbox",
    )
    settings = JobSettings(imports=FAST.imports, poll_seconds=0.2, mail=mail)
    handle = start_embedded_worker(org.engine, queue=queue, settings=settings)
    try:
        imported = submit_import(
            org.engine, organization_id=org.id, actor=org.owner, file_name="five.csv",
            content=portal_sheet(5), user_type=UserType.PORTAL,
        )  # fmt: skip
        queue.wake(imported)
        batch_id = wait_for(ended(org.engine, imported)).batch_id
        sent = submit_activations(org.engine, organization_id=org.id, actor=org.owner, batch_id=batch_id)
        queue.wake(sent)
        view = wait_for(ended(org.engine, sent))
        assert view.status is JobStatus.DONE, view.error
        assert view.summary is not None and view.summary["sent"] == 5
        assert len(list((tmp_path / "outbox").glob("*.eml"))) == 5
        undo = submit_undo(org.engine, organization_id=org.id, actor=org.owner, batch_id=batch_id)
        queue.wake(undo)
        view = wait_for(ended(org.engine, undo))
        assert view.status is JobStatus.DONE, view.error
        assert view.summary is not None and view.summary["removed"] == 5
        # Audited like `importer batch undo`, with the account that asked for it.
        undone = [e for e in list_events(org.engine, str(org.id)) if e.action is AuditAction.UNDO]
        assert [(e.actor, e.subject) for e in undone] == [(org.owner, batch_id)]
    finally:
        handle.stop()


def _worker_process(db_url: str, queue_url: str | None, cwd: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "IMPORTER_DATABASE_URL": db_url,
        "IMPORTER_JOB_LEASE_SECONDS": "2",
        "IMPORTER_JOB_POLL_SECONDS": "0.3",
        "IMPORTER_CHUNK_ROWS": "2000",
    }
    env.pop("IMPORTER_QUEUE_URL", None)
    if queue_url:
        env["IMPORTER_QUEUE_URL"] = queue_url
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "importer", "worker"], env=env, cwd=cwd,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def stop_workers(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stop worker processes as Ctrl-C would (each finishes its job first); kill what lingers."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_killed_worker_job_is_finished_by_another(
    db_url: str, org: Org, queue: Queue, tmp_path: Path
) -> None:
    content = portal_sheet(100_000)
    processes = [_worker_process(db_url, queue.url, tmp_path / f"w{n}") for n in (1, 2)]
    try:
        job_id = submit_import(
            org.engine, organization_id=org.id, actor=org.owner, file_name="big.csv",
            content=content, user_type=UserType.PORTAL,
        )  # fmt: skip
        queue.wake(job_id)
        # The holder is known once the job is claimed, so the kill follows the first progress at
        # once (no query between them: on a quiet machine the rest takes a few seconds at most).
        wait_for(lambda: job_view(org.engine, job_id).status is JobStatus.RUNNING)

        def holder_of() -> str | None:
            with Session(org.engine) as session:
                return session.scalar(select(Job.worker).where(Job.id == job_id))

        holder = wait_for(holder_of)
        pid = int(holder.split(":")[1])
        victim = next(p for p in processes if p.pid == pid)
        wait_for(lambda: job_view(org.engine, job_id).rows_done > 0)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        view = wait_for(ended(org.engine, job_id))
        assert view.status is JobStatus.DONE, view.error
        assert view.attempts == 2
        survivor = next(p for p in processes if p.pid != pid)
        with Session(org.engine) as session:
            assert str(survivor.pid) in (
                session.scalar(select(Job.worker).where(Job.id == job_id)) or str(survivor.pid)
            )
            batches = session.scalars(select(Batch).where(Batch.organization_id == org.id)).all()
            assert [(b.id, b.created) for b in batches] == [(view.batch_id, 100_000)]
            in_batch = session.scalar(
                select(func.count()).select_from(Member).where(Member.batch_id == view.batch_id)
            )
            assert in_batch == 100_000
        sheet = tmp_path / "big.csv"
        sheet.write_bytes(content)
        expected, _, cli_url = cli_import(tmp_path, sheet)
        assert view.summary is not None and without_run(view.summary) == without_run(expected)
        cli_engine = open_database(cli_url)
        assert members_of(org.engine) == members_of(cli_engine)
        cli_engine.dispose()
    finally:
        stop_workers(processes)


@pytest.mark.postgres
def test_per_organization_limit(postgres_url: str, redis_url: str) -> None:
    engine = open_database(postgres_url)
    acme = create_organization(engine, "Acme Corp", owner_email=OWNER, owner_name="Olive Owner")
    beta = create_organization(engine, "Beta Corp", owner_email=OWNER, owner_name="Olive Owner")
    queue = Queue(redis_url, database_url=postgres_url)
    handle = start_embedded_worker(engine, queue=queue, settings=FAST, threads=3)
    try:
        big = submit_import(
            engine, organization_id=acme, actor=OWNER, file_name="big.csv",
            content=portal_sheet(60_000), user_type=UserType.PORTAL,
        )  # fmt: skip
        queue.wake(big)
        wait_for(lambda: job_view(engine, big).status is JobStatus.RUNNING)
        same_org = submit_import(
            engine, organization_id=acme, actor=OWNER, file_name="small.csv",
            content=portal_sheet(20, start=500_000), user_type=UserType.PORTAL,
        )  # fmt: skip
        other_org = submit_import(
            engine, organization_id=beta, actor=OWNER, file_name="small.csv",
            content=portal_sheet(20), user_type=UserType.PORTAL,
        )  # fmt: skip
        queue.wake(same_org)
        queue.wake(other_org)
        assert wait_for(ended(engine, other_org)).status is JobStatus.DONE
        waiting = job_view(engine, same_org)
        assert job_view(engine, big).status is JobStatus.RUNNING, "the big import ended too soon for the test"
        assert (waiting.status, waiting.queue_position) == (JobStatus.QUEUED, 1)
        assert wait_for(ended(engine, same_org)).status is JobStatus.DONE
        assert job_view(engine, big).status is JobStatus.DONE
    finally:
        handle.stop()
        engine.dispose()


def test_a_send_job_mails_only_the_chosen_members_and_names_its_actor(
    org: Org, queue: Queue, tmp_path: Path
) -> None:
    # The members page sends to its selection: the job carries the chosen ids, and the send is
    # audited with the account that asked (as `send-activations --as`), not as an anonymous run.
    mail = MailSettings(
        sender="Acme <no-reply@acme.example>", base_url="https://portal.acme.example", outbox=tmp_path / "out"
    )
    handle = start_embedded_worker(
        org.engine, queue=queue, settings=JobSettings(imports=FAST.imports, poll_seconds=0.2, mail=mail)
    )
    try:
        imported = submit_import(
            org.engine, organization_id=org.id, actor=org.owner, file_name="four.csv",
            content=portal_sheet(4), user_type=UserType.PORTAL,
        )  # fmt: skip
        queue.wake(imported)
        assert wait_for(ended(org.engine, imported)).status is JobStatus.DONE
        with Session(org.engine) as session:
            chosen = dict(
                session.execute(
                    select(Member.id, Member.email).where(
                        Member.email.in_(["person1@example.com", "person3@example.com"])
                    )
                ).all()
            )
        sent = submit_activations(
            org.engine, organization_id=org.id, actor=org.owner, member_ids=list(chosen)
        )
        queue.wake(sent)
        view = wait_for(ended(org.engine, sent))
        assert view.status is JobStatus.DONE, view.error
        assert view.summary is not None and view.summary["sent"] == 2
        recipients = sorted(
            email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)["To"]
            .addresses[0]
            .addr_spec
            for eml in (tmp_path / "out").glob("*.eml")
        )
        assert recipients == sorted(chosen.values())
        events = [e for e in list_events(org.engine, str(org.id)) if e.action is AuditAction.INVITATION_SENT]
        assert sorted(e.actor for e in events) == [org.owner, org.owner]
    finally:
        handle.stop()
