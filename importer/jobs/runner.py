"""Running jobs: claim one, run it with the same library calls as the CLI, renew its lease while it
runs, finish it; the worker loop (run_worker) and the worker inside a web process."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from importer.accounts.audit import Acting, Channel
from importer.errors import (
    CheckingStoppedError,
    CommitFailedError,
    CommitUnknownError,
    DatabaseBusyError,
    ImporterError,
    NotFoundError,
    TransportError,
    WriteConflictError,
)
from importer.jobs.board import Beat, Board, board_for
from importer.jobs.queue import Queue, consumer
from importer.jobs.retention import PURGE_EVERY_SECONDS, purge
from importer.jobs.settings import JobSettings, MailSettings
from importer.jobs.table import Claimed, claim_next, copy_upload, fail, finish, has_work, worker_name
from importer.pipeline import Progress
from importer.store.engine import open_database
from importer.store.models import Batch, JobKind, utcnow
from importer.values import UserType

_log = logging.getLogger(__name__)
# Errors that may pass: the job is tried again (up to JobSettings.max_attempts). Any other
# ImporterError (a file-level error, a refusal, a missing batch) fails the job once.
PASSING = (
    CheckingStoppedError,
    CommitFailedError,
    CommitUnknownError,
    DatabaseBusyError,
    WriteConflictError,
    TransportError,
)
RETRY_DELAY_SECONDS = 2.0


class _Heartbeat:
    """Renews a running job's lease and writes its progress, every heartbeat_seconds, in a thread."""

    def __init__(self, board: Board, claimed: Claimed, *, worker: str, settings: JobSettings) -> None:
        self.board, self.job_id, self.worker, self.settings = board, claimed.id, worker, settings
        self.rows_done, self.rows_total, self.phase = 0, None, "starting"
        self.rows_total_known: int | None = None
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{claimed.id}", daemon=True)

    def progress(self, progress: Progress) -> None:
        self.rows_done, self.rows_total_known, self.phase = (
            progress.rows_done,
            progress.rows_total,
            progress.phase.value,
        )

    def sent(self, done: int, todo: int) -> None:
        self.rows_done, self.rows_total_known, self.phase = done, todo, "sending"

    def beat(self) -> None:
        lease = utcnow() + dt.timedelta(seconds=self.settings.lease_seconds)
        try:
            kept = self.board.beat(
                self.job_id, Beat(self.worker, lease, self.rows_done, self.rows_total_known, self.phase)
            )
        except Exception as exc:  # a missed beat is repaired by the next; the lease is long
            _log.warning("heartbeat of job %s failed: %s", self.job_id, exc)
            return
        if not kept:
            self.lost = True

    def _run(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_seconds):
            self.beat()

    def __enter__(self) -> _Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def _summary_of(batch: Batch) -> dict[str, Any]:
    """The summary of a batch an earlier attempt saved (its worker died before finishing the job)."""
    return {
        "batch_id": batch.id,
        "type": batch.user_type,
        "dry_run": batch.dry_run,
        "rows": batch.rows,
        "created": batch.created,
        "skipped": batch.skipped,
        "rejected": batch.rejected,
        "errors_by_code": {},
        "report_dir": None,
        "warnings": [],
    }


def _run_import(
    engine: Engine, claimed: Claimed, settings: JobSettings, beat: _Heartbeat
) -> tuple[dict[str, Any], int, dict[str, bytes]]:
    from importer.pipeline import run_import

    assert claimed.batch_id is not None
    with Session(engine) as session:
        saved = session.get(Batch, claimed.batch_id)
        if saved is not None:  # an earlier attempt saved the batch, then its worker died
            return _summary_of(saved), saved.rows, {}
    options = claimed.options
    with tempfile.TemporaryDirectory(prefix="importer-job-") as folder:
        upload = Path(folder) / "upload" / str(options.get("file_name") or "upload")
        upload.parent.mkdir()
        if not copy_upload(engine, claimed.id, upload):
            raise ImporterError("the uploaded file is no longer there; upload it again.")
        result = run_import(
            engine,
            upload,
            org_ref=str(claimed.organization_id),
            actor_email=claimed.actor,
            user_type=UserType(options["user_type"]),
            dry_run=bool(options.get("dry_run")),
            all_or_nothing=bool(options.get("all_or_nothing")),
            settings=replace(settings.imports, report_dir=Path(folder) / "reports"),
            on_progress=beat.progress,
            batch_id=claimed.batch_id,
        )
        summary = result.to_dict()
        summary["report_dir"] = None  # a temporary folder: the files are in the database now
        files: dict[str, bytes] = {}
        if result.report_dir is not None and result.report_dir.is_dir():
            for path in sorted(result.report_dir.iterdir()):
                if path.is_file():
                    files[path.name] = path.read_bytes()
        if "summary.json" in files:
            files["summary.json"] = (json.dumps(summary, indent=2) + "\n").encode()
    return summary, result.rows, files


def _transport(mail: MailSettings) -> Any:
    from importer.activation.transports.file import FileTransport
    from importer.activation.transports.smtp import SmtpSecurity, SmtpTransport

    if mail.transport == "smtp":
        return SmtpTransport(
            mail.smtp_host,
            port=mail.smtp_port,
            security=SmtpSecurity(mail.smtp_security),
            user=mail.smtp_user,
            password=mail.smtp_password,
            connections=mail.smtp_connections,
        )
    return FileTransport(mail.outbox)


def _run_activations(
    engine: Engine, claimed: Claimed, settings: JobSettings, beat: _Heartbeat
) -> dict[str, Any]:
    from importer.activation.sending import send_activations

    mail = settings.mail
    if not mail.sender or not mail.base_url:
        raise ImporterError(
            "this worker has no From address or portal URL for activation emails "
            "(IMPORTER_FROM and IMPORTER_BASE_URL)."
        )
    with _transport(mail) as transport:
        result = send_activations(
            engine,
            str(claimed.organization_id),
            transport=transport,
            sender=mail.sender,
            base_url=mail.base_url,
            batch_id=claimed.batch_id,
            resend=bool(claimed.options.get("resend")),
            # As `send-activations --as`: audited with the account that asked, which also gets
            # the list of refused addresses; a member's own new link is sent in their own name.
            acting=Acting(
                claimed.actor,
                channel=Channel.SELF if claimed.options.get("self_service") else Channel.ACCOUNT,
            ),
            member_ids=claimed.options.get("member_ids"),
            on_progress=beat.sent,
        )
    return result.to_dict()


def _run_undo(engine: Engine, claimed: Claimed) -> dict[str, Any]:
    from importer.accounts.batches import undo_batch

    assert claimed.batch_id is not None
    with Session(engine) as session:
        batch = session.get(Batch, claimed.batch_id)
        if batch is None or batch.organization_id != claimed.organization_id:
            raise NotFoundError(f"no batch {claimed.batch_id!r} in this organization.")
    # The same call as `importer batch undo`: the actor's role is checked again and the undo is
    # audited with the account that asked for it, in the transaction that removes the members.
    acting = Acting(claimed.actor, channel=Channel.ACCOUNT)
    return undo_batch(engine, claimed.batch_id, acting=acting).to_dict()


def run_claimed(
    engine: Engine, board: Board, claimed: Claimed, *, worker: str, settings: JobSettings
) -> None:
    """Run one claimed job to its end: done, failed for good, or queued again to be retried."""
    if claimed.attempts > settings.max_attempts:
        error = f"the job was stopped {claimed.attempts - 1} times (its worker died); not tried again."
        fail(engine, board, claimed.id, worker=worker, retry_in=None, error=error)
        return
    try:
        with _Heartbeat(board, claimed, worker=worker, settings=settings) as beat:
            rows: int | None = None
            files: dict[str, bytes] = {}
            if claimed.kind is JobKind.IMPORT:
                summary, rows, files = _run_import(engine, claimed, settings, beat)
            elif claimed.kind is JobKind.ACTIVATIONS:
                summary = _run_activations(engine, claimed, settings, beat)
            else:
                summary = _run_undo(engine, claimed)
        finish(engine, board, claimed.id, worker=worker, summary=summary, rows=rows, files=files,
               batch_id=claimed.batch_id)  # fmt: skip
    except ImporterError as exc:
        passing = isinstance(exc, PASSING) and claimed.attempts < settings.max_attempts
        fail(engine, board, claimed.id, worker=worker, error=_line(exc),
             retry_in=RETRY_DELAY_SECONDS * claimed.attempts if passing else None)  # fmt: skip
    except Exception as exc:
        _log.exception("job %s failed (attempt %s)", claimed.id, claimed.attempts)
        again = claimed.attempts < settings.max_attempts
        fail(engine, board, claimed.id, worker=worker,
             error=f"unexpected error ({type(exc).__name__}: {_line(exc)})",
             retry_in=RETRY_DELAY_SECONDS * claimed.attempts if again else None)  # fmt: skip


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Worker:
    """Jobs run in this process: the queue's consumer threads claim and run jobs; a poller thread
    wakes them for work the queue did not announce (lost wake-ups, retries, leases run out)."""

    def __init__(self, engine: Engine, queue: Queue, *, settings: JobSettings, threads: int) -> None:
        self.engine, self.queue, self.settings = engine, queue, settings
        self.board = board_for(engine)
        self._stop = threading.Event()
        self._consumer = consumer(queue, threads=threads, idle_seconds=min(0.5, settings.poll_seconds))
        self._poller = threading.Thread(target=self._poll, name="importer-job-poller", daemon=True)
        queue.serve(self._work)

    def _work(self, _job_id: int) -> None:
        """A wake-up: run jobs while there are jobs this worker may claim."""
        name = worker_name(threading.current_thread().name)
        while not self._stop.is_set():
            try:
                claimed = claim_next(self.engine, self.board, worker=name, settings=self.settings)
            except ImporterError as exc:  # the database is busy: the poller tries again
                _log.warning("could not claim a job: %s", exc)
                return
            if claimed is None:
                return
            run_claimed(self.engine, self.board, claimed, worker=name, settings=self.settings)

    def _poll(self) -> None:
        next_purge = 0.0
        while not self._stop.wait(self.settings.poll_seconds):
            if time.monotonic() >= next_purge:
                next_purge = time.monotonic() + PURGE_EVERY_SECONDS
                try:
                    purge(self.engine, report_days=self.settings.report_days)
                except Exception as exc:  # tried again at the next purge
                    _log.warning("could not purge old report files: %s", exc)
            try:
                if has_work(self.engine, self.board):
                    self.queue.wake(0)
            except Exception as exc:
                _log.warning("could not look for jobs: %s", exc)

    def start(self) -> Worker:
        """Start the consumer threads and the poller; wake them once for work already waiting."""
        self._consumer.start()
        self._poller.start()
        self.queue.wake(0)
        return self

    def stop(self, *, wait: bool = True) -> None:
        """Take no more jobs; with `wait`, let the running ones finish first."""
        self._stop.set()
        self._consumer.stop(graceful=wait)
        self._poller.join(timeout=5)


def start_embedded_worker(
    engine: Engine, *, queue: Queue, settings: JobSettings | None = None, threads: int = 1
) -> Worker:
    """Run jobs in threads of this process (the web server's): a handle whose .stop() ends them."""
    return Worker(engine, queue, settings=settings or JobSettings(), threads=threads).start()


def run_worker(
    engine_url: str,
    *,
    queue_url: str | None,
    settings: JobSettings | None = None,
    stop: threading.Event | None = None,
    threads: int = 1,
) -> None:
    """Run jobs until `stop` is set, then let the running ones finish (the `importer worker` loop)."""
    engine = open_database(engine_url)
    queue = Queue(queue_url, database_url=engine_url)
    worker = Worker(engine, queue, settings=settings or JobSettings(), threads=threads).start()
    stop = stop or threading.Event()
    try:
        while not stop.wait(0.2):
            pass
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            worker.stop(wait=True)
        engine.dispose()
