"""Migration 0008 from 0007 with data in it: the batch and team-page indexes go, each batch gets the
range of member ids it wrote, and every batch's members are still found, listed, shown and undone."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, inspect, select, text
from sqlalchemy.orm import Session

from importer.accounts.listing import list_members
from importer.store.engine import HEAD_REVISION, current_revision, open_database
from importer.store.models import Batch, Member
from importer.store.orgs import show_batch, undo_batch
from tests.conftest import Org, do_import

BATCH = (
    "INSERT INTO batches (id, organization_id, user_type, file_name, sha256, actor_email, dry_run, "
    "all_or_nothing, rows, created, skipped, rejected, outcome, started_at, seconds) VALUES "
    "(:id, 1, 'portal', 'f.csv', :sha, 'o@x.example', false, false, 0, 0, 0, 0, 'completed', "
    "'2026-01-01', 0)"
)
MEMBER = (
    "INSERT INTO members (id, organization_id, name, name_key, email, email_key, user_type, role, "
    "team_id, team_ref, status, batch_id, source_row, created_at) VALUES "
    "(:id, 1, :name, :key, :email, :email, 'portal', 'Member', :team, :ref, :status, :batch, :row, "
    "'2026-01-01')"
)


def _migrate(url: str, revision: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", "importer.store:migrations")
    raw = create_engine(url)
    with raw.begin() as conn:
        config.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(config, revision)
    raw.dispose()


def _member(id: int, batch: str | None, *, row: int, status: str = "pending") -> dict[str, object]:
    return {
        "id": id, "name": f"M{id}", "key": f"m{id}", "email": f"m{id}@x.example", "team": 1, "ref": 1,
        "status": status, "batch": batch, "row": row,
    }  # fmt: skip


def _indexes(engine: Engine) -> set[str]:
    return {str(i["name"]) for i in inspect(engine).get_indexes("members")}


def test_batches_keep_their_members_through_0008_and_back(db_url: str) -> None:
    _migrate(db_url, "0007")
    raw = create_engine(db_url)
    with raw.begin() as conn:
        conn.execute(text("INSERT INTO organizations (id, name, created_at) VALUES (1, 'Org', '2026-01-01')"))
        conn.execute(
            text("INSERT INTO teams (id, organization_id, name, name_key) VALUES (1, 1, 'Sales', 'sales')")
        )
        conn.execute(text(BATCH), [{"id": "b-one", "sha": "1" * 64}, {"id": "b-two", "sha": "2" * 64}])
        conn.execute(text(BATCH), [{"id": "b-empty", "sha": "3" * 64}])
        # Two batches whose ids interleave (as two organizations' imports can on PostgreSQL), and a
        # member added by hand (no batch).
        conn.execute(
            text(MEMBER),
            [
                _member(10, "b-one", row=2),
                _member(11, "b-two", row=2),
                _member(12, "b-one", row=3, status="active"),
                _member(13, None, row=0),
                _member(14, "b-two", row=3),
                _member(15, "b-one", row=4),
            ],
        )
    raw.dispose()

    engine = open_database(db_url)
    assert current_revision(engine) == HEAD_REVISION
    assert not {"ix_members_batch", "ix_members_team_page"} & _indexes(engine)
    assert {"ux_members_org_email", "ix_members_org_page"} <= _indexes(engine)
    with Session(engine) as session:
        ranges = {b.id: (b.first_member_id, b.last_member_id) for b in session.scalars(select(Batch))}
    assert ranges == {"b-one": (10, 15), "b-two": (11, 14), "b-empty": (None, None)}
    listed = {b: [m.name for m in list_members(engine, "Org", batch=b).members] for b in ranges}
    assert listed == {"b-one": ["M10", "M12", "M15"], "b-two": ["M11", "M14"], "b-empty": []}
    assert [m.name for m in list_members(engine, "Org", team="sales", limit=2).members] == ["M10", "M11"]
    detail = show_batch(engine, "b-one")
    assert (detail.members_pending, detail.members_active) == (2, 1)
    undone = undo_batch(engine, "b-one")
    assert (undone.removed, undone.kept_active) == (2, ("m12@x.example",))
    with Session(engine) as session:
        left = session.scalars(select(Member.id).order_by(Member.id)).all()
    assert left == [11, 12, 13, 14]
    engine.dispose()

    _migrate(db_url, "0007", down=True)
    raw = create_engine(db_url)
    assert {"ix_members_batch", "ix_members_team_page"} <= _indexes(raw)
    assert "first_member_id" not in {c["name"] for c in inspect(raw).get_columns("batches")}
    with raw.connect() as conn:
        rows = conn.execute(text("SELECT id, batch_id FROM members ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [(11, "b-two"), (12, "b-one"), (13, None), (14, "b-two")]
    raw.dispose()


def test_an_import_records_the_ids_it_wrote_and_undo_finds_exactly_them(
    org: Org, tmp_path: Path, write_csv
) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from importer.settings import Settings

    settings = replace(Settings(report_dir=tmp_path / "r"), chunk_rows=2)
    first = do_import(
        org, write_csv("a.csv", "Name,Email,Role", "A,a@x.example,Member", "B,b@x.example,Member"), tmp_path
    )
    # Chunks of two rows: c@ is repeated in a later chunk (both copies rejected, the first taken
    # back), a@ exists (skipped, the chunk written through the staging path on PostgreSQL).
    second = do_import(
        org,
        write_csv(
            "b.csv",
            "Name,Email,Role",
            "C,c@x.example,Member",
            "D,d@x.example,Member",
            "A,a@x.example,Member",
            "E,e@x.example,Member",
            "C again,C@x.example,Member",
            "F,f@x.example,Member",
        ),
        tmp_path,
        settings=settings,
    )
    assert (second.created, len(second.skipped), second.rejected) == (3, 1, 2)
    with Session(org.engine) as session:
        batch = session.get_one(Batch, second.batch_id)
        ids = session.scalars(select(Member.id).where(Member.batch_id == second.batch_id)).all()
        emails = session.scalars(select(Member.email).where(Member.batch_id == second.batch_id)).all()
        assert batch.first_member_id is not None and batch.last_member_id is not None
        assert all(batch.first_member_id <= i <= batch.last_member_id for i in ids)
    assert sorted(e or "" for e in emails) == ["d@x.example", "e@x.example", "f@x.example"]
    assert undo_batch(org.engine, second.batch_id).removed == 3
    listed = [m.email for m in list_members(org.engine, org.name).members]
    assert listed == [org.owner, "a@x.example", "b@x.example"]
    assert first.created == 2
