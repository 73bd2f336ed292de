"""The audit trail of a whole session: every change, its actor, never a secret."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from importer.accounts.accounts import activate_membership, authenticate, set_password
from importer.accounts.audit import Acting, Channel, list_events
from importer.accounts.members import (
    MemberEdit,
    NewMember,
    add_member,
    deactivate_member,
    edit_member,
    reactivate_member,
    regenerate_pin,
    remove_member,
)
from importer.accounts.teams import delete_team, rename_team
from importer.store.models import AuditEvent
from tests.conftest import Org

OWNER = Acting("olive.owner@acme.example")
PASSWORD = "Correct horse 42"
NEW_PASSWORD = "Another horse 43"


def test_a_whole_session_is_audited_without_a_secret(org: Org) -> None:
    ann = add_member(
        org.engine,
        org.name,
        acting=OWNER,
        member=NewMember(name="Ann", email="ann@x.example", role="Member", team="Sales"),
    )
    phone = add_member(
        org.engine, org.name, acting=OWNER, member=NewMember(name="Lobby", portal=False, pin="4321")
    )
    bo = add_member(
        org.engine, org.name, acting=OWNER, member=NewMember(name="Bo", email="bo@x.example", role="Member")
    )
    assert ann.member and phone.member and bo.member
    with Session(org.engine) as session, session.begin():
        activate_membership(session, ann.member.id, password=PASSWORD)
    with Session(org.engine) as session, session.begin():
        set_password(session, email="ann@x.example", password=NEW_PASSWORD)
        authenticate(session, email="ann@x.example", password=NEW_PASSWORD)
        authenticate(session, email="ann@x.example", password=PASSWORD)
    edit_member(
        org.engine,
        org.name,
        ann.member.id,
        acting=Acting(OWNER.email, Channel.ACCOUNT),
        edit=MemberEdit(role="Admin"),
    )
    deactivate_member(org.engine, org.name, ann.member.id, acting=OWNER)
    reactivate_member(org.engine, org.name, ann.member.id, acting=OWNER)
    pin = regenerate_pin(org.engine, org.name, phone.member.id, acting=OWNER).pin
    remove_member(org.engine, org.name, bo.member.id, acting=OWNER)
    rename_team(org.engine, org.name, acting=OWNER, team="Support", new_name="Help Desk")
    delete_team(org.engine, org.name, acting=OWNER, team="Engineering")

    events = [e.to_dict() for e in list_events(org.engine, org.name)]
    assert [(e["action"], e["actor"], e["subject"]) for e in events] == [
        ("team.deleted", "cli:olive.owner@acme.example", "Engineering"),
        ("team.renamed", "cli:olive.owner@acme.example", "Help Desk"),
        ("member.removed", "cli:olive.owner@acme.example", "bo@x.example"),
        ("pin.regenerated", "cli:olive.owner@acme.example", "Lobby"),
        ("member.reactivated", "cli:olive.owner@acme.example", "ann@x.example"),
        ("member.deactivated", "cli:olive.owner@acme.example", "ann@x.example"),
        ("member.edited", "olive.owner@acme.example", "ann@x.example"),
        ("account.activated", "ann@x.example", "ann@x.example"),
        ("member.added", "cli:olive.owner@acme.example", "bo@x.example"),
        ("member.added", "cli:olive.owner@acme.example", "Lobby"),
        ("member.added", "cli:olive.owner@acme.example", "ann@x.example"),
    ]
    assert set(events[0]) == {"at", "actor", "organization", "action", "subject", "detail"}
    assert events[6]["detail"] == "role: Member -> Admin" and events[0]["organization"] == "Acme Corp"
    assert [e.action.value for e in list_events(org.engine, org.name, actor="ann@x.example")] == [
        "account.activated"
    ]
    assert len(list_events(org.engine, org.name, actor="OLIVE.owner@acme.example", limit=3)) == 3
    future = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    assert list_events(org.engine, org.name, since=future) == []

    with Session(org.engine) as session:
        everything = session.scalars(select(AuditEvent)).all()
        text = " ".join(f"{e.actor} {e.subject} {e.detail}" for e in everything)
        assert {e.action.value for e in everything if e.organization_id is None} == {
            "password.changed",
            "sign_in.succeeded",
            "sign_in.failed",
        }
        hashes = session.execute(select(AuditEvent)).all()
    for secret in (PASSWORD, NEW_PASSWORD, "4321", pin, "scrypt$", "sha256$"):
        assert secret not in text
    assert hashes
