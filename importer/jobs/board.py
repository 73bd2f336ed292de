"""Where a running job's heartbeat (lease) and progress are written while it works.

PostgreSQL: the job's own row, in short transactions of their own (an import's transaction never
touches the jobs table, so nothing waits). SQLite has one writer: an import holds the write lock
until it commits, so a heartbeat in the same file would wait for the very import it reports on.
There the heartbeats go to a small SQLite file beside the database (`<database>.progress`), which
every process on the machine reads.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import sqlite3
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, event, update
from sqlalchemy.pool import NullPool

from importer.store.engine import is_sqlite
from importer.store.models import Job, JobStatus


@dataclass(frozen=True, slots=True)
class Beat:
    """A running job's latest word: who holds it, until when, and how far it is."""

    worker: str
    lease_until: dt.datetime
    rows_done: int
    rows_total: int | None
    phase: str


class Board:
    """Heartbeats and progress of running jobs: on the job rows (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def beat(self, job_id: int, beat: Beat) -> bool:
        """Renew the lease and write the progress; False when the job is no longer this worker's."""
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(Job)
                .where(Job.id == job_id, Job.worker == beat.worker, Job.status == JobStatus.RUNNING)
                .values(
                    lease_until=beat.lease_until,
                    rows_done=beat.rows_done,
                    rows_total=beat.rows_total,
                    phase=beat.phase,
                )
            ).rowcount
        return bool(changed)

    def read(self, job_ids: list[int]) -> dict[int, Beat]:
        """The beats kept apart from the job rows (none here: the rows hold them)."""
        return {}

    def clear(self, job_id: int) -> None:
        """Forget a finished job's beats."""


class SqliteBoard(Board):
    """Heartbeats in `<database>.progress`, a WAL SQLite file of one small table."""

    def __init__(self, engine: Engine, path: str) -> None:
        super().__init__(engine)
        self.path = path
        with self._connect() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS beats (job_id INTEGER PRIMARY KEY, worker TEXT NOT NULL, "
                "lease_until TEXT NOT NULL, rows_done INTEGER NOT NULL, rows_total INTEGER, "
                "phase TEXT NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    def beat(self, job_id: int, beat: Beat) -> bool:
        """Write the beat unless another worker holds the job now."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT worker FROM beats WHERE job_id = ?", (job_id,)).fetchone()
            if row is not None and row[0] != beat.worker:
                conn.execute("ROLLBACK")
                return False
            conn.execute(
                "INSERT OR REPLACE INTO beats VALUES (?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    beat.worker,
                    beat.lease_until.isoformat(),
                    beat.rows_done,
                    beat.rows_total,
                    beat.phase,
                ),
            )
            conn.execute("COMMIT")
            return True
        finally:
            conn.close()

    def take(self, job_id: int, beat: Beat) -> None:
        """The job is this worker's now (claimed): its beats start afresh."""
        conn = self._connect()
        try:
            conn.execute(
                "INSERT OR REPLACE INTO beats VALUES (?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    beat.worker,
                    beat.lease_until.isoformat(),
                    beat.rows_done,
                    beat.rows_total,
                    beat.phase,
                ),
            )
        finally:
            conn.close()

    def read(self, job_ids: list[int]) -> dict[int, Beat]:
        """The latest beat of each of these jobs that has one."""
        if not job_ids:
            return {}
        conn = self._connect()
        try:
            marks = ",".join("?" * len(job_ids))
            rows = conn.execute(f"SELECT * FROM beats WHERE job_id IN ({marks})", job_ids).fetchall()  # noqa: S608
        finally:
            conn.close()
        return {
            row[0]: Beat(
                worker=row[1],
                lease_until=dt.datetime.fromisoformat(row[2]),
                rows_done=row[3],
                rows_total=row[4],
                phase=row[5],
            )
            for row in rows
        }

    def clear(self, job_id: int) -> None:
        """Forget a finished job's beats."""
        conn = self._connect()
        try:
            conn.execute("DELETE FROM beats WHERE job_id = ?", (job_id,))
        finally:
            conn.close()


def board_for(engine: Engine) -> Board:
    """The board of this database: its job rows, or the file beside a SQLite database."""
    if is_sqlite(engine):
        database = engine.url.database or ""
        if database and database != ":memory:":
            return SqliteBoard(engine, os.path.abspath(database) + ".progress")
    return Board(engine)


@functools.cache
def _sqlite_reader(url: str) -> Engine:
    engine = create_engine(url, poolclass=NullPool)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # each statement reads on its own, taking no lock

    return engine


def reader(engine: Engine) -> Engine:
    """An engine for reading job state. The store's SQLite engine begins every transaction with
    BEGIN IMMEDIATE (the write lock), which would wait for a running import; reads need no lock."""
    if is_sqlite(engine) and engine.url.database not in (None, "", ":memory:"):
        return _sqlite_reader(engine.url.render_as_string(hide_password=False))
    return engine
