"""run_import(...) -> ImportResult: read -> validate -> load -> report, one transaction per batch."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
from collections.abc import Callable, Iterable
from itertools import repeat
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from importer.emails import suggest_domain
from importer.load import MemberLoader, finish_batch, record_batch, start_batch
from importer.models import Role, Status, utcnow
from importer.orgs import Actor, find_actor, find_organization, list_teams
from importer.read import Chunk, OpenedSheet, open_sheet
from importer.report import write_report
from importer.results import ErrorCode, ImportResult, Outcome, RejectedRow, RowError, SkippedRow
from importer.settings import Settings
from importer.sheets import SheetSpec, UserType, load_sheet
from importer.validate import DuplicateTracker, RuleContext, Team, Validator, duplicate_keys, provider_hint
from importer.workbook import describe_template_stamp, read_template_stamp

# (rows just processed, about how many rows the file has or None): drives the CLI's progress bar.
ProgressCallback = Callable[[int, int | None], None]
PIN_DIGITS = 6
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
) -> ImportResult:
    """Import one sheet: valid rows become pending members, every other row is explained.

    A dry run is the real run, rolled back. File-level problems and refusals raise ImporterError
    before anything is written.
    """
    settings = settings or Settings()
    spec = load_sheet(user_type)
    opened = open_sheet(path, spec, sheet_name=sheet_name, settings=settings)
    started, started_at = time.perf_counter(), utcnow()
    result = ImportResult(
        batch_id=new_batch_id(),
        user_type=user_type.value,
        file_name=path.name,
        sha256=file_sha256(path),
        dry_run=dry_run,
        all_or_nothing=all_or_nothing,
        headers=opened.headers,
        started_at=started_at.isoformat(timespec="seconds"),
    )
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            org_id, actor, context = _resolve(conn, org_ref=org_ref, actor_email=actor_email)
            start_batch(conn, _batch_values(result, org_id=org_id, actor=actor, started_at=started_at))
            run = _Run(conn, spec=spec, opened=opened, result=result, org_id=org_id, context=context)
            for chunk in opened.iter_chunks(chunk_rows=settings.chunk_rows):
                run.process(chunk)
                if progress is not None:
                    progress(len(chunk.raw), opened.row_estimate)
            run.finish()
            stamp = describe_template_stamp(read_template_stamp(path), spec=spec)
            result.warnings = [
                *([stamp] if stamp else []),
                *opened.warnings,
                *_capped(run.typo_warnings, limit=TYPO_WARNINGS_SHOWN),
            ]
            refused = all_or_nothing and result.rejected > 0
            if refused:
                result.outcome, result.created = Outcome.REFUSED, 0
            elif dry_run:
                result.outcome = Outcome.DRY_RUN
            result.finished_at = utcnow().isoformat(timespec="seconds")
            result.seconds = time.perf_counter() - started
            result.report_dir = settings.report_dir / result.batch_id
            write_report(result, spec=spec)
            if dry_run or refused:
                transaction.rollback()
                with conn.begin():
                    record_batch(
                        conn,
                        _batch_values(result, org_id=org_id, actor=actor, started_at=started_at)
                        | _counts(result),
                    )
            else:
                finish_batch(conn, result.batch_id, _counts(result))
                transaction.commit()
        except BaseException:
            if transaction.is_active:
                transaction.rollback()
            raise
    return result


class _Run:
    """The state of one import while its chunks stream through."""

    def __init__(
        self,
        conn: Connection,
        *,
        spec: SheetSpec,
        opened: OpenedSheet,
        result: ImportResult,
        org_id: int,
        context: RuleContext,
    ) -> None:
        self.spec = spec
        self.opened = opened
        self.result = result
        self.context = context
        self.user_type = spec.user_type
        headers = {key: opened.header_of(key) for key in opened.columns}
        self.validator = Validator(spec, context, headers=headers)
        self.duplicates = DuplicateTracker()
        self.loader = MemberLoader(conn, org_id=org_id, batch_id=result.batch_id, user_type=spec.user_type)
        self.org_id = org_id
        self.skipped: dict[int, SkippedRow] = {}
        self.rejected: dict[int, RejectedRow] = {}
        self.errors: list[RowError] = []
        self.created = 0
        self.pins: dict[int, tuple[str, str]] = {}
        self.typo_warnings: list[str] = []

    def process(self, chunk: Chunk) -> None:
        """Validate one chunk, reject its bad rows, skip existing members, insert the rest."""
        frame = self._with_defaults(chunk.frame)
        self.result.rows += len(frame)
        errors = self.validator.check_chunk(frame)
        bad_rows = {e.row_number for e in errors}
        duplicate_rows = self.duplicates.observe(*self._keys(frame, errors))
        rejected = bad_rows | duplicate_rows
        self.errors.extend(errors)
        for position, row in enumerate(frame.index.tolist()):
            if row in rejected:
                self.rejected[row] = RejectedRow(row, chunk.raw[position])
        candidates = frame[~frame.index.isin(list(rejected))]
        if candidates.empty:
            return
        # No look-up first: the unique indexes decide (ON CONFLICT DO NOTHING), which also covers a
        # member created a moment ago by another import of the same file.
        not_written = self.loader.insert(self._member_tuples(candidates))
        shown = candidates["email" if self.user_type is UserType.PORTAL else "name"]
        for row in sorted(not_written):
            self._skip(row, str(shown[row]))
            self.pins.pop(row, None)
        created = (
            [r for r in candidates.index.tolist() if r not in not_written]
            if not_written
            else candidates.index
        )
        self.created += len(created)
        if self.user_type is UserType.PORTAL:
            self._warn_provider_typos(candidates.loc[created, "email"])

    def finish(self) -> None:
        """Settle duplicates whose first copy was in an earlier chunk; fill in the result."""
        late = self.duplicates.late
        if late:
            # Only rows this batch created come back out; the rest were rejected or skipped.
            self.created -= self.loader.remove(late)
            for row in late:
                self.skipped.pop(row, None)
            self._recover_rows(late)
        key, code = (
            ("email", ErrorCode.EMAIL_DUPLICATE_IN_FILE)
            if self.user_type is UserType.PORTAL
            else ("name", ErrorCode.MEMBER_DUPLICATE_IN_FILE)
        )
        self.errors.extend(self.duplicates.errors(self.validator, key=key, code=code))
        result = self.result
        result.errors = sorted(self.errors, key=lambda e: (e.row_number, self._column_order(e.column)))
        result.rejected_rows = [self.rejected[r] for r in sorted(self.rejected)]
        result.skipped = [self.skipped[r] for r in sorted(self.skipped)]
        result.created = self.created
        result.generated_pins = [
            (row, name, pin) for row, (name, pin) in sorted(self.pins.items()) if row not in late
        ]

    def _warn_provider_typos(self, emails: pd.Series) -> None:
        """A valid address at a near-miss of a big mail provider is imported, with a warning."""
        addresses = emails.tolist()
        if not any(suggest_domain(d) for d in {a.rpartition("@")[2].lower() for a in addresses}):
            return
        for row, email in zip(emails.index.tolist(), addresses, strict=True):
            hint = provider_hint(email)
            if hint:
                self.typo_warnings.append(
                    f"Row {row}: {email} was accepted.{hint} If it is a typo, undo this batch "
                    f"(importer batch undo {self.result.batch_id}), fix the sheet and import it again."
                )

    def _column_order(self, header: str) -> int:
        try:
            return self.opened.headers.index(header)
        except ValueError:
            return len(self.opened.headers)

    def _recover_rows(self, rows: set[int]) -> None:
        """The values of rows taken back after their chunk was gone, read again from the file."""
        shown = self.opened.columns["email" if self.user_type is UserType.PORTAL else "name"]
        for row, values in self.opened.pick_rows(rows).items():
            self.rejected.setdefault(row, RejectedRow(row, values))
            self.duplicates.values[row] = values[shown]

    def _with_defaults(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Optional columns absent from the file read as blank."""
        for column in self.spec.columns:
            if column.key not in frame:
                frame[column.key] = ""
        return frame

    def _keys(self, frame: pd.DataFrame, errors: list[RowError]) -> tuple[pd.Series, pd.Series]:
        """Duplicate keys of the rows whose key cell is itself valid (the cell's shown value too)."""
        key = "email" if self.user_type is UserType.PORTAL else "name"
        header = self.validator.headers.get(key)
        bad = [e.row_number for e in errors if e.column == header]
        shown = frame[key]
        valid = shown.ne("") & ~frame.index.isin(bad)
        return duplicate_keys(frame, user_type=self.user_type, valid=valid), shown

    def _skip(self, row: int, shown: str) -> None:
        self.skipped[row] = SkippedRow(row, ErrorCode.MEMBER_EXISTS, ErrorCode.MEMBER_EXISTS.template, shown)

    def _member_tuples(self, frame: pd.DataFrame) -> list[tuple[Any, ...]]:
        """The hot path: one tuple per member, columns in load.MEMBER_COLUMNS order, built by zip."""
        n = len(frame)
        now = utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")  # formatted once, not per row by the driver
        names = frame["name"].tolist()
        cells = frame["team"].tolist()
        teams = {cell: self.context.team_for(cell) for cell in set(cells)}  # a few distinct teams
        team_ids = [t.id if t else None for t in map(teams.__getitem__, cells)]
        rows = frame.index.tolist()
        emails: Iterable[str | None]
        email_keys: Iterable[str | None]
        roles: Iterable[str]
        pins: Iterable[str | None]
        if self.user_type is UserType.PORTAL:
            emails = frame["email"].tolist()
            email_keys = frame["email"].str.lower().tolist()
            by_cell = {
                r: (Role.ADMIN if r.lower() == "admin" else Role.MEMBER).value for r in set(frame["role"])
            }
            roles = list(map(by_cell.__getitem__, frame["role"].tolist()))
            pins = repeat(None)
        else:
            emails = email_keys = repeat(None)
            roles = repeat(Role.MEMBER.value)
            pins = [
                self._pin_hash(row, name, pin)
                for row, name, pin in zip(rows, names, frame["pin"].tolist(), strict=True)
            ]
        columns = (
            repeat(self.org_id, n),
            names,
            frame["name"].str.lower().tolist(),
            emails,
            email_keys,
            repeat(self.user_type.value),
            roles,
            team_ids,
            (t or 0 for t in team_ids),
            repeat(Status.PENDING.value),
            repeat(self.result.batch_id),
            rows,
            pins,
            repeat(now),
        )
        # The first column has n items and bounds the endless repeats.
        return list(zip(*columns, strict=False))

    def _pin_hash(self, row: int, name: str, pin: str) -> str:
        if not pin:
            pin = f"{secrets.randbelow(10**PIN_DIGITS):0{PIN_DIGITS}d}"
            self.pins[row] = (name, pin)
        return hash_pin(pin)


def _capped(lines: list[str], *, limit: int) -> list[str]:
    if len(lines) <= limit:
        return lines
    return [
        *lines[:limit],
        f"... and {len(lines) - limit} more addresses that look like mail-provider typos.",
    ]


def hash_pin(pin: str) -> str:
    """A salted hash of a PIN.

    Salted SHA-256, not a slow hash: a million PINs must load in seconds, and a 4–8 digit PIN
    cannot be protected by hashing alone anyway; the hash only keeps PINs out of plain sight.
    """
    salt = secrets.token_hex(8)
    return f"sha256${salt}${hashlib.sha256((salt + pin).encode()).hexdigest()}"


def verify_pin(stored: str, pin: str) -> bool:
    """Whether a PIN matches its stored hash."""
    _, salt, digest = stored.split("$")
    return secrets.compare_digest(hashlib.sha256((salt + pin).encode()).hexdigest(), digest)


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
        "outcome": result.outcome.value,
        "finished_at": utcnow(),
        "seconds": result.seconds,
        "report_dir": str(result.report_dir) if result.report_dir else None,
    }
