"""What the portal and the API show of jobs: a job's state and progress, its batch's report files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from importer.errors import NotFoundError
from importer.jobs.board import Board, board_for, reader
from importer.jobs.table import PINS_FILE
from importer.store.models import Batch, Job, JobKind, JobStatus, StoredFile


@dataclass(frozen=True, slots=True)
class JobView:
    """A job as the portal and the API show it."""

    id: int
    kind: JobKind
    organization_id: int
    status: JobStatus
    phase: str
    rows_done: int
    rows_total: int | None
    batch_id: str | None
    summary: dict[str, Any] | None
    error: str | None
    queue_position: int | None
    attempts: int = 0
    file_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON of a job (the API's progress answer has these keys)."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "status": self.status.value,
            "phase": self.phase,
            "rows_done": self.rows_done,
            "rows_total": self.rows_total,
            "batch_id": self.batch_id,
            "summary": self.summary,
            "error": self.error,
            "queue_position": self.queue_position,
        }


def _view(session: Session, board: Board, job: Job) -> JobView:
    rows_done, rows_total, phase = job.rows_done, job.rows_total, job.phase
    position = None
    if job.status is JobStatus.RUNNING:
        beat = board.read([job.id]).get(job.id)
        if beat is not None:
            rows_done, rows_total, phase = beat.rows_done, beat.rows_total, beat.phase
    elif job.status is JobStatus.QUEUED:
        ahead = session.scalar(
            select(func.count()).select_from(Job).where(Job.status == JobStatus.QUEUED, Job.id < job.id)
        )
        position = int(ahead or 0) + 1
    options = json.loads(job.options or "{}")
    return JobView(
        id=job.id,
        kind=job.kind,
        organization_id=job.organization_id,
        status=job.status,
        phase=phase or job.status.value,
        rows_done=rows_done,
        rows_total=rows_total,
        batch_id=job.batch_id,
        summary=json.loads(job.summary) if job.summary else None,
        error=job.error if job.status is JobStatus.FAILED else None,
        queue_position=position,
        attempts=job.attempts,
        file_name=options.get("file_name"),
    )


def job_view(engine: Engine, job_id: int, *, board: Board | None = None) -> JobView:
    """One job as it stands now (NotFoundError when there is none)."""
    with Session(reader(engine)) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id}.")
        return _view(session, board or board_for(engine), job)


def batch_job(engine: Engine, organization_id: int, batch_id: str) -> JobView | None:
    """The import job that made (or makes) this batch of this organization; None if there is none."""
    with Session(reader(engine)) as session:
        job = session.scalar(
            select(Job)
            .where(
                Job.organization_id == organization_id, Job.batch_id == batch_id, Job.kind == JobKind.IMPORT
            )
            .order_by(Job.id.desc())
            .limit(1)
        )
        return _view(session, board_for(engine), job) if job is not None else None


def _batch_of(session: Session, organization_id: int, batch_id: str) -> bool:
    batch = session.get(Batch, batch_id)
    return batch is not None and batch.organization_id == organization_id


def report_files(engine: Engine, *, organization_id: int, batch_id: str) -> list[str]:
    """The names of a batch's stored report files (empty for another organization's batch)."""
    with Session(reader(engine)) as session:
        if not _batch_of(session, organization_id, batch_id):
            return []
        names = session.scalars(
            select(StoredFile.name).where(StoredFile.batch_id == batch_id).order_by(StoredFile.name)
        )
        return [name for name in names if name != PINS_FILE]


def report_file(engine: Engine, *, organization_id: int, batch_id: str, name: str) -> bytes | None:
    """One report file of a batch; None when there is no such file or the batch is another
    organization's. The generated PINs are not a report file (see take_pins)."""
    if name == PINS_FILE:
        return None
    with Session(reader(engine)) as session:
        if not _batch_of(session, organization_id, batch_id):
            return None
        return session.scalar(
            select(StoredFile.content).where(StoredFile.batch_id == batch_id, StoredFile.name == name)
        )


def import_jobs(engine: Engine, organization_id: int, *, limit: int = 500) -> list[JobView]:
    """The organization's import jobs, newest first (queued and running ones show their progress)."""
    with Session(reader(engine)) as session:
        jobs = session.scalars(
            select(Job)
            .where(Job.organization_id == organization_id, Job.kind == JobKind.IMPORT)
            .order_by(Job.id.desc())
            .limit(limit)
        )
        board = board_for(engine)
        return [_view(session, board, job) for job in jobs]


def _uploaded_by(session: Session, organization_id: int, batch_id: str, actor: str) -> bool:
    """Whether the organization's batch was uploaded (its import job submitted) by this account."""
    if not _batch_of(session, organization_id, batch_id):
        return False
    uploader = session.scalar(
        select(Job.actor).where(Job.batch_id == batch_id, Job.kind == JobKind.IMPORT).limit(1)
    )
    return uploader is not None and uploader.strip().lower() == actor.strip().lower()


def pins_waiting(engine: Engine, *, organization_id: int, batch_id: str, actor: str) -> bool:
    """Whether the batch's generated PINs wait for this account, its uploader (see take_pins)."""
    with Session(reader(engine)) as session:
        if not _uploaded_by(session, organization_id, batch_id, actor):
            return False
        found = session.scalar(
            select(StoredFile.id).where(StoredFile.batch_id == batch_id, StoredFile.name == PINS_FILE)
        )
        return found is not None


def take_pins(engine: Engine, *, organization_id: int, batch_id: str, actor: str) -> bytes | None:
    """The batch's generated PINs (pins.csv), once, to the account that uploaded it: deleted as it
    is handed over. None for anyone else, another organization, or once taken."""
    with Session(engine) as session, session.begin():
        if not _uploaded_by(session, organization_id, batch_id, actor):
            return None
        stored = session.scalar(
            select(StoredFile).where(StoredFile.batch_id == batch_id, StoredFile.name == PINS_FILE)
        )
        if stored is None:
            return None
        content = stored.content
        session.delete(stored)
        return content
