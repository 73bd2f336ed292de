"""run_import(...) -> ImportResult: read -> validate -> load -> report, one transaction per batch.

Over 400 lines because it is the one place that joins reading, checks, store and reports: the
batch's transaction, its settled commit outcome and its report files are one sequence.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import hashlib
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.orm import Session

from importer.accounts.audit import Acting, Channel, record_on
from importer.checking import (
    Checked,
    Checker,
    FilesWritten,
    RejectedFiles,
    Rejections,
    Settled,
    SheetSource,
    check_all,
    second_process,
)
from importer.checks.rules import RuleContext, Team, provider_hint
from importer.errors import CommitFailedError, CommitUnknownError
from importer.messages import row_message
from importer.reading.sheet import open_sheet
from importer.records import BatchOutcome
from importer.reports.files import write_report
from importer.settings import Settings
from importer.sheets import SheetSpec, load_sheet
from importer.stamp import describe_template_stamp, read_template_stamp
from importer.store.engine import parents_checked_by_writer
from importer.store.load import MemberLoader, finish_batch, record_batch, start_batch
from importer.store.models import AuditAction, Batch, utcnow
from importer.store.orgs import find_actor, find_organization, list_teams
from importer.values import (
    Actor,
    ErrorCode,
    GeneratedPin,
    ImportResult,
    Notice,
    Outcome,
    SkippedRow,
    UserType,
    WarningCode,
)

# (rows just processed, about how many rows the file has or None): drives the CLI's progress bar.
ProgressCallback = Callable[[int, int | None], None]
# How often at most `on_progress` hears of rows going by (a phase change is always told at once).
PROGRESS_INTERVAL_SECONDS = 0.25


class Phase(enum.StrEnum):
    """Where an import is: reading and checking rows, writing its report, saving the batch."""

    READING = "reading"
    REPORTING = "reporting"
    SAVING = "saving"


@dataclass(frozen=True, slots=True)
class Progress:
    """How far an import is: rows done of about how many (None until known), and its phase."""

    rows_done: int
    rows_total: int | None
    phase: Phase


class _Progress:
    """Tells `on_progress` how far the run is, at most every PROGRESS_INTERVAL_SECONDS."""

    def __init__(self, on_progress: Callable[[Progress], None] | None) -> None:
        self.on_progress = on_progress
        self.rows_done = 0
        self.rows_total: int | None = None
        self.phase = Phase.READING
        self.told = 0.0

    def rows(self, rows: int, total: int | None) -> None:
        self.rows_done += rows
        self.rows_total = total if total is None else max(total, self.rows_done)
        if self.on_progress is not None and time.monotonic() - self.told >= PROGRESS_INTERVAL_SECONDS:
            self._tell()

    def enter(self, phase: Phase) -> None:
        self.phase = phase
        if self.on_progress is not None:
            self.rows_total = self.rows_done  # every row is read once the report is written
            self._tell()

    def _tell(self) -> None:
        assert self.on_progress is not None
        self.told = time.monotonic()
        self.on_progress(Progress(self.rows_done, self.rows_total, self.phase))


TYPO_WARNINGS_SHOWN = 20


def run_import(
    engine: Engine,
    path: Path,
    *,
    org_ref: str,
    actor_email: str,
    user_type: UserType,
    sheet_name: str | None = None,
    dry_run: bool = False,
    all_or_nothing: bool = False,
    settings: Settings | None = None,
    progress: ProgressCallback | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    batch_id: str | None = None,
    via: Channel = Channel.CLI,
) -> ImportResult:
    """Import one sheet: valid rows become pending members, every other row is explained.

    A batch that writes is audited (`import`, the actor as `via` names them) in its transaction.

    A dry run is the real run, rolled back. File-level problems and refusals raise ImporterError
    before anything is written. Process-wide state (the garbage collector's thresholds, the csv
    module's field limit) is left as it is: the entry point that owns the process may tune it
    (importer.cli.process.tuned_for_import).

    `progress` hears of each chunk of rows (the CLI's bar); `on_progress` of rows done, about how
    many and the phase, a few times a second at most (a background job's progress). `batch_id`
    (from new_batch_id) is the batch's id when the caller drew it beforehand: a job names its batch
    when it is queued, and a second attempt at the same job is refused by the batch's primary key.
    """
    settings = settings or Settings()
    spec = load_sheet(user_type)
    opened = open_sheet(path, spec, sheet_name=sheet_name, settings=settings)
    started, started_at = time.perf_counter(), utcnow()
    told = _Progress(on_progress)
    result = ImportResult(
        batch_id=batch_id or new_batch_id(),
        user_type=user_type.value,
        file_name=path.name,
        sha256=file_sha256(path),
        dry_run=dry_run,
        all_or_nothing=all_or_nothing,
        headers=opened.headers,
        started_at=started_at.isoformat(timespec="seconds"),
    )
    # Read before the write transaction, in a short one of its own: the team-suggestion index is
    # built here, not while every other writer waits. A team deleted meanwhile is caught by
    # check_parents, inside the write transaction, before anything is committed.
    with engine.connect() as conn:
        org_id, actor, context = _resolve(conn, org_ref=org_ref, actor_email=actor_email)
    with engine.connect() as conn, parents_checked_by_writer(conn):
        transaction = conn.begin()
        try:
            start_batch(conn, _batch_values(result, org_id=org_id, actor=actor, started_at=started_at))
            # Named only now: a second attempt at the same batch id, refused above, leaves the first's.
            result.report_dir = settings.report_dir / result.batch_id
            run = _Run(conn, spec=spec, result=result, org_id=org_id)
            checker = Checker(spec, opened=opened, context=context)
            teams = [team.name for team in context.teams.values()]
            worker = second_process(opened.row_estimate, settings)
            chunks = opened.iter_chunks(chunk_rows=settings.chunk_rows)
            # A worker writes rejected.xlsx as soon as it has read the file; inline, the report does.
            files = RejectedFiles(result, spec, teams) if worker else None
            source = SheetSource(path, spec, sheet_name, settings)
            checking = check_all(checker, chunks, worker=worker, files=files, source=source)
            with contextlib.closing(checking) as checks:
                for checked in checks:
                    if isinstance(checked, Settled):
                        run.finish(checked)
                        break
                    assert isinstance(checked, Checked)
                    run.process(checked)
                    if progress is not None:
                        progress(checked.rows, opened.row_estimate)
                    told.rows(checked.rows, opened.row_estimate)
                stamp = describe_template_stamp(read_template_stamp(path), spec=spec)
                result.warnings = [
                    *([Notice(WarningCode.TEMPLATE_MISMATCH, stamp)] if stamp else []),
                    *run.warnings,
                    *_capped(run.typo_warnings, limit=TYPO_WARNINGS_SHOWN),
                ]
                refused = all_or_nothing and result.rejected > 0
                if refused:
                    result.outcome, result.created = Outcome.REFUSED, 0
                elif dry_run:
                    result.outcome = Outcome.DRY_RUN
                result.finished_at = utcnow().isoformat(timespec="seconds")
                result.seconds = time.perf_counter() - started
                if not (dry_run or refused):
                    run.loader.check_parents()
                told.enter(Phase.REPORTING)
                write_report(result, spec=spec, teams=teams, xlsx_written=worker)
                written = next(checks)  # rejected.xlsx, written meanwhile by the worker
                assert isinstance(written, FilesWritten)
            if dry_run or refused:
                transaction.rollback()
            else:
                told.enter(Phase.SAVING)
                finish_batch(conn, result.batch_id, _counts(result) | run.loader.id_range())
                record_on(
                    conn,
                    actor=Acting(actor.email, via).label,
                    action=AuditAction.IMPORT,
                    organization_id=org_id,
                    subject=result.batch_id,
                    detail=f"{result.file_name}: {result.created} created, {len(result.skipped)} skipped, "
                    f"{result.rejected} rejected",
                )
                _commit(engine, conn, result.batch_id)
        except BaseException as exc:
            if transaction.is_active and not conn.invalidated:
                transaction.rollback()
            # No report of a batch that is not there; one that may be there keeps its report.
            if result.report_dir is not None and not isinstance(exc, CommitUnknownError):
                shutil.rmtree(result.report_dir, ignore_errors=True)
            raise
    if dry_run or refused:  # the record of a run that wrote nothing, foreign keys checked again
        with engine.begin() as conn:
            record_batch(
                conn,
                _batch_values(result, org_id=org_id, actor=actor, started_at=started_at) | _counts(result),
            )
    return result


def _commit(engine: Engine, conn: Connection, batch_id: str) -> None:
    """Commit the batch's transaction; when COMMIT fails, find out whether it happened anyway.

    A connection lost during or after COMMIT leaves its outcome unknown: the server may have
    committed before the answer was lost. The batch row is written in the same transaction, so a
    new connection that finds it knows the batch is there (success, the report stays); one that
    does not knows nothing was written (a failure, the report goes).
    """
    try:
        conn.commit()
    except Exception as exc:
        with contextlib.suppress(Exception):
            conn.invalidate()  # a session that may still hold the transaction: closed, rolled back
        committed = _batch_saved(engine, batch_id)
        if committed is None:
            raise CommitUnknownError(
                f"the database connection was lost while batch {batch_id} was being saved, and the "
                f"database cannot be reached to find out whether it was ({_first_line(exc)}). Look "
                "the batch up before importing the file again: if it is there, it is complete; its "
                "report is kept."
            ) from exc
        if not committed:
            raise CommitFailedError(
                f"the database did not save batch {batch_id} ({_first_line(exc)}); nothing was "
                "written. Run the import again."
            ) from exc


def _batch_saved(engine: Engine, batch_id: str) -> bool | None:
    """Whether the batch row is in the database, asked on a new connection; None if unreachable."""
    try:
        with engine.connect() as conn:
            return conn.scalar(select(Batch.id).where(Batch.id == batch_id)) is not None
    except Exception:
        return None


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Run:
    """The writing side of one import: members in, skipped rows noted, the result filled in."""

    def __init__(self, conn: Connection, *, spec: SheetSpec, result: ImportResult, org_id: int) -> None:
        self.result = result
        self.user_type = spec.user_type
        self.loader = MemberLoader(conn, org_id=org_id, batch_id=result.batch_id, user_type=spec.user_type)
        self.skipped: dict[int, SkippedRow] = {}
        self.rejections = Rejections()
        self.created = 0
        self.pins: dict[int, tuple[str, str, str]] = {}
        self.typos: list[tuple[int, str]] = []  # (row, address) created at a mistyped provider?
        self.typo_warnings: list[Notice] = []
        self.warnings: list[Notice] = []

    def process(self, checked: Checked) -> None:
        """Record a checked chunk's rejections; write its members, skipping those that exist."""
        self.result.rows += checked.rows
        self.rejections.add(checked)
        self.pins.update(checked.pins)
        members = checked.members
        if not members:
            return
        # No look-up first: the unique indexes decide (ON CONFLICT DO NOTHING), which also covers a
        # member created a moment ago by another import of the same file.
        not_written = self.loader.insert(members)  # some of the chunk's source rows
        if not_written:
            for row, shown in zip(members.source_rows, members.shown(), strict=True):
                if row in not_written:
                    self._skip(row, shown)
                    self.pins.pop(row, None)
        self.created += len(members) - len(not_written)
        self.typos.extend((row, email) for row, email in checked.typos if row not in not_written)

    def finish(self, settled: Settled) -> None:
        """Settle duplicates whose first copy was in an earlier chunk; fill in the result."""
        late = settled.late
        if late:
            # Only rows this batch created come back out; the rest were rejected or skipped.
            self.created -= self.loader.remove(late)
            for row in late:
                self.skipped.pop(row, None)
        self.rejections.settle(settled)
        self.warnings = settled.warnings
        self._warn_provider_typos(late)
        result = self.result
        self.rejections.fill(result)
        result.skipped = [self.skipped[r] for r in sorted(self.skipped)]
        result.created = self.created
        result.generated_pins = [
            GeneratedPin(row, name, team, pin)
            for row, (name, team, pin) in sorted(self.pins.items())
            if row not in late
        ]

    def _warn_provider_typos(self, late: set[int]) -> None:
        """A valid address at a near-miss of a big mail provider is imported, with a warning."""
        for row, email in self.typos:
            hint = provider_hint(email) if row not in self.skipped else ""
            if hint and row not in late:
                self.typo_warnings.append(
                    Notice(
                        WarningCode.EMAIL_PROVIDER_TYPO,
                        f"Row {row}: {email} was accepted.{hint} If it is a typo, undo this batch, fix "
                        "the sheet and import it again.",
                    )
                )

    def _skip(self, row: int, shown: str) -> None:
        self.skipped[row] = SkippedRow(
            row, ErrorCode.MEMBER_EXISTS, row_message(ErrorCode.MEMBER_EXISTS), shown
        )


def _capped(lines: list[Notice], *, limit: int) -> list[Notice]:
    if len(lines) <= limit:
        return lines
    return [
        *lines[:limit],
        Notice(
            WarningCode.EMAIL_PROVIDER_TYPO,
            f"... and {len(lines) - limit} more addresses that look like mail-provider typos.",
        ),
    ]


def new_batch_id() -> str:
    """A sortable, unguessable batch id, also the report folder's name."""
    return f"{utcnow():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def file_sha256(path: Path) -> str:
    """The uploaded file's SHA-256, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def _resolve(conn: Connection, *, org_ref: str, actor_email: str) -> tuple[int, Actor, RuleContext]:
    with Session(bind=conn) as session:
        org = find_organization(session, org_ref)
        actor = find_actor(session, org, actor_email)
        teams = {t.name_key: Team(id=t.id, name=t.name) for t in list_teams(session, org.id)}
        return org.id, actor, RuleContext(actor=actor, teams=teams)


def _batch_values(
    result: ImportResult, *, org_id: int, actor: Actor, started_at: dt.datetime
) -> dict[str, Any]:
    return {
        "id": result.batch_id,
        "organization_id": org_id,
        "user_type": result.user_type,
        "file_name": result.file_name,
        "sha256": result.sha256,
        "actor_email": actor.email,
        "dry_run": result.dry_run,
        "all_or_nothing": result.all_or_nothing,
        "started_at": started_at,
    }


def _counts(result: ImportResult) -> dict[str, Any]:
    return {
        "rows": result.rows,
        "created": result.created,
        "skipped": len(result.skipped),
        "rejected": result.rejected,
        "outcome": BatchOutcome(result.outcome.value).value,
        "finished_at": utcnow(),
        "seconds": result.seconds,
        "report_dir": str(result.report_dir) if result.report_dir else None,
    }
