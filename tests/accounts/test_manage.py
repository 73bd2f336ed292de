"""Managing members and teams one at a time: the sheet's rules and messages, privileges, the last Owner."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from importer.accounts.accounts import activate_membership
from importer.accounts.audit import Acting
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
from importer.accounts.teams import delete_team, list_teams, rename_team
from importer.checks.pins import verify_pin
from importer.errors import ConflictError, ImporterError, NotFoundError, PermissionDeniedError
from importer.store.models import ActivationToken, Member, Role, Status, utcnow
from tests.conftest import Org, do_import, errors_of

OWNER = Acting("olive.owner@acme.example")
PASSWORD = "Correct horse 42"


def _owner_id(org: Org) -> int:
    with Session(org.engine) as session:
        return session.scalars(select(Member.id).where(Member.role == Role.OWNER)).one()


def _add(
    org: Org, name: str, email: str, role: str = "Member", *, acting: Acting = OWNER, team: str = ""
) -> int:
    change = add_member(
        org.engine, org.name, acting=acting, member=NewMember(name=name, email=email, role=role, team=team)
    )
    assert change.member is not None, change.errors
    return change.member.id


def _active(org: Org, member_id: int) -> None:
    with Session(org.engine) as session, session.begin():
        activate_membership(session, member_id, password=PASSWORD)


@pytest.fixture
def admin(org: Org) -> Acting:
    _active(org, _add(org, "Ada Admin", "ada@acme.example", "Admin"))
    return Acting("ada@acme.example")


def test_a_bad_address_is_refused_with_exactly_the_sheets_message(org: Org, write_csv, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sheet = do_import(
        org, write_csv("bad.csv", "Name,Email,Role,Team", "Bob,bob@gmial..com,Membr,Salez"), tmp_path
    )
    change = add_member(
        org.engine,
        org.name,
        acting=OWNER,
        member=NewMember(name="Bob", email="bob@gmial..com", role="Membr", team="Salez"),
    )
    assert change.refused and change.exit_code == 3 and change.member is None
    assert [(e.column, e.code, e.message) for e in change.errors] == [
        (e.column, e.code, e.message) for e in sheet.errors
    ]
    assert {code for _, _, code in errors_of(sheet)} == {"email.invalid", "role.invalid", "team.unknown"}


def test_add_portal_and_no_portal_members(org: Org) -> None:
    change = add_member(
        org.engine,
        org.name,
        acting=OWNER,
        member=NewMember(name=" Ann ", email="ann@x.example", role="admin", team="sales"),
    )
    assert change.member is not None
    assert (change.member.name, change.member.role, change.member.team, change.member.status) == (
        "Ann",
        Role.ADMIN,
        "Sales",
        Status.PENDING,
    )
    again = add_member(
        org.engine, org.name, acting=OWNER, member=NewMember(name="A", email="ANN@x.example", role="Member")
    )
    assert [(e.column, e.code.value) for e in again.errors] == [("Email", "member.exists")]

    phone = add_member(
        org.engine, org.name, acting=OWNER, member=NewMember(name="Lobby Phone", portal=False, team="Support")
    )
    assert phone.member is not None and phone.pin is not None and len(phone.pin) == 6
    given = add_member(
        org.engine, org.name, acting=OWNER, member=NewMember(name="Desk", portal=False, pin="0042")
    )
    assert given.pin == "0042"
    bad_pin = add_member(
        org.engine, org.name, acting=OWNER, member=NewMember(name="Desk 2", portal=False, pin="12")
    )
    assert [e.code.value for e in bad_pin.errors] == ["pin.invalid"] and "12" not in bad_pin.errors[0].message
    twice = add_member(
        org.engine, org.name, acting=OWNER, member=NewMember(name="lobby phone", portal=False, team="SUPPORT")
    )
    assert [(e.column, e.code.value) for e in twice.errors] == [("Name", "member.exists")]
    with pytest.raises(ImporterError):
        add_member(
            org.engine, org.name, acting=OWNER, member=NewMember(name="X", portal=False, email="x@y.example")
        )


def test_privileges_when_adding(org: Org, admin: Acting) -> None:
    refused = add_member(
        org.engine, org.name, acting=admin, member=NewMember(name="B", email="b@x.example", role="Admin")
    )
    assert [e.code.value for e in refused.errors] == ["role.not_allowed"]
    assert "Only an Owner can invite Admins" in refused.errors[0].message
    owner = add_member(
        org.engine, org.name, acting=OWNER, member=NewMember(name="C", email="c@x.example", role="Owner")
    )
    assert [e.message for e in owner.errors] == [
        "Nobody can be invited as Owner. Change the role to Admin or Member."
    ]
    pending = _add(org, "Pat", "pat@x.example")
    with pytest.raises(PermissionDeniedError):
        add_member(
            org.engine,
            org.name,
            acting=Acting("pat@x.example"),
            member=NewMember(name="D", email="d@x.example", role="Member"),
        )
    with pytest.raises(PermissionDeniedError):
        add_member(
            org.engine,
            org.name,
            acting=Acting("nobody@x.example"),
            member=NewMember(name="D", email="d@x.example", role="Member"),
        )
    assert pending


def test_edit_name_team_role_and_a_pending_members_email(org: Org, admin: Acting) -> None:
    member_id = _add(org, "Ann", "ann@x.example", team="Sales")
    with Session(org.engine) as session, session.begin():
        session.add(ActivationToken(member_id=member_id, token_hash="h" * 64, expires_at=utcnow()))
    change = edit_member(
        org.engine,
        org.name,
        member_id,
        acting=OWNER,
        edit=MemberEdit(name="Ann Lee", email="ann.lee@x.example", team="", role="Admin"),
    )
    assert change.member is not None and change.changed == ("name", "team", "email", "role")
    assert (change.member.name, change.member.email, change.member.team, change.member.role) == (
        "Ann Lee",
        "ann.lee@x.example",
        None,
        Role.ADMIN,
    )
    with Session(org.engine) as session:
        token = session.scalars(select(ActivationToken)).one()
        assert token.revoked_at is not None  # the old link died
    bad = edit_member(
        org.engine, org.name, member_id, acting=OWNER, edit=MemberEdit(email="not an address", team="Salez")
    )
    assert [e.code.value for e in bad.errors] == ["email.invalid", "team.unknown"]
    # An Admin changes Members only, and makes nobody Admin.
    with pytest.raises(PermissionDeniedError):
        edit_member(org.engine, org.name, member_id, acting=admin, edit=MemberEdit(name="X"))
    other = _add(org, "Bo", "bo@x.example")
    up = edit_member(org.engine, org.name, other, acting=admin, edit=MemberEdit(role="Admin"))
    assert [e.code.value for e in up.errors] == ["role.not_allowed"]
    owner = edit_member(org.engine, org.name, other, acting=OWNER, edit=MemberEdit(role="Owner"))
    assert [e.code.value for e in owner.errors] == ["role.not_allowed"]
    # An active member's address is their account's.
    _active(org, other)
    with pytest.raises(ConflictError, match="only a pending member's address"):
        edit_member(org.engine, org.name, other, acting=OWNER, edit=MemberEdit(email="new@x.example"))
    taken = edit_member(org.engine, org.name, member_id, acting=OWNER, edit=MemberEdit(email="BO@x.example"))
    assert [e.code.value for e in taken.errors] == ["member.exists"]


def test_the_last_active_owner_stays(org: Org) -> None:
    owner_id = _owner_id(org)
    with pytest.raises(ConflictError, match="last active Owner"):
        edit_member(org.engine, org.name, owner_id, acting=OWNER, edit=MemberEdit(role="Admin"))
    with pytest.raises(ConflictError, match="last active Owner"):
        deactivate_member(org.engine, org.name, owner_id, acting=OWNER)
    with pytest.raises(ConflictError, match="only a pending member"):
        remove_member(org.engine, org.name, owner_id, acting=OWNER)
    with Session(org.engine) as session:
        assert session.get_one(Member, owner_id).status is Status.ACTIVE


def test_deactivate_reactivate_remove(org: Org, admin: Acting) -> None:
    active = _add(org, "Ann", "ann@x.example")
    _active(org, active)
    pending = _add(org, "Bo", "bo@x.example")
    view = deactivate_member(org.engine, org.name, active, acting=admin)
    assert view.status is Status.DEACTIVATED and view.deactivated_at is not None
    with pytest.raises(ConflictError):
        deactivate_member(org.engine, org.name, active, acting=admin)
    with pytest.raises(ConflictError, match="only a pending member"):
        remove_member(org.engine, org.name, active, acting=admin)
    assert reactivate_member(org.engine, org.name, active, acting=admin).status is Status.ACTIVE
    with pytest.raises(ConflictError):
        reactivate_member(org.engine, org.name, active, acting=admin)
    deactivate_member(org.engine, org.name, pending, acting=admin)
    assert reactivate_member(org.engine, org.name, pending, acting=admin).status is Status.PENDING
    assert remove_member(org.engine, org.name, pending, acting=admin).email == "bo@x.example"
    with pytest.raises(NotFoundError):
        remove_member(org.engine, org.name, pending, acting=admin)
    with pytest.raises(PermissionDeniedError):
        deactivate_member(org.engine, org.name, _owner_id(org), acting=admin)


def test_a_new_pin_is_returned_once_and_stored_hashed(org: Org) -> None:
    phone = add_member(org.engine, org.name, acting=OWNER, member=NewMember(name="Lobby", portal=False))
    assert phone.member is not None and phone.pin is not None
    new = regenerate_pin(org.engine, org.name, phone.member.id, acting=OWNER)
    assert new.pin != phone.pin or len(new.pin) == 6
    with Session(org.engine) as session:
        stored = session.get_one(Member, phone.member.id).pin_hash
    assert stored is not None and new.pin not in stored and verify_pin(stored, new.pin)
    assert not verify_pin(stored, phone.pin) or new.pin == phone.pin
    assert "pin" not in new.member.to_dict()
    portal = _add(org, "Ann", "ann@x.example")
    with pytest.raises(ImporterError, match="no PIN"):
        regenerate_pin(org.engine, org.name, portal, acting=OWNER)


def test_teams_list_rename_delete(org: Org) -> None:
    _add(org, "Ann", "ann@x.example", team="Sales")
    add_member(org.engine, org.name, acting=OWNER, member=NewMember(name="Lobby", portal=False, team="Sales"))
    add_member(org.engine, org.name, acting=OWNER, member=NewMember(name="Lobby", portal=False))
    assert [(t.name, t.members) for t in list_teams(org.engine, org.name)] == [
        ("Engineering", 0),
        ("Sales", 2),
        ("Support", 0),
    ]
    with pytest.raises(ConflictError):
        rename_team(org.engine, org.name, acting=OWNER, team="sales", new_name="SUPPORT")
    assert rename_team(org.engine, org.name, acting=OWNER, team="sales", new_name="Field Sales").members == 2
    with pytest.raises(ConflictError, match="'Lobby'"):
        delete_team(org.engine, org.name, acting=OWNER, team="Field Sales")
    assert delete_team(org.engine, org.name, acting=OWNER, team="Engineering") == 0
    add_member(
        org.engine, org.name, acting=OWNER, member=NewMember(name="Desk", portal=False, team="Support")
    )
    assert delete_team(org.engine, org.name, acting=OWNER, team="support") == 1
    with pytest.raises(NotFoundError):
        delete_team(org.engine, org.name, acting=OWNER, team="Support")
    assert [t.name for t in list_teams(org.engine, org.name)] == ["Field Sales"]
