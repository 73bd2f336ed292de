"""Accounts: one password across organizations; an invitation accepted without a password."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from importer.accounts.accounts import activate_membership, authenticate, find_account, set_password
from importer.accounts.audit import Acting
from importer.accounts.members import NewMember, add_member
from importer.errors import ActivationError
from importer.store.models import Account, Member, Status
from importer.store.orgs import create_organization
from tests.conftest import Org

STRONG = "Correct horse 42"


def _add(org: Org, email: str, *, org_name: str | None = None, owner: str | None = None) -> int:
    change = add_member(
        org.engine,
        org_name or org.name,
        acting=Acting(owner or org.owner),
        member=NewMember(name="Ann Lee", email=email, role="Member"),
    )
    assert change.member is not None, change.errors
    return change.member.id


def test_one_password_across_two_organizations(org: Org) -> None:
    create_organization(org.engine, "Beta Ltd", owner_email="bo@beta.example", owner_name="Bo")
    first = _add(org, "ann@example.com")
    second_change = add_member(
        org.engine,
        "Beta Ltd",
        acting=Acting("bo@beta.example"),
        member=NewMember(name="Ann", email="ANN@example.com", role="Member"),
    )
    assert second_change.member is not None and not second_change.invitation  # no account yet

    with Session(org.engine) as session, session.begin():
        done = activate_membership(session, first, password=STRONG)
    assert (done.new_account, done.organization) == (True, "Acme Corp")

    third = add_member(
        org.engine,
        "Beta Ltd",
        acting=Acting("bo@beta.example"),
        member=NewMember(name="Ann 2", email="ann@EXAMPLE.com", role="Member"),
    )
    assert third.errors and third.errors[0].code.value == "member.exists"  # same mailbox, same org
    with (
        Session(org.engine) as session,
        session.begin(),
        pytest.raises(ActivationError, match="already has an account"),
    ):
        activate_membership(session, second_change.member.id, password="Another pass 99")
    with Session(org.engine) as session, session.begin():
        accepted = activate_membership(session, second_change.member.id, password=None)
    assert (accepted.new_account, accepted.account_id) == (False, done.account_id)

    with Session(org.engine) as session, session.begin():
        assert authenticate(session, email="Ann@Example.com", password=STRONG) is not None
        assert authenticate(session, email="ann@example.com", password="wrong 12345") is None
        assert (
            session.scalar(select(Account.id).where(Account.email_key == "ann@example.com"))
            == done.account_id
        )
        members = session.scalars(select(Member).where(Member.account_id == done.account_id)).all()
        assert sorted(m.status for m in members) == [Status.ACTIVE, Status.ACTIVE]


def test_an_invitation_is_flagged_when_the_address_has_an_account(org: Org) -> None:
    create_organization(org.engine, "Beta Ltd", owner_email="bo@beta.example", owner_name="Bo")
    member_id = _add(org, "cy@example.com")
    with Session(org.engine) as session, session.begin():
        activate_membership(session, member_id, password=STRONG)
    change = add_member(
        org.engine,
        "Beta Ltd",
        acting=Acting("bo@beta.example"),
        member=NewMember(name="Cy", email="cy@example.com", role="Admin"),
    )
    assert change.invitation and change.member is not None and change.member.status is Status.PENDING


def test_the_first_activation_needs_a_password_that_meets_the_policy(org: Org) -> None:
    member_id = _add(org, "dee@example.com")
    with Session(org.engine) as session, session.begin():
        with pytest.raises(ActivationError, match="Choose a password"):
            activate_membership(session, member_id, password=None)
        with pytest.raises(ActivationError, match="at least one digit"):
            activate_membership(session, member_id, password="only letters here")
    with Session(org.engine) as session:
        assert find_account(session, "dee@example.com") is None


def test_set_password_changes_the_one_password(org: Org) -> None:
    member_id = _add(org, "eve@example.com")
    with Session(org.engine) as session, session.begin():
        activate_membership(session, member_id, password=STRONG)
    with Session(org.engine) as session, session.begin():
        with pytest.raises(ActivationError):
            set_password(session, email="eve@example.com", password="short1")
        set_password(session, email="EVE@example.com", password="New pass 2026")
    with Session(org.engine) as session, session.begin():
        assert authenticate(session, email="eve@example.com", password="New pass 2026") is not None
        assert authenticate(session, email="eve@example.com", password=STRONG) is None
