"""Listing members: filters, search, keyset paging that lists every member exactly once."""

from __future__ import annotations

import pytest

from importer.accounts.audit import Acting
from importer.accounts.listing import decode_cursor, encode_cursor, list_members
from importer.accounts.members import NewMember, add_member
from importer.errors import ImporterError, NotFoundError
from importer.sheets import UserType
from importer.store.models import Status
from tests.conftest import Org

OWNER = Acting("olive.owner@acme.example")


def _add(org: Org, i: int, *, team: str = "") -> None:
    change = add_member(
        org.engine,
        org.name,
        acting=OWNER,
        member=NewMember(name=f"Person {i}", email=f"p{i}@x.example", role="Member", team=team),
    )
    assert change.member is not None


def test_paging_lists_every_member_exactly_once_while_members_are_added(org: Org) -> None:
    for i in range(7):
        _add(org, i)
    seen: list[int] = []
    after: str | None = None
    added = 100
    while True:
        page = list_members(org.engine, org.name, limit=3, after=after)
        seen.extend(m.id for m in page.members)
        _add(org, added)  # between pages
        added += 1
        if page.next is None:
            break
        after = page.next
    everyone = [m.id for m in list_members(org.engine, org.name).members]
    assert len(seen) == len(set(seen))
    assert seen == everyone[: len(seen)] and set(everyone) - set(seen) <= set(everyone[-1:])
    assert page.to_dict()["next"] is None


def test_filters_and_search(org: Org) -> None:
    _add(org, 1, team="Sales")
    _add(org, 2)
    add_member(
        org.engine, org.name, acting=OWNER, member=NewMember(name="Lobby Phone", portal=False, team="sales")
    )
    by = lambda **kw: [m.name for m in list_members(org.engine, org.name, **kw).members]  # noqa: E731
    assert by(team="SALES") == ["Person 1", "Lobby Phone"]
    assert by(user_type=UserType.NO_PORTAL) == ["Lobby Phone"]
    assert by(status=Status.ACTIVE) == ["Olive Owner"]
    assert by(search="PERSON") == ["Person 1", "Person 2"]
    assert by(search="p2@X") == ["Person 2"]
    assert by(search="%") == []
    assert by(batch="nope") == []
    member = list_members(org.engine, org.name, search="Olive").members[0].to_dict()
    assert member["activated_at"] is not None and "pin_hash" not in member
    with pytest.raises(NotFoundError):
        list_members(org.engine, org.name, team="Nope")


def test_a_cursor_is_opaque_and_checked() -> None:
    assert decode_cursor(encode_cursor(12345)) == 12345
    for bad in ("", "abc", encode_cursor(1)[:-1] + "!", "bTE6LTE"):
        with pytest.raises(ImporterError, match="not a cursor"):
            decode_cursor(bad)
