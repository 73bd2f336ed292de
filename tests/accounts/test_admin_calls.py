"""The library calls behind the Teams, Audit and Settings pages, on SQLite and PostgreSQL:
create_team, audit pages by event id, the policy change's actor by channel."""

from __future__ import annotations

import pytest

from importer.accounts.audit import Acting, Channel, list_events
from importer.accounts.passwords import set_password_policy
from importer.accounts.teams import create_team, list_teams
from importer.errors import ConflictError, ImporterError, PermissionDeniedError
from tests.conftest import Org


def test_create_team_is_audited_and_refuses_a_taken_name(org: Org) -> None:
    made = create_team(org.engine, org.name, acting=Acting(org.owner, Channel.ACCOUNT), name="  Night Shift ")
    assert (made.name, made.members) == ("Night Shift", 0)
    assert "Night Shift" in [t.name for t in list_teams(org.engine, org.name)]
    with pytest.raises(ConflictError, match="already has a team 'NIGHT SHIFT'"):
        create_team(org.engine, org.name, acting=Acting(org.owner), name="NIGHT SHIFT")
    for bad in ("   ", "x" * 201, "tab\there"):
        with pytest.raises(ImporterError):
            create_team(org.engine, org.name, acting=Acting(org.owner), name=bad)
    with pytest.raises(PermissionDeniedError):
        create_team(org.engine, org.name, acting=Acting("stranger@acme.example"), name="Mine")
    (event,) = [e for e in list_events(org.engine, org.name) if e.action.value == "team.created"]
    assert (event.actor, event.subject) == (org.owner, "Night Shift")


def test_audit_pages_by_event_id_cover_every_event_once(org: Org) -> None:
    for n in range(23):
        create_team(org.engine, org.name, acting=Acting(org.owner), name=f"T{n:02d}")
    everything = list_events(org.engine, org.name)
    pages, before = [], None
    while True:
        page = list_events(org.engine, org.name, limit=10, before=before)
        if not page:
            break
        pages.append(page)
        before = page[-1].id
    assert [len(p) for p in pages] == [10, 10, 3]
    assert [e.id for p in pages for e in p] == [e.id for e in everything]
    assert [e.subject for e in pages[0][:2]] == ["T22", "T21"]


def test_a_policy_change_names_its_actor_by_channel(org: Org) -> None:
    set_password_policy(org.engine, org.name, actor_email=org.owner, min_length=10)
    set_password_policy(org.engine, org.name, actor_email=org.owner, min_length=11, channel=Channel.ACCOUNT)
    changes = [
        e.actor for e in list_events(org.engine, org.name) if e.action.value == "password_policy.changed"
    ]
    assert changes == [org.owner, f"cli:{org.owner}"]
