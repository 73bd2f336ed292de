"""Retention: an upload lives until its job ends (done or failed); a batch's report files are kept
IMPORTER_REPORT_DAYS (30 by default), then purged, and go at once when the batch is undone."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from importer.jobs import (
    JobSettings,
    JobStatus,
    JobView,
    Queue,
    Worker,
    report_files,
    settings_from_env,
    start_embedded_worker,
    submit_import,
    submit_undo,
)
from importer.jobs.retention import purge
from importer.store.models import StoredFile, utcnow
from importer.values import UserType
from tests.conftest import Org, wait_for
from tests.test_jobs import ended

SHEET = b"Name,Email,Role,Team\nAda,ada@example.com,Member,Sales\nBo,bo@@x,Member,Sales\n"


def uploads(org: Org, job_id: int) -> int:
    with Session(org.engine) as session:
        count = session.scalar(
            select(func.count()).select_from(StoredFile).where(StoredFile.job_id == job_id)
        )
    return int(count or 0)


def over(org: Org, job_id: int) -> JobView:
    view: JobView = wait_for(ended(org.engine, job_id), f"job {job_id} did not end")
    return view


def submit(org: Org, content: bytes = SHEET, name: str = "members.csv") -> int:
    return submit_import(
        org.engine, organization_id=org.id, actor=org.owner, file_name=name, content=content,
        user_type=UserType.PORTAL,
    )  # fmt: skip


@pytest.fixture
def start_worker(org: Org, db_url: str) -> Iterator[object]:
    handles: list[Worker] = []

    def start() -> None:
        queue = Queue(None, database_url=db_url)
        handles.append(start_embedded_worker(org.engine, queue=queue, settings=JobSettings(poll_seconds=0.1)))

    yield start
    for handle in handles:
        handle.stop()


def test_uploads_live_until_their_job_ends(org: Org, start_worker: object) -> None:
    done, failed = submit(org), submit(org, b"Nombre\nAda\n", "wrong.csv")
    assert (uploads(org, done), uploads(org, failed)) == (1, 1)  # kept while the jobs wait
    start_worker()  # type: ignore[operator]
    assert over(org, done).status is JobStatus.DONE
    assert over(org, failed).status is JobStatus.FAILED
    assert (uploads(org, done), uploads(org, failed)) == (0, 0)


def test_reports_are_kept_for_the_stated_days_then_purged(org: Org, start_worker: object) -> None:
    start_worker()  # type: ignore[operator]
    view = over(org, submit(org))
    assert view.batch_id is not None
    names = report_files(org.engine, organization_id=org.id, batch_id=view.batch_id)
    assert {"report.html", "errors.csv", "rejected.csv", "rejected.xlsx", "summary.json"} <= set(names)
    now = utcnow()
    assert purge(org.engine, report_days=30, now=now + dt.timedelta(days=29)).reports == 0
    assert report_files(org.engine, organization_id=org.id, batch_id=view.batch_id) == names
    purged = purge(org.engine, report_days=30, now=now + dt.timedelta(days=31))
    assert purged.reports >= len(names)
    assert report_files(org.engine, organization_id=org.id, batch_id=view.batch_id) == []


def test_an_undo_takes_the_report_with_it(org: Org, start_worker: object) -> None:
    start_worker()  # type: ignore[operator]
    kept = over(org, submit(org))
    undone = over(org, submit(org, SHEET.replace(b"ada@", b"ann@"), "second.csv"))
    assert kept.batch_id and undone.batch_id
    assert over(org, submit_undo(org.engine, organization_id=org.id, actor=org.owner,
                                 batch_id=undone.batch_id)).status is JobStatus.DONE  # fmt: skip
    assert report_files(org.engine, organization_id=org.id, batch_id=undone.batch_id) == []
    assert report_files(org.engine, organization_id=org.id, batch_id=kept.batch_id) != []


def test_the_report_days_come_from_the_environment() -> None:
    assert settings_from_env({}).report_days == 30
    assert settings_from_env({"IMPORTER_REPORT_DAYS": "7"}).report_days == 7


def test_a_running_worker_purges_old_reports(org: Org, start_worker: object) -> None:
    start_worker()  # type: ignore[operator]
    view = over(org, submit(org))
    assert view.batch_id and report_files(org.engine, organization_id=org.id, batch_id=view.batch_id)
    with Session(org.engine) as session, session.begin():
        session.execute(
            update(StoredFile)
            .where(StoredFile.batch_id == view.batch_id)
            .values(created_at=utcnow() - dt.timedelta(days=31))
        )
    start_worker()  # type: ignore[operator]  # a worker purges as it starts, then every hour
    wait_for(
        lambda: not report_files(org.engine, organization_id=org.id, batch_id=view.batch_id),
        "the worker did not purge the 31-day-old report",
        deadline=30,
    )
