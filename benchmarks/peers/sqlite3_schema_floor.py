"""Floor on the importer's own table: csv.reader -> sqlite3 executemany into `members`.

Usage: sqlite3_schema_floor.py CSV DB_PATH
The database already holds the importer's schema, the organization, its teams and one batch
(made by the importer itself, untimed). This writes every row the way the importer's insert does
(same 14 columns, the same indexes, WAL, ON CONFLICT DO NOTHING, one transaction; the importer's
64 MiB page cache, chunks of 25,000 rows each in the unique key's order, and the per-row foreign-key
look-ups off, as the importer has them: it checks the few parents once) but checks nothing: what
the importer would cost if reading, validation and reports were free.
`member_rows` is also what the PostgreSQL floor on the same table loads (run.py).
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import sqlite3
import sys
from collections.abc import Iterator
from operator import itemgetter

CHUNK_ROWS = 25_000  # the importer's chunk (Settings.chunk_rows)
CACHE_KIB = 64 * 1024  # the importer's page cache (store/engine.py)

COLUMNS = (
    "organization_id, name, name_key, email, email_key, user_type, role, team_id, team_ref, status, "
    "batch_id, source_row, pin_hash, created_at"
)


def member_rows(
    csv_path: str, *, org: int, batch: str, teams: dict[str, int]
) -> Iterator[tuple[object, ...]]:
    """Each data row of a Portal Access CSV as a `members` row in COLUMNS order, checking nothing."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with open(csv_path, newline="", encoding="utf-8") as f:
        records = csv.reader(f)
        next(records)
        for number, (name, email, role, team) in enumerate(records, start=2):
            team_id = teams.get(team.lower())
            yield (
                org,
                name,
                name.lower(),
                email,
                email.lower(),
                "portal",
                "Admin" if role.lower() == "admin" else "Member",
                team_id,
                team_id or 0,
                "pending",
                batch,
                number,
                None,
                now,
            )


def main() -> None:
    """Load the file; print how many members the batch holds."""
    csv_path, db_path = sys.argv[1], sys.argv[2]
    con = sqlite3.connect(db_path, isolation_level=None)
    for pragma in ("foreign_keys=OFF", "journal_mode=WAL", "synchronous=NORMAL", f"cache_size=-{CACHE_KIB}"):
        con.execute(f"PRAGMA {pragma}")
    (org,) = con.execute("SELECT id FROM organizations").fetchone()
    (batch,) = con.execute("SELECT id FROM batches").fetchone()
    teams = {key: team_id for team_id, key in con.execute("SELECT id, name_key FROM teams")}
    con.execute("BEGIN IMMEDIATE")
    rows = member_rows(csv_path, org=org, batch=batch, teams=teams)
    while chunk := list(itertools.islice(rows, CHUNK_ROWS)):
        chunk.sort(key=itemgetter(4))  # by email_key, the unique index's order
        con.executemany(
            f"INSERT INTO members ({COLUMNS}) VALUES ({', '.join('?' * 14)}) ON CONFLICT DO NOTHING",  # noqa: S608
            chunk,
        )
    con.execute("COMMIT")
    (count,) = con.execute("SELECT count(*) FROM members WHERE batch_id = ?", (batch,)).fetchone()
    print(f'{{"loaded": {count}}}')
    con.close()


if __name__ == "__main__":
    main()
