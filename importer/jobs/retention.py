"""How long stored files live: an upload until its job ends (table.finish and table.fail delete it),
a batch's report files for `report_days` (IMPORTER_REPORT_DAYS, 30 by default) or until the batch
is undone. Workers purge at start and then every PURGE_EVERY_SECONDS; purge() is also what a
test or an operator calls.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from importer.jobs.settings import DEFAULT_REPORT_DAYS
from importer.jobs.table import is_upload
from importer.records import BatchOutcome
from importer.store.models import Batch, Job, JobStatus, StoredFile, utcnow

PURGE_EVERY_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Purged:
    """What one purge deleted: report files (old, or of undone batches) and left-over uploads."""

    reports: int
    uploads: int


def purge(
    engine: Engine, *, report_days: float = DEFAULT_REPORT_DAYS, now: dt.datetime | None = None
) -> Purged:
    """Delete the report files older than `report_days` or of undone batches, and the upload of any
    job that is over (a crash between a job's end and its upload's deletion leaves none for long)."""
    cutoff = (now or utcnow()) - dt.timedelta(days=report_days)
    undone = select(Batch.id).where(Batch.outcome == BatchOutcome.UNDONE.value)
    over = select(Job.id).where(Job.status.in_([JobStatus.DONE, JobStatus.FAILED]))
    with Session(engine) as session, session.begin():
        conn = session.connection()
        reports = conn.execute(
            delete(StoredFile).where(
                StoredFile.batch_id.is_not(None),
                (StoredFile.created_at < cutoff) | StoredFile.batch_id.in_(undone.scalar_subquery()),
            )
        ).rowcount
        uploads = conn.execute(
            delete(StoredFile).where(is_upload(), StoredFile.job_id.in_(over.scalar_subquery()))
        ).rowcount
    return Purged(reports=reports, uploads=uploads)
