"""SQLAlchemy 2.0 bulk load: tuples in, inside the batch's single transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select, update

from importer.models import Batch, Member
from importer.sheets import UserType

# The member columns an import writes, in the order of the tuples handed to MemberLoader.insert.
MEMBER_COLUMNS: tuple[str, ...] = (
    "source_row",
    "organization_id",
    "name",
    "name_key",
    "email",
    "email_key",
    "user_type",
    "role",
    "team_id",
    "team_ref",
    "status",
    "batch_id",
    "pin_hash",
    "created_at",
)
SOURCE_ROW = MEMBER_COLUMNS.index("source_row")
_LOOKUP_BATCH = 5000  # under SQLite's 32,766 bound parameters
_STAGING = "member_staging"


class MemberLoader:
    """Writes one batch's members on its open transaction; reports the rows that already exist."""

    def __init__(self, conn: Connection, *, org_id: int, batch_id: str, user_type: UserType) -> None:
        self.conn = conn
        self.org_id = org_id
        self.batch_id = batch_id
        self.user_type = user_type
        self._staging_ready = False
        placeholder = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        # ON CONFLICT DO NOTHING (no target) works on SQLite and PostgreSQL alike and honours the
        # partial unique indexes: a member created meanwhile by another import is simply not written.
        # Table and column names are constants; every value is a bound parameter.
        self._insert_sql = (
            f"INSERT INTO members ({', '.join(MEMBER_COLUMNS)}) "  # noqa: S608
            f"VALUES ({', '.join([placeholder] * len(MEMBER_COLUMNS))}) ON CONFLICT DO NOTHING"
        )

    def insert(self, rows: Sequence[tuple[Any, ...]]) -> set[int]:
        """Insert member tuples; return the source rows NOT written because they exist already."""
        if not rows:
            return set()
        if self.conn.dialect.name == "postgresql":
            return self._copy_insert(rows)
        result = self.conn.exec_driver_sql(self._insert_sql, list(rows))
        if result.rowcount == len(rows):
            return set()
        # Someone else created some of these since we looked: find out which rows made it.
        wanted = [row[SOURCE_ROW] for row in rows]
        written = self._written_rows(wanted)
        return set(wanted) - written

    def _copy_insert(self, rows: Sequence[tuple[Any, ...]]) -> set[int]:
        """PostgreSQL: COPY into a temporary staging table, then one INSERT ... SELECT.

        ON CONFLICT DO NOTHING against the unique indexes makes two concurrent imports of the same
        file safe: the slower one waits for the faster one's commit, then writes nothing twice;
        RETURNING says exactly which rows were written.
        """
        columns = ", ".join(MEMBER_COLUMNS)
        cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor:
            if not self._staging_ready:
                cursor.execute(
                    f"CREATE TEMP TABLE {_STAGING} ON COMMIT DROP AS "  # noqa: S608
                    f"SELECT {columns} FROM members WITH NO DATA"
                )
                self._staging_ready = True
            else:
                cursor.execute(f"TRUNCATE {_STAGING}")
            with cursor.copy(f"COPY {_STAGING} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(
                f"INSERT INTO members ({columns}) SELECT {columns} FROM {_STAGING} "  # noqa: S608
                "ON CONFLICT DO NOTHING RETURNING source_row"
            )
            written = {r for (r,) in cursor.fetchall()}
        return {row[SOURCE_ROW] for row in rows} - written

    def _written_rows(self, source_rows: list[int]) -> set[int]:
        # A chunk's rows are one range of row numbers: one range scan of ix_members_batch.
        query = select(Member.source_row).where(
            Member.batch_id == self.batch_id,
            Member.source_row.between(min(source_rows), max(source_rows)),
        )
        return {r for (r,) in self.conn.execute(query) if r is not None}

    def remove(self, source_rows: Iterable[int]) -> int:
        """Take back members of this batch created from these rows; return how many."""
        rows = list(source_rows)
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


def start_batch(conn: Connection, values: dict[str, Any]) -> None:
    """Record a batch as running (inside the batch's transaction)."""
    conn.execute(insert(Batch).values(outcome="running", **values))


def finish_batch(conn: Connection, batch_id: str, values: dict[str, Any]) -> None:
    """Record a batch's counts and outcome."""
    conn.execute(update(Batch).where(Batch.id == batch_id).values(**values))


def record_batch(conn: Connection, values: dict[str, Any]) -> None:
    """Record a batch that wrote no members (dry run, refused) in its own transaction."""
    conn.execute(insert(Batch).values(**values))
