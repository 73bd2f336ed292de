"""SQLAlchemy 2.0 bulk load: tuples in, inside the batch's single transaction."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from itertools import repeat
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select, update

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
# The parent each foreign key of members points to, by a word of the constraint's name.
_PARENTS = {
    "team_id": "a team named in the file",
    "batch_id": "batch {batch}",
    "organization": "the organization",
}
# What a constant may hold when it is written into SQL text (SQLite): ours, and checked.
_SAFE_CONSTANT = re.compile(r"[A-Za-z0-9 :.\-]*")


class MemberLoader:
    """Writes one batch's members on its open transaction; reports the rows that already exist."""

    def __init__(self, conn: Connection, *, org_id: int, batch_id: str, user_type: UserType) -> None:
        self.conn = conn
        self.org_id = org_id
        self.batch_id = batch_id
        self.user_type = user_type
        self._staging_ready = False
        self._postgres = conn.dialect.name == "postgresql"
        self._team_ids: set[int | None] = set()
        self._constants: tuple[Any, ...] = ()

    def insert(self, members: Members) -> set[int]:
        """Insert members; return the source rows NOT written because they exist already.

        ON CONFLICT DO NOTHING (no target) works on SQLite and PostgreSQL alike and honours the
        partial unique indexes: a member created meanwhile by another import is simply not written.
        PostgreSQL only stages the rows here; flush() writes them and names those not written.
        """
        if not members:
            return set()
        rows = _row_tuples(members)
        self._team_ids.update(members.team_ids)
        constants = (
            self.org_id,
            self.user_type.value,
            Status.PENDING.value,
            self.batch_id,
            utcnow().strftime("%Y-%m-%d %H:%M:%S.%f"),  # formatted once, as SQLAlchemy stores it
        )
        if self._postgres:
            return self._copy_insert(rows, constants)
        values = ", ".join(["?"] * len(ROW_COLUMNS) + [_sqlite_literal(c) for c in constants])
        result = self.conn.exec_driver_sql(
            f"INSERT INTO members ({', '.join(ROW_COLUMNS + BATCH_COLUMNS)}) "  # noqa: S608
            f"VALUES ({values}) ON CONFLICT DO NOTHING",
            rows,
        )
        if result.rowcount == len(rows):
            return set()
        # Someone else created some of these since we looked: find out which rows made it.
        wanted = members.source_rows
        written = self._written_rows(wanted)
        return set(wanted) - written

    def _copy_insert(self, rows: list[tuple[Any, ...]], constants: tuple[Any, ...]) -> set[int]:
        """PostgreSQL: COPY into a temporary staging table; the members are written by flush().

        Nothing is written before the whole file is staged, so that flush() can write every row in
        one order of the unique keys (see there). Returns no skipped rows: flush() knows them.
        """
        self._constants = constants
        with self._cursor() as cursor:
            if not self._staging_ready:
                cursor.execute(
                    f"CREATE TEMP TABLE {_STAGING} ON COMMIT DROP AS "  # noqa: S608
                    f"SELECT {', '.join(ROW_COLUMNS)} FROM members WITH NO DATA"
                )
                self._staging_ready = True
            with cursor.copy(f"COPY {_STAGING} ({', '.join(ROW_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        return set()

    def flush(self) -> dict[int, str]:
        """Write what is staged; return the rows NOT written (they exist already) and what they show.

        PostgreSQL: one INSERT ... SELECT in the order of the unique keys. Two imports that share
        rows then take those rows' index entries in the same order, so neither can hold one the
        other waits for while waiting for one the other holds: the later one waits for the
        earlier's commit, then skips what it wrote (ON CONFLICT DO NOTHING). Written in file order,
        two files with shared rows in opposite orders deadlocked. SQLite wrote each chunk as it
        came (its write lock is the whole database's): nothing to do.
        """
        if not self._staging_ready:
            return {}
        columns = ", ".join(ROW_COLUMNS)
        with self._cursor() as cursor, self._parents_gone():
            cursor.execute(
                f"WITH written AS (INSERT INTO members ({columns}, {', '.join(BATCH_COLUMNS)}) "  # noqa: S608
                f"SELECT {columns}, %s, %s, %s, %s, CAST(%s AS timestamp) FROM {_STAGING} "
                "ORDER BY email_key, name_key, team_ref "
                "ON CONFLICT DO NOTHING RETURNING source_row) "
                f"SELECT s.source_row, COALESCE(s.email, s.name) FROM {_STAGING} s "
                "LEFT JOIN written w ON w.source_row = s.source_row WHERE w.source_row IS NULL",
                self._constants,
            )
            skipped = {int(row): str(shown) for row, shown in cursor.fetchall()}
            cursor.execute(f"TRUNCATE {_STAGING}")
        return skipped

    @contextlib.contextmanager
    def _parents_gone(self) -> Iterator[None]:
        """A parent deleted while the rows were staged: check_parents' answer, not a driver error.

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

    def _written_rows(self, source_rows: list[int]) -> set[int]:
        # A chunk's rows are one range of row numbers: one range scan of ix_members_batch.
        query = select(Member.source_row).where(
            Member.batch_id == self.batch_id,
            Member.source_row.between(min(source_rows), max(source_rows)),
        )
        return {r for (r,) in self.conn.execute(query) if r is not None}

    def remove(self, source_rows: Iterable[int]) -> int:
        """Take back members of this batch created (or staged) from these rows; return how many."""
        rows = list(source_rows)
        if self._postgres:
            if not self._staging_ready or not rows:
                return 0
            with self._cursor() as cursor:
                cursor.execute(f"DELETE FROM {_STAGING} WHERE source_row = ANY(%s)", (rows,))  # noqa: S608
                return int(cursor.rowcount)
        removed = 0
        for start in range(0, len(rows), _LOOKUP_BATCH):
            result = self.conn.execute(
                delete(Member).where(
                    and_(
                        Member.batch_id == self.batch_id,
                        Member.source_row.in_(rows[start : start + _LOOKUP_BATCH]),
                    )
                )
            )
            removed += result.rowcount
        return removed


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
