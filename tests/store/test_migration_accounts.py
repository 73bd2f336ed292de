"""Migration 0005 from 0004 with data in it: members with a password become accounts; nothing is lost."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, inspect, select, text
from sqlalchemy.orm import Session

from importer.accounts.passwords import hash_password, verify_password
from importer.store.engine import HEAD_REVISION, current_revision, open_database
from importer.store.models import Account, Member, Status

OLD = hash_password("Old password 1")
NEW = hash_password("New password 2")

MEMBER = (
    "INSERT INTO members (id, organization_id, name, name_key, email, email_key, user_type, role, team_ref, "
    "status, password_hash, created_at, activated_at) VALUES "
    "(:id, :org, :name, :key, :email, :ekey, :type, :role, 0, :status, :pw, '2026-01-01', :at)"
)


def _migrate(raw: Engine, revision: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", "importer.store:migrations")
    with raw.begin() as conn:
        config.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(config, revision)


def _member(
    id: int, org: int, email: str | None, *, pw: str | None, status: str, at: str | None, role: str = "Member"
) -> dict[str, object]:
    return {
        "id": id, "org": org, "name": f"M{id}", "key": f"m{id}", "email": email,
        "ekey": email.lower() if email else None, "type": "portal" if email else "no-portal",
        "role": role, "status": status, "pw": pw, "at": at,
    }  # fmt: skip


def test_members_with_a_password_become_accounts(db_url: str) -> None:
    raw = create_engine(db_url)
    _migrate(raw, "0004")
    with raw.begin() as conn:
        conn.execute(
            text("INSERT INTO organizations (id, name, created_at) VALUES (:id, :name, '2026-01-01')"),
            [{"id": 1, "name": "Org 1"}, {"id": 2, "name": "Org 2"}],
        )
        conn.execute(
            text(MEMBER),
            [
                # One address, two organizations, two passwords: the later activation's is kept.
                _member(1, 1, "Ann@x.example", pw=OLD, status="active", at="2026-02-01"),
                _member(2, 2, "ann@x.example", pw=NEW, status="active", at="2026-03-01"),
                # An Owner made active without a password, whose address has an account: linked.
                _member(3, 1, "bo@x.example", pw=None, status="active", at="2026-01-01", role="Owner"),
                _member(4, 2, "bo@x.example", pw=OLD, status="active", at="2026-02-02"),
                # Pending and no-portal members: no account, no link.
                _member(5, 1, "cy@x.example", pw=None, status="pending", at=None),
                _member(6, 2, "dee@x.example", pw=None, status="pending", at=None),
                _member(7, 1, None, pw=None, status="pending", at=None),
                _member(8, 1, "ann2@x.example", pw=None, status="pending", at=None),
            ],
        )
    raw.dispose()

    engine = open_database(db_url)
    assert current_revision(engine) == HEAD_REVISION
    with Session(engine) as session:
        accounts = {a.email_key: a for a in session.scalars(select(Account))}
        assert sorted(accounts) == ["ann@x.example", "bo@x.example"]
        ann = accounts["ann@x.example"]
        assert verify_password(ann.password_hash, "New password 2") and ann.email == "ann@x.example"
        assert (ann.created_at.month, ann.password_changed_at.month) == (2, 3)
        links = {m.id: m.account_id for m in session.scalars(select(Member))}
        bo = accounts["bo@x.example"].id
        assert links == {1: ann.id, 2: ann.id, 3: bo, 4: bo, 5: None, 6: None, 7: None, 8: None}
        session.get_one(Member, 4).status = Status.DEACTIVATED
        session.commit()
    names = {i["name"] for i in inspect(engine).get_indexes("members")}
    assert {
        "ix_members_org_page",
        "ix_members_org_status_page",
        "ix_members_account",
    } <= names  # ix_members_team_page of 0005 is dropped again by 0008
    engine.dispose()

    raw = create_engine(db_url)
    _migrate(raw, "0004", down=True)
    assert "accounts" not in inspect(raw).get_table_names()
    with raw.connect() as conn:
        rows = conn.execute(text("SELECT id, status, password_hash FROM members ORDER BY id")).all()
    assert [(i, s) for i, s, _ in rows] == [
        (1, "active"), (2, "active"), (3, "active"), (4, "active"),
        (5, "pending"), (6, "pending"), (7, "pending"), (8, "pending"),
    ]  # fmt: skip
    assert (
        rows[2].password_hash == NEW or rows[2].password_hash == OLD
    )  # the Owner's password, from the account
    raw.dispose()
    assert current_revision(open_database(db_url)) == HEAD_REVISION  # and up again
