"""The job table, the one record of every background job: submitting, claiming, finishing, views.

The queue only wakes workers. A worker claims a job here, atomically: a queued job, or a running
one whose lease ran out (its worker died), within the limits on concurrent imports. It renews the
lease while it works (board.py) and finishes the job here; a claim that finds the job taken is a
no-op, so a duplicate wake-up costs one query.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import ColumnElement, Engine, delete, insert, select, update
from sqlalchemy.orm import Session

from importer.errors import ConflictError, NotFoundError
from importer.jobs.board import Beat, Board, SqliteBoard, reader
from importer.jobs.settings import JobSettings
from importer.pipeline import new_batch_id
from importer.store.engine import NamedLock, is_sqlite
from importer.store.models import Batch, Job, JobKind, JobStatus, Organization, StoredFile, utcnow
from importer.values import UserType

# The lock every claim takes, so that two workers never both see room under a limit.
CLAIM_LOCK = "job-claim"
# The name of an import's upload among its job's stored files: its first part; the next ones
# are upload.000001, upload.000002 ... (in the order of their names).
UPLOAD = "upload"
# An upload is stored, and read back, a part at a time: no process holds a whole sheet in memory.
UPLOAD_PART_BYTES = 4 * 1024 * 1024
# The generated PINs: handed to the uploader once (take_pins), never served as a report file.
PINS_FILE = "pins.csv"
_UNSAFE_NAME = re.compile(r"[\x00-\x1f/\\]")


def safe_file_name(name: str) -> str:
    """The upload's base name, without folders or control characters (it names the batch's file)."""
    base = _UNSAFE_NAME.sub("_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip().lstrip(".")
    return base[:200] or "upload"


def _organization_exists(session: Session, organization_id: int) -> None:
    if session.get(Organization, organization_id) is None:
        raise NotFoundError(f"no organization {organization_id}.")


def _batch_of(engine: Engine, organization_id: int, batch_id: str) -> None:
    with Session(reader(engine)) as session:
        batch = session.get(Batch, batch_id)
        if batch is None or batch.organization_id != organization_id:
            raise NotFoundError(f"no batch {batch_id!r} in this organization.")


def is_upload() -> ColumnElement[bool]:
    """The stored files that are parts of an upload."""
    return (StoredFile.name == UPLOAD) | StoredFile.name.startswith(f"{UPLOAD}.", autoescape=True)


def _part_name(number: int) -> str:
    return UPLOAD if number == 0 else f"{UPLOAD}.{number:06d}"


def _submit(engine: Engine, job: Job, upload: bytes | BinaryIO | None = None) -> int:
    with Session(engine) as session, session.begin():
        _organization_exists(session, job.organization_id)
        session.add(job)
        session.flush()
        if upload is not None:
            stream = io.BytesIO(upload) if isinstance(upload, bytes) else upload
            number, part = 0, stream.read(UPLOAD_PART_BYTES)
            while number == 0 or part:  # an empty upload is one empty part: the import says "empty"
                # Core inserts, not ORM objects: a part written is a part no longer held in memory.
                values = {"job_id": job.id, "name": _part_name(number), "content": part, "size": len(part)}
                session.execute(insert(StoredFile).values(created_at=utcnow(), **values))
                number, part = number + 1, stream.read(UPLOAD_PART_BYTES)
        return job.id


def submit_import(
    engine: Engine,
    *,
    organization_id: int,
    actor: str,
    file_name: str,
    content: bytes | BinaryIO,
    user_type: UserType,
    dry_run: bool = False,
    all_or_nothing: bool = False,
) -> int:
    """Queue the import of an uploaded sheet; its batch id is drawn now (job_view shows it).

    The upload (bytes, or a file read from where it is) is kept in the database, in parts of
    UPLOAD_PART_BYTES, until the job ends. Wake a worker with Queue.wake(id).
    """
    options = {
        "file_name": safe_file_name(file_name),
        "user_type": UserType(user_type).value,
        "dry_run": dry_run,
        "all_or_nothing": all_or_nothing,
    }
    job = Job(
        kind=JobKind.IMPORT,
        organization_id=organization_id,
        actor=actor,
        options=json.dumps(options),
        batch_id=new_batch_id(),
        status=JobStatus.QUEUED,
    )
    return _submit(engine, job, content)


def submit_activations(
    engine: Engine,
    *,
    organization_id: int,
    actor: str,
    batch_id: str | None = None,
    resend: bool = False,
    member_ids: Collection[int] | None = None,
    self_service: bool = False,
) -> int:
    """Queue a send of the activation emails (of one batch, or all pending; `resend` as the CLI's;
    `member_ids`: only those members, as the members page's selection; `self_service`: the actor
    is the pending member asking for their own new link, not an admin)."""
    options: dict[str, Any] = {"resend": resend}
    if self_service:
        options["self_service"] = True
    if member_ids is not None:
        options["member_ids"] = sorted(set(member_ids))
    if batch_id is not None:
        _batch_of(engine, organization_id, batch_id)  # NotFoundError: not this organization's
    job = Job(
        kind=JobKind.ACTIVATIONS,
        organization_id=organization_id,
        actor=actor,
        options=json.dumps(options),
        batch_id=batch_id,
        status=JobStatus.QUEUED,
    )
    return _submit(engine, job)


def undos_waiting(engine: Engine, organization_id: int) -> set[str]:
    """The organization's batches with an undo queued or running."""
    with Session(reader(engine)) as session:
        return set(
            session.scalars(
                select(Job.batch_id).where(
                    Job.organization_id == organization_id,
                    Job.kind == JobKind.UNDO,
                    Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]),
                    Job.batch_id.is_not(None),
                )
            )
        )


def submit_undo(engine: Engine, *, organization_id: int, actor: str, batch_id: str) -> int:
    """Queue the undo of a batch (its still-pending members are removed); refused while one is
    queued or running already."""
    _batch_of(engine, organization_id, batch_id)
    if batch_id in undos_waiting(engine, organization_id):
        raise ConflictError(f"batch {batch_id} is being undone already.")
    job = Job(
        kind=JobKind.UNDO,
        organization_id=organization_id,
        actor=actor,
        batch_id=batch_id,
        status=JobStatus.QUEUED,
    )
    return _submit(engine, job)


# --- claiming ---


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job this worker holds now: what it needs to run it."""

    id: int
    kind: JobKind
    organization_id: int
    actor: str
    options: dict[str, Any]
    batch_id: str | None
    attempts: int


def _live_lease(job: Job, beats: dict[int, Beat], now: dt.datetime) -> bool:
    beat = beats.get(job.id)
    lease = beat.lease_until if beat is not None else job.lease_until
    return lease is not None and lease > now


def claim_next(engine: Engine, board: Board, *, worker: str, settings: JobSettings) -> Claimed | None:
    """Claim the oldest job that may run now, or None: queued (past its retry delay) or running
    with its lease run out, imports within the per-organization and overall limits."""
    with NamedLock(engine, CLAIM_LOCK, 0):
        now = utcnow()
        with Session(reader(engine)) as session:
            active = list(
                session.scalars(
                    select(Job).where(Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING])).order_by(Job.id)
                )
            )
        beats = board.read([job.id for job in active if job.status is JobStatus.RUNNING])
        running = [j for j in active if j.status is JobStatus.RUNNING and _live_lease(j, beats, now)]
        imports = [j for j in running if j.kind is JobKind.IMPORT]
        per_org = Counter(j.organization_id for j in imports)
        # SQLite has one writer: a second import would only wait for the first one's lock.
        max_imports = 1 if is_sqlite(engine) else settings.max_imports
        for job in active:
            if job in running:
                continue
            if job.status is JobStatus.QUEUED and job.lease_until is not None and job.lease_until > now:
                continue  # waiting out its retry delay
            if job.kind is JobKind.IMPORT and (
                len(imports) >= max_imports or per_org[job.organization_id] >= settings.max_imports_per_org
            ):
                continue
            lease_until = now + dt.timedelta(seconds=settings.lease_seconds)
            with engine.begin() as conn:
                changed = conn.execute(
                    update(Job)
                    .where(Job.id == job.id, Job.status == job.status, _same(Job.worker, job.worker))
                    .values(
                        status=JobStatus.RUNNING,
                        worker=worker,
                        lease_until=lease_until,
                        attempts=Job.attempts + 1,
                        started_at=now,
                        phase="",
                        rows_done=0,  # a job claimed again starts its progress afresh
                        rows_total=None,
                    )
                ).rowcount
            if not changed:
                continue
            if isinstance(board, SqliteBoard):
                board.take(job.id, Beat(worker, lease_until, 0, None, ""))
            return Claimed(
                id=job.id,
                kind=job.kind,
                organization_id=job.organization_id,
                actor=job.actor,
                options=json.loads(job.options or "{}"),
                batch_id=job.batch_id,
                attempts=job.attempts + 1,
            )
    return None


def _same(column: Any, value: str | None) -> Any:
    return column.is_(None) if value is None else column == value


def has_work(engine: Engine, board: Board) -> bool:
    """Whether a job waits (queued, or running on a lease that ran out): worth a wake-up."""
    now = utcnow()
    with Session(reader(engine)) as session:
        jobs = list(session.scalars(select(Job).where(Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))))
    beats = board.read([job.id for job in jobs if job.status is JobStatus.RUNNING])
    return any(
        (job.status is JobStatus.QUEUED and (job.lease_until is None or job.lease_until <= now))
        or (job.status is JobStatus.RUNNING and not _live_lease(job, beats, now))
        for job in jobs
    )


# --- finishing ---


def copy_upload(engine: Engine, job_id: int, target: Path) -> bool:
    """Write an import job's upload to `target`, a part at a time; False once the job is over."""
    with Session(reader(engine)) as session:
        parts = session.execute(
            select(StoredFile.id, StoredFile.size)
            .where(StoredFile.job_id == job_id, is_upload())
            .order_by(StoredFile.name)
        ).all()
        if not parts:
            return False
        with target.open("wb") as out:
            for part, size in parts:
                content = session.scalar(select(StoredFile.content).where(StoredFile.id == part))
                if content is None or len(content) != size:  # deleted meanwhile: the job is over
                    return False
                out.write(content)
        return True


def finish(
    engine: Engine,
    board: Board,
    job_id: int,
    *,
    worker: str,
    summary: dict[str, Any] | None,
    rows: int | None = None,
    files: dict[str, bytes] | None = None,
    batch_id: str | None = None,
) -> bool:
    """Mark the job done with its summary, store its batch's report files, delete its upload.

    False (and nothing changed) when the job is no longer this worker's.
    """
    now = utcnow()
    with Session(engine) as session, session.begin():
        changed = (
            session.connection()
            .execute(
                update(Job)
                .where(Job.id == job_id, Job.worker == worker, Job.status == JobStatus.RUNNING)
                .values(
                    status=JobStatus.DONE,
                    summary=json.dumps(summary) if summary is not None else None,
                    error=None,
                    finished_at=now,
                    lease_until=None,
                    phase="done",
                    **({"rows_done": rows, "rows_total": rows} if rows is not None else {}),
                )
            )
            .rowcount
        )
        if not changed:
            return False
        session.execute(delete(StoredFile).where(StoredFile.job_id == job_id, is_upload()))
        if files and batch_id:
            present = set(session.scalars(select(StoredFile.name).where(StoredFile.batch_id == batch_id)))
            for name, content in files.items():
                if name not in present:
                    session.add(StoredFile(batch_id=batch_id, name=name, content=content, size=len(content)))
    board.clear(job_id)
    return True


def fail(
    engine: Engine, board: Board, job_id: int, *, worker: str, error: str, retry_in: float | None
) -> None:
    """Record a failure: the job waits `retry_in` seconds and is queued again, or (None) fails for
    good, its upload deleted."""
    now = utcnow()
    with Session(engine) as session, session.begin():
        values: dict[str, Any] = {"error": error, "worker": None}
        if retry_in is None:
            values |= {"status": JobStatus.FAILED, "finished_at": now, "lease_until": None, "phase": "failed"}
        else:
            values |= {"status": JobStatus.QUEUED, "lease_until": now + dt.timedelta(seconds=retry_in)}
        changed = (
            session.connection()
            .execute(
                update(Job)
                .where(Job.id == job_id, Job.worker == worker, Job.status == JobStatus.RUNNING)
                .values(**values)
            )
            .rowcount
        )
        if changed and retry_in is None:
            session.execute(delete(StoredFile).where(StoredFile.job_id == job_id, is_upload()))
    board.clear(job_id)


def worker_name(thread: str) -> str:
    """This process's name for one of its job threads: host, process id, thread."""
    return f"{os.uname().nodename}:{os.getpid()}:{thread}"[:200]
