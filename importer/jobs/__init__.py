"""Background jobs: imports, activation sends and undos started from the portal or the API.

The job table (store.models.Job) is the one record of every job; the queue (huey: a SQLite file
beside the database, or Redis) only wakes workers. A worker claims a job with a lease it renews
while it works; a worker killed mid-job lets the lease run out and another claims the job again.
A job runs the same library calls as the CLI (run_import, send_activations, undo_batch).

    job_id = submit_import(engine, organization_id=..., actor=..., file_name=..., content=...,
                           user_type=UserType.PORTAL)
    queue.wake(job_id)            # or let the workers find it by polling
    job_view(engine, job_id)      # status, rows done of total, phase, summary, queue position
"""

from __future__ import annotations

from importer.jobs.queue import Queue
from importer.jobs.runner import Worker, run_worker, start_embedded_worker
from importer.jobs.settings import JobSettings, MailSettings, settings_from_env
from importer.jobs.table import submit_activations, submit_import, submit_undo, undos_waiting
from importer.jobs.views import (
    JobView,
    batch_job,
    import_jobs,
    job_view,
    pins_waiting,
    report_file,
    report_files,
    take_pins,
)
from importer.store.models import JobKind, JobStatus

__all__ = [
    "JobKind",
    "JobSettings",
    "JobStatus",
    "JobView",
    "MailSettings",
    "Queue",
    "Worker",
    "batch_job",
    "import_jobs",
    "job_view",
    "pins_waiting",
    "report_file",
    "report_files",
    "run_worker",
    "settings_from_env",
    "start_embedded_worker",
    "submit_activations",
    "submit_import",
    "submit_undo",
    "take_pins",
    "undos_waiting",
]
