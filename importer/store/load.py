"""SQLAlchemy 2.0 bulk load: tuples in, inside the batch's single transaction."""

from __future__ import annotations

import contextlib
import re
import zlib
from collections.abc import Iterable, Iterator
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np
from sqlalchemy import Connection, and_, delete, func, insert, select, update

from importer.addresses import email_keys
from importer.errors import NotFoundError
from importer.records import BatchOutcome
from importer.store.engine import database_error
from importer.store.models import Batch, Member, Organization, Team, utcnow
from importer.values import Members, Role, Status, UserType

# The member columns that differ from row to row, in the order of the tuples insert() binds ...
ROW_COLUMNS: tuple[str, ...] = (
    "source_row",
    "name",
    "name_key",
    "email",
    "email_key",
    "role",
    "team_id",
    "team_ref",
    "pin_hash",
)
# ... and those that are the same for every row of a batch: bound once, not once per row (binding
# 14 values a row instead of 9 made the SQLite insert 20% slower).
BATCH_COLUMNS: tuple[str, ...] = ("organization_id", "user_type", "status", "batch_id", "created_at")
_LOOKUP_BATCH = 5000  # under SQLite's 32,766 bound parameters
_STAGING = "member_staging"
_PG_FOREIGN_KEY_VIOLATION = "23503"
_PG_UNIQUE_VIOLATION = "23505"
# The advisory lock imports into one organization take turns with (its key is the organization id).
_IMPORT_LOCK_SPACE = zlib.crc32(b"import") & 0x7FFF_FFFF
# The parent each foreign key of members points to, by a word of the constraint's name.
_PARENTS = {
    "team_id": "a team named in the file",
    "batch_id": "batch {batch}",
    "organization": "the organization",
}
# What a constant may hold when it is written into SQL text (SQLite): ours, and checked.
_SAFE_CONSTANT = re.compile(r"[A-Za-z0-9 :.\-]*")


class MemberLoader:
    """Writes one batch's members on its open transaction; reports the rows that already exist.

    Finds its own rows again through the range of member ids it wrote (above the largest id there
    was before its first write), never through an index on the batch: the bulk path writes no
    batch index entry (migration 0008). id_range() is that range, kept on the batch.
    """

    def __init__(self, conn: Connection, *, org_id: int, batch_id: str, user_type: UserType) -> None:
        self.conn = conn
        self.org_id = org_id
        self.batch_id = batch_id
        self.user_type = user_type
        self._staging_ready = False
        self._postgres = conn.dialect.name == "postgresql"
        self._team_ids: set[int | None] = set()
        self._before: int | None = None  # the largest member id before this batch's first write
        self._conflicted = False  # PostgreSQL: a chunk met a member that exists; stage from now on
        # SQLite: each chunk written whole, as (its first member id, its source rows in the order
        # written): SQLite numbers new rows one above the largest id, and the write lock keeps
        # anyone else from writing in between, so a row's member id is first + its position.
        self._spans: list[tuple[int, np.ndarray[Any, np.dtype[np.int64]]]] = []

    def insert(self, members: Members) -> set[int]:
        """Insert members; return the source rows NOT written because they exist already.

        ON CONFLICT DO NOTHING (no target) works on SQLite and PostgreSQL alike and honours the
        partial unique indexes: a member created meanwhile by another import is simply not written.
        """
        if not members:
            return set()
        rows = _row_tuples(members)
        # In the order of the unique key: each index page is then visited once per chunk, not once
        # per row (-20% of SQLite's insert time for a million rows). Member ids follow it within a
        # chunk, as they followed it on PostgreSQL before.
        rows.sort(key=_EMAIL_KEY if members.emails is not None else _NAME_TEAM_KEY)
        self._team_ids.update(members.team_ids)
        constants = (
            self.org_id,
            self.user_type.value,
            Status.PENDING.value,
            self.batch_id,
            utcnow().strftime("%Y-%m-%d %H:%M:%S.%f"),  # formatted once, as SQLAlchemy stores it
        )
        if self._postgres:
            return self._copy_insert(members, rows, constants)
        before = self._largest_id()
        if self._before is None:
            self._before = before
        values = ", ".join(["?"] * len(ROW_COLUMNS) + [_sqlite_literal(c) for c in constants])
        result = self.conn.exec_driver_sql(
            f"INSERT INTO members ({', '.join(ROW_COLUMNS + BATCH_COLUMNS)}) "  # noqa: S608
            f"VALUES ({values}) ON CONFLICT DO NOTHING",
            rows,
        )
        if result.rowcount == len(rows):
            if self._largest_id() == before + len(rows):  # numbered one after another, as expected
                written_rows = np.fromiter(map(_SOURCE_ROW, rows), dtype=np.int64, count=len(rows))
                self._spans.append((before + 1, written_rows))
            return set()
        # Someone else created some of these since we looked: the rows written are those above the
        # largest id before this chunk (the transaction holds SQLite's write lock: they are ours).
        written = set(self.conn.scalars(select(Member.source_row).where(Member.id > before)).all())
        return set(members.source_rows) - written

    def _largest_id(self) -> int:
        return int(self.conn.scalar(select(func.coalesce(func.max(Member.id), 0))) or 0)

    def _copy_insert(
        self, members: Members, rows: list[tuple[Any, ...]], constants: tuple[Any, ...]
    ) -> set[int]:
        """PostgreSQL: COPY straight into members, chunk by chunk, as the rows are checked.

        Imports into one organization take turns (a transaction-level advisory lock, taken at the
        first write and held to the end): two of them never hold index entries the other waits for,
        so rows shared in any order cannot deadlock, and the later one skips what the earlier wrote.
        COPY has no ON CONFLICT: a chunk that meets an existing member is rolled back to its
        savepoint and written through a staging table with INSERT ... ON CONFLICT DO NOTHING, as is
        every chunk after it.
        """
        with self._cursor() as cursor, self._parents_gone():
            if self._before is None:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_IMPORT_LOCK_SPACE, self.org_id))
                cursor.execute("SELECT COALESCE(MAX(id), 0) FROM members")
                self._before = int(cursor.fetchone()[0])
            if not self._conflicted:
                cursor.execute("SAVEPOINT member_chunk")
                try:
                    with cursor.copy(
                        f"COPY members ({', '.join(ROW_COLUMNS + BATCH_COLUMNS)}) FROM STDIN"
                    ) as copy:
                        for row in rows:
                            copy.write_row(row + constants)
                except Exception as exc:
                    if getattr(exc, "sqlstate", None) != _PG_UNIQUE_VIOLATION:
                        raise
                    cursor.execute("ROLLBACK TO SAVEPOINT member_chunk")
                    self._conflicted = True
                else:
                    cursor.execute("RELEASE SAVEPOINT member_chunk")
                    return set()
            if not self._staging_ready:
                cursor.execute(
                    f"CREATE TEMP TABLE {_STAGING} ON COMMIT DROP AS "  # noqa: S608
                    f"SELECT {', '.join(ROW_COLUMNS)} FROM members WITH NO DATA"
                )
                self._staging_ready = True
            with cursor.copy(f"COPY {_STAGING} ({', '.join(ROW_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            columns = ", ".join(ROW_COLUMNS)
            cursor.execute(
                f"INSERT INTO members ({columns}, {', '.join(BATCH_COLUMNS)}) "  # noqa: S608
                f"SELECT {columns}, %s, %s, %s, %s, CAST(%s AS timestamp) FROM {_STAGING} "
                "ON CONFLICT DO NOTHING RETURNING source_row",
                constants,
            )
            written = {int(row) for (row,) in cursor.fetchall()}
            cursor.execute(f"TRUNCATE {_STAGING}")
        return set(members.source_rows) - written

    def id_range(self) -> dict[str, int | None]:
        """The batch's first_member_id and last_member_id: every member it wrote has an id in
        between (on PostgreSQL other organizations' imports may have ids there too)."""
        if self._before is None:
            return {"first_member_id": None, "last_member_id": None}
        last = self.conn.scalar(select(func.max(Member.id)).where(Member.id > self._before))
        if last is None:
            return {"first_member_id": None, "last_member_id": None}
        return {"first_member_id": self._before + 1, "last_member_id": int(last)}

    @contextlib.contextmanager
    def _parents_gone(self) -> Iterator[None]:
        """A parent deleted while the rows were written: check_parents' answer, not a driver error.

        The failed statement has aborted the transaction, so the parent is named from the foreign
        key the database reports instead of being looked up.
        """
        try:
            yield
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != _PG_FOREIGN_KEY_VIOLATION:
                raise
            constraint = str(getattr(getattr(exc, "diag", None), "constraint_name", None) or "")
            gone = next((what for key, what in _PARENTS.items() if key in constraint), "a parent row")
            gone = gone.format(batch=self.batch_id)
            raise NotFoundError(
                f"{gone} disappeared while the import ran; nothing was written. Run the import again."
            ) from exc

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[Any]:
        """A driver cursor (COPY needs one); the errors about other writers get their own message."""
        cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            with cursor:
                yield cursor
        except Exception as exc:
            mapped = database_error(exc)
            if mapped is not None:
                raise mapped from exc
            raise

    def check_parents(self) -> None:
        """The rows written point to parents that exist: the organization, this batch, its teams.

        What the foreign keys check row by row, checked once for the whole batch: on SQLite the
        import writes with those look-ups off (db.parents_checked_by_writer).
        """
        teams = sorted(t for t in self._team_ids if t is not None)
        found_teams = set(
            self.conn.scalars(select(Team.id).where(Team.organization_id == self.org_id, Team.id.in_(teams)))
            if teams
            else ()
        )
        batch = self.conn.scalar(
            select(Batch.id)
            .join(Organization, Organization.id == Batch.organization_id)
            .where(Batch.id == self.batch_id, Organization.id == self.org_id)
        )
        missing = [t for t in teams if t not in found_teams]
        if missing or batch is None:
            gone = f"team id(s) {', '.join(map(str, missing))}" if missing else f"batch {self.batch_id}"
            raise NotFoundError(
                f"{gone} disappeared while the import ran; nothing was written. Run the import again."
            )

    def remove(self, source_rows: Iterable[int]) -> int:
        """Take back members of this batch created from these rows; return how many.

        Within the batch's range of ids (a primary-key range scan), never an index on the batch.
        """
        rows = sorted(set(source_rows))
        if self._before is None or not rows:
            return 0
        if self._postgres:
            with self._cursor() as cursor:
                # One pass over the batch's range, each row's number looked up in a hashed array
                # (PostgreSQL 14+). Not IN (SELECT unnest(...)): planned as a join of an array
                # estimated at 10 rows, it scanned the batch once per row taken back.
                cursor.execute(
                    "DELETE FROM members WHERE id > %s AND batch_id = %s AND source_row = ANY(%s)",
                    (self._before, self.batch_id, rows),
                )
                return int(cursor.rowcount)
        ids, found = self._ids_of(rows)
        removed = 0
        for start in range(0, len(ids), _LOOKUP_BATCH):  # by primary key
            removed += self.conn.execute(
                delete(Member).where(Member.id.in_(ids[start : start + _LOOKUP_BATCH]))
            ).rowcount
        rest = [row for row in rows if row not in found]  # from chunks that met existing members
        for start in range(0, len(rest), _LOOKUP_BATCH):
            result = self.conn.execute(
                delete(Member).where(
                    and_(
                        Member.id > self._before,
                        Member.batch_id == self.batch_id,
                        Member.source_row.in_(rest[start : start + _LOOKUP_BATCH]),
                    )
                )
            )
            removed += result.rowcount
        return removed

    def _ids_of(self, rows: list[int]) -> tuple[list[int], set[int]]:
        """SQLite: the member ids of those of these source rows that were written in whole chunks."""
        wanted = np.array(rows, dtype=np.int64)
        ids: list[int] = []
        found: set[int] = set()
        for first, written in self._spans:
            positions = np.flatnonzero(np.isin(written, wanted))
            if positions.size:
                ids.extend((positions + first).tolist())
                found.update(written[positions].tolist())
        return ids, found


_SOURCE_ROW = itemgetter(ROW_COLUMNS.index("source_row"))
_EMAIL_KEY = itemgetter(ROW_COLUMNS.index("email_key"))
_NAME_TEAM_KEY = itemgetter(ROW_COLUMNS.index("name_key"), ROW_COLUMNS.index("team_ref"))


def _row_tuples(members: Members) -> list[tuple[Any, ...]]:
    """One tuple per member, in ROW_COLUMNS order, built by zip (C-level, no dict or object a row)."""
    none = repeat(None)
    columns = (
        members.source_rows,  # first: it bounds the endless repeats
        members.names,
        members.name_keys(),
        members.emails or none,
        email_keys(members.emails) if members.emails is not None else none,
        members.roles or repeat(Role.MEMBER.value),
        members.team_ids,
        (t or 0 for t in members.team_ids),
        members.pin_hashes or none,
    )
    return list(zip(*columns, strict=False))


def _sqlite_literal(value: object) -> str:
    """A batch constant written into the INSERT's text, checked: an int, or a plain short string."""
    if isinstance(value, int):
        return str(int(value))
    text = str(value)
    if not _SAFE_CONSTANT.fullmatch(text):
        raise ValueError(f"not a safe SQL constant: {text!r}")
    return f"'{text}'"


def start_batch(conn: Connection, values: dict[str, Any]) -> None:
    """Record a batch as running (inside the batch's transaction)."""
    conn.execute(insert(Batch).values(outcome=BatchOutcome.RUNNING.value, **values))


def finish_batch(conn: Connection, batch_id: str, values: dict[str, Any]) -> None:
    """Record a batch's counts and outcome."""
    conn.execute(update(Batch).where(Batch.id == batch_id).values(**values))


def record_batch(conn: Connection, values: dict[str, Any]) -> None:
    """Record a batch that wrote no members (dry run, refused) in its own transaction."""
    conn.execute(insert(Batch).values(**values))
