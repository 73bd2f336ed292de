"""Scale cases measured, not asserted in tests: `batch undo` of 200,000 members and "did you mean"
for 200 distinct unknown teams among 20,000 (issue 11). Prints wall seconds of each.

    python benchmarks/scale.py
"""

from __future__ import annotations

import random
import string
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert, text

from importer.pipeline import run_import
from importer.settings import Settings
from importer.store.engine import open_database
from importer.store.models import Batch, Team, utcnow
from importer.store.orgs import create_organization, undo_batch
from importer.values import UserType

UNDO_MEMBERS = 200_000
TEAMS = 20_000
OWNER = "owner@scale.example"


def undo_case(folder: Path) -> float:
    """Seconds to undo a batch of UNDO_MEMBERS pending members (seeded by one SQL statement)."""
    engine = open_database(f"sqlite:///{folder / 'undo.db'}", create=True)
    org_id = create_organization(engine, "Scale", owner_email=OWNER, owner_name="Owner")
    with engine.begin() as conn:
        conn.execute(
            insert(Batch).values(
                id="scale-batch", organization_id=org_id, user_type="portal", file_name="seed.csv",
                sha256="0" * 64, actor_email=OWNER, rows=UNDO_MEMBERS, created=UNDO_MEMBERS,
                outcome="completed", started_at=utcnow(),
            )
        )  # fmt: skip
        conn.execute(
            text(
                "WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM n WHERE i < :last) "
                "INSERT INTO members (organization_id, name, name_key, email, email_key, user_type, "
                "role, team_ref, status, batch_id, source_row, created_at) "
                "SELECT :org, 'P' || i, 'p' || i, 'p' || i || '@example.com', 'p' || i || '@example.com', "
                "'portal', 'Member', 0, 'pending', 'scale-batch', i, CURRENT_TIMESTAMP FROM n"
            ),
            {"last": UNDO_MEMBERS + 1, "org": org_id},
        )
    started = time.perf_counter()
    undone = undo_batch(engine, "scale-batch")
    seconds = time.perf_counter() - started
    assert undone.removed == UNDO_MEMBERS, undone
    return seconds


def teams_case(folder: Path) -> float:
    """Seconds to import a sheet naming 200 distinct unknown teams (twice each) among TEAMS."""
    engine = open_database(f"sqlite:///{folder / 'teams.db'}", create=True)
    org_id = create_organization(engine, "Scale", owner_email=OWNER, owner_name="Owner")
    rng = random.Random(11)
    names = sorted({"".join(rng.choices(string.ascii_lowercase, k=10)).title() for _ in range(TEAMS)})
    with engine.begin() as conn:
        conn.execute(
            insert(Team), [{"organization_id": org_id, "name": n, "name_key": n.lower()} for n in names]
        )
    unknown = [n[:3] + "x" + n[4:] for n in rng.sample(names, 150)] + [f"{i:07d}" for i in range(50)]
    rows = [f"P{i},p{i}@example.com,Member,{team}" for i, team in enumerate(unknown * 2)]
    sheet = folder / "teams.csv"
    sheet.write_text("Name,Email,Role,Team\n" + "\n".join(rows) + "\n")
    started = time.perf_counter()
    result = run_import(
        engine, sheet, org_ref=str(org_id), actor_email=OWNER, user_type=UserType.PORTAL,
        settings=Settings(report_dir=folder / "reports"),
    )  # fmt: skip
    seconds = time.perf_counter() - started
    assert result.rejected >= len(rows) - 20, (result.rejected, len(rows))  # a few 'typos' are real names
    return seconds


def main() -> None:
    """Run both cases and print their times."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"batch undo of {UNDO_MEMBERS:,} pending members: {undo_case(folder):.2f} s")
        print(f"import naming 200 unknown teams among {TEAMS:,} (400 rows): {teams_case(folder):.2f} s")


if __name__ == "__main__":
    main()
