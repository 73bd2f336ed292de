"""Floor on the importer's own table: csv.reader -> sqlite3 executemany into `members`.

Usage: sqlite3_schema_floor.py CSV DB_PATH
The database already holds the importer's schema, the organization, its teams and one batch
(made by the importer itself, untimed). This writes every row the way the importer's insert does
(same 14 columns, the same indexes and foreign keys, WAL, ON CONFLICT DO NOTHING, one
transaction) but checks nothing: what the importer would cost if validation and reports were free.
`member_rows` is also what the PostgreSQL floor on the same table loads (run.py).
"""

from __future__ import annotations

import csv
import datetime as dt
import sqlite3
import sys
from collections.abc import Iterator

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
    for pragma in ("foreign_keys=ON", "journal_mode=WAL", "synchronous=NORMAL"):
        con.execute(f"PRAGMA {pragma}")
    (org,) = con.execute("SELECT id FROM organizations").fetchone()
    (batch,) = con.execute("SELECT id FROM batches").fetchone()
    teams = {key: team_id for team_id, key in con.execute("SELECT id, name_key FROM teams")}
    con.execute("BEGIN IMMEDIATE")
    con.executemany(
        f"INSERT INTO members ({COLUMNS}) VALUES ({', '.join('?' * 14)}) ON CONFLICT DO NOTHING",  # noqa: S608
        member_rows(csv_path, org=org, batch=batch, teams=teams),
    )
    con.execute("COMMIT")
    (count,) = con.execute("SELECT count(*) FROM members WHERE batch_id = ?", (batch,)).fetchone()
    print(f'{{"loaded": {count}}}')
    con.close()


if __name__ == "__main__":
    main()
