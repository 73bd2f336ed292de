"""The Teams, Audit and Settings pages: what each does, on the same library calls as the CLI, and
the attacks that fail on them (CSRF, a Member, another organization's ids, XSS, an Admin on the policy)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from importer.accounts.api_tokens import create_token, list_tokens
from importer.accounts.audit import Acting, list_events
from importer.accounts.members import NewMember, add_member
from importer.accounts.passwords import PasswordPolicy, get_password_policy
from importer.accounts.teams import create_team, list_teams
from importer.store.models import AuditAction, Member
from tests.web.conftest import GOOD_PASSWORD, Live, Org, csrf_of, issue_link, make_org, sign_in

_counter = iter(range(1, 10_000))


@dataclass
class Signed:
    """An organization and clients signed in as its Owner, an Admin and a Member."""

    org: Org
    owner: httpx.Client
    admin: httpx.Client
    member: httpx.Client
    admin_email: str
    member_email: str


def _client(live: Live) -> httpx.Client:
    return httpx.Client(base_url=live.url, follow_redirects=False, timeout=30)


def _activate(live: Live, token: str, email: str) -> httpx.Client:
    client = _client(live)
    page = client.get("/activate", params={"token": token})
    assert page.status_code == 200, page.text
    done = client.post(
        "/activate",
        data={"csrf_token": csrf_of(page.text), "token": token,
              "new_password": GOOD_PASSWORD, "confirm_password": GOOD_PASSWORD},
    )  # fmt: skip
    assert done.status_code == 303, done.text
    return sign_in(client, email, GOOD_PASSWORD)


def _join(live: Live, org: Org, role: str) -> tuple[httpx.Client, str]:
    email = f"{role.lower()}{next(_counter)}@acme.example"
    new = NewMember(name=f"{role} X", email=email, role=role)
    change = add_member(live.engine, org.name, acting=Acting(org.owner), member=new)
    assert change.member is not None, change.errors
    return _activate(live, issue_link(live.engine, change.member.id), email), email


def _signed(live: Live) -> Signed:
    org = make_org(live.engine)
    owner = _activate(live, org.owner_token, org.owner)
    admin, admin_email = _join(live, org, "Admin")
    member, member_email = _join(live, org, "Member")
    return Signed(org, owner, admin, member, admin_email, member_email)


@pytest.fixture
def signed(live: Live) -> Signed:
    """A fresh organization with its Owner, an Admin and a Member signed in."""
    return _signed(live)


def _post(client: httpx.Client, page: str, path: str, **data: str) -> httpx.Response:
    """Submit a form of `page` the way the browser does: with the page's CSRF token."""
    return client.post(path, data={"csrf_token": csrf_of(client.get(page).text), **data})


def _actions(live: Live, org: Org) -> list[tuple[str, str, str]]:
    return [(e.action.value, e.actor, e.subject) for e in list_events(live.engine, org.name)]


def _team_id(live: Live, org: Org, name: str) -> int:
    return next(t.id for t in list_teams(live.engine, org.name) if t.name == name)


def _rows(html: str) -> list[str]:
    """The text of each row of the page's table body."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in html else ""
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip() for row in body.split("</tr>")[:-1]]


# --- teams ---


def test_teams_are_created_renamed_and_deleted_with_their_counts_and_audited(
    live: Live, signed: Signed
) -> None:
    org, owner = signed.org, signed.owner
    teams = f"/orgs/{org.id}/teams"
    first = owner.get(teams)
    assert first.status_code == 200
    assert [r.split()[:2] for r in _rows(first.text)] == [["Sales", "0"], ["Support", "0"]]

    created = _post(owner, teams, teams, name="  Field Ops ")
    assert created.status_code == 303
    assert "Created team Field Ops." in owner.get(created.headers["location"]).text
    tia = NewMember(name="Tia", email="tia@acme.example", role="Member", team="Field Ops")
    add_member(live.engine, org.name, acting=Acting(org.owner), member=tia)
    assert "Field Ops 1" in _rows(owner.get(teams).text)[0]

    again = _post(owner, teams, teams, name="field ops")
    assert again.status_code == 409
    assert "already has a team 'field ops'" in html.unescape(again.text) and 'value="field ops"' in again.text
    blank = _post(owner, teams, teams, name="   ")
    assert blank.status_code == 400 and "a team needs a name." in blank.text

    field_ops = _team_id(live, org, "Field Ops")
    renamed = _post(owner, teams, f"{teams}/{field_ops}/rename", new_name="Field Operations")
    assert renamed.status_code == 303
    assert [(t.name, t.members) for t in list_teams(live.engine, org.name)] == [
        ("Field Operations", 1),
        ("Sales", 0),
        ("Support", 0),
    ]
    clash = _post(owner, teams, f"{teams}/{field_ops}/rename", new_name="SALES")
    assert clash.status_code == 409 and "already has a team" in clash.text

    confirm = owner.get(f"{teams}/{field_ops}/delete")
    assert confirm.status_code == 200 and "Delete team Field Operations?" in confirm.text
    assert len(list_teams(live.engine, org.name)) == 3  # not yet
    deleted = owner.post(f"{teams}/{field_ops}/delete", data={"csrf_token": csrf_of(confirm.text)})
    assert deleted.status_code == 303
    assert [t.name for t in list_teams(live.engine, org.name)] == ["Sales", "Support"]
    with Session(live.engine) as session:
        tia = session.scalars(select(Member).where(Member.email == "tia@acme.example")).one()
        assert tia.team_id is None

    trail = [a for a in _actions(live, org) if a[0].startswith("team.")]
    assert trail == [
        ("team.deleted", org.owner, "Field Operations"),
        ("team.renamed", org.owner, "Field Operations"),
        ("team.created", org.owner, "Field Ops"),
    ]


# --- audit ---


def test_audit_lists_events_newest_first_with_filters_and_pages(live: Live, signed: Signed) -> None:
    org, owner = signed.org, signed.owner
    for n in range(55):
        create_team(live.engine, org.name, acting=Acting(signed.admin_email), name=f"Team {n:02d}")
    audit = f"/orgs/{org.id}/audit"

    first = owner.get(audit)
    rows = _rows(first.text)
    assert first.status_code == 200 and len(rows) == 50
    assert "team.created" in rows[0] and "Team 54" in rows[0] and "Team 05" in rows[-1]
    older = re.search(r'href="([^"]*before=\d+[^"]*)"', first.text)
    assert older is not None and ">Next<" in first.text
    second = owner.get(older.group(1).replace("&amp;", "&"))
    rest = _rows(second.text)
    # The rest of the teams, then the earlier events (activations, members added ...); no repeats.
    assert [re.findall(r"Team \d\d", r) for r in rest[:6]] == [
        ["Team 04"],
        ["Team 03"],
        ["Team 02"],
        ["Team 01"],
        ["Team 00"],
        [],
    ]
    assert not set(rows) & set(rest)
    assert len(rows) + len(rest) == len(list_events(live.engine, org.name))

    by_owner = _rows(owner.get(audit, params={"actor": org.owner}).text)
    assert by_owner and all(org.owner in r for r in by_owner)
    by_admin = _rows(owner.get(audit, params={"actor": signed.admin_email.upper()}).text)
    assert len(by_admin) == 50 and all(signed.admin_email in r for r in by_admin)
    assert _rows(owner.get(audit, params={"since": "2999-01-01"}).text) == []
    wrong = owner.get(audit, params={"since": "last tuesday"})
    assert wrong.status_code == 200 and "is not a date or time" in wrong.text


# --- settings: the password policy ---


def test_the_owner_changes_the_password_policy_and_it_is_audited(live: Live, signed: Signed) -> None:
    org, owner = signed.org, signed.owner
    settings = f"/orgs/{org.id}/settings"
    page = owner.get(settings)
    assert page.status_code == 200 and 'id="min-length"' in page.text and "Save policy" in page.text
    saved = _post(owner, settings, f"{settings}/policy", min_length="12", require_symbol="yes")
    assert saved.status_code == 303
    assert get_password_policy(live.engine, org.name) == PasswordPolicy(12, True)
    shown = owner.get(saved.headers["location"]).text
    assert "at least 12 characters, with letters, digits and a symbol" in shown
    assert (AuditAction.PASSWORD_POLICY_CHANGED.value, org.owner, org.name) in _actions(live, org)

    for bad, status, said in (("7", 400, "between 8 and 128"), ("twelve", 422, "whole number")):
        refused = _post(owner, settings, f"{settings}/policy", min_length=bad)
        assert refused.status_code == status and said in refused.text
    assert get_password_policy(live.engine, org.name) == PasswordPolicy(12, True)


def test_an_admin_reads_the_policy_but_cannot_change_it(live: Live, signed: Signed) -> None:
    org = signed.org
    settings = f"/orgs/{org.id}/settings"
    page = signed.admin.get(settings)
    assert page.status_code == 200
    assert "Save policy" not in page.text and "disabled" in page.text and "Minimum length" in page.text
    refused = _post(signed.admin, settings, f"{settings}/policy", min_length="20")
    assert refused.status_code == 403
    assert get_password_policy(live.engine, org.name) == PasswordPolicy()


# --- settings: API tokens ---


def test_a_token_is_shown_once_works_and_stops_working_when_revoked(live: Live, signed: Signed) -> None:
    org, owner = signed.org, signed.owner
    settings = f"/orgs/{org.id}/settings"
    made = _post(owner, settings, f"{settings}/tokens", name="nightly sync")
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
    token = re.search(r'value="(imp_[^"]+)"', made.text)
    assert token is not None
    api = httpx.Client(base_url=f"{live.url}/api/v1", headers={"Authorization": f"Bearer {token.group(1)}"})
    assert api.get("/orgs").json() == [{"id": org.id, "name": org.name, "role": "Owner"}]

    again = owner.get(settings)
    assert token.group(1) not in again.text and "nightly sync" in again.text
    # Only the viewer's own tokens are listed: the Admin's is not on the Owner's page.
    create_token(live.engine, org.name, email=signed.admin_email, name="admin's script")
    assert "admin&#39;s script" not in owner.get(settings).text
    assert "admin&#39;s script" in signed.admin.get(settings).text

    (mine,) = list_tokens(live.engine, org.name, email=org.owner)
    revoked = _post(owner, settings, f"{settings}/tokens/{mine.id}/revoke")
    assert revoked.status_code == 303
    assert api.get("/orgs").status_code == 401
    assert "revoked" in owner.get(settings).text
    trail = [a[:2] for a in _actions(live, org) if a[0].startswith("api_token.")]
    assert trail[0] == ("api_token.revoked", org.owner) and ("api_token.created", org.owner) in trail


# --- attacks that fail ---


def test_posts_without_a_csrf_token_are_refused_and_change_nothing(live: Live, signed: Signed) -> None:
    org, owner = signed.org, signed.owner
    sales = _team_id(live, org, "Sales")
    (token_view,) = [create_token(live.engine, org.name, email=org.owner, name="t").view]
    base = f"/orgs/{org.id}"
    posts = {
        f"{base}/teams": {"name": "Forged"},
        f"{base}/teams/{sales}/rename": {"new_name": "Forged"},
        f"{base}/teams/{sales}/delete": {},
        f"{base}/settings/policy": {"min_length": "30"},
        f"{base}/settings/tokens": {"name": "forged"},
        f"{base}/settings/tokens/{token_view.id}/revoke": {},
    }
    before = (_actions(live, org), list_teams(live.engine, org.name), list_tokens(live.engine, org.name))
    for path, data in posts.items():
        assert owner.post(path, data=data).status_code == 403, path
        assert owner.post(path, data={**data, "csrf_token": "forged"}).status_code == 403, path
    after = (_actions(live, org), list_teams(live.engine, org.name), list_tokens(live.engine, org.name))
    assert after == before


def test_a_member_gets_403_on_every_admin_page_and_form(live: Live, signed: Signed) -> None:
    org, member = signed.org, signed.member
    base = f"/orgs/{org.id}"
    sales = _team_id(live, org, "Sales")
    for path in (f"{base}/teams", f"{base}/audit", f"{base}/settings", f"{base}/teams/{sales}/delete"):
        assert member.get(path).status_code == 403, path
    token = csrf_of(member.get("/me").text)
    for path, data in (
        (f"{base}/teams", {"name": "Mine"}),
        (f"{base}/teams/{sales}/delete", {}),
        (f"{base}/settings/policy", {"min_length": "9"}),
        (f"{base}/settings/tokens", {"name": "mine"}),
    ):
        assert member.post(path, data={**data, "csrf_token": token}).status_code == 403, path
    assert [t.name for t in list_teams(live.engine, org.name)] == ["Sales", "Support"]
    assert list_tokens(live.engine, org.name) == []


def test_another_organizations_ids_answer_404(live: Live, signed: Signed) -> None:
    mine, owner = signed.org, signed.owner
    theirs = make_org(live.engine, teams=("Theirs",))
    _activate(live, theirs.owner_token, theirs.owner).close()
    their_team = _team_id(live, theirs, "Theirs")
    their_token = create_token(live.engine, theirs.name, email=theirs.owner).view.id
    admins_token = create_token(live.engine, mine.name, email=signed.admin_email).view.id
    for path in (f"/orgs/{theirs.id}/teams", f"/orgs/{theirs.id}/audit", f"/orgs/{theirs.id}/settings",
                 f"/orgs/{mine.id}/teams/{their_team}/delete", "/orgs/999999/settings"):  # fmt: skip
        assert owner.get(path).status_code == 404, path
    token = csrf_of(owner.get("/me").text)
    for path in (
        f"/orgs/{theirs.id}/teams",
        f"/orgs/{mine.id}/teams/{their_team}/rename",
        f"/orgs/{mine.id}/teams/{their_team}/delete",
        f"/orgs/{mine.id}/settings/tokens/{their_token}/revoke",
        f"/orgs/{theirs.id}/settings/tokens/{their_token}/revoke",
        f"/orgs/{mine.id}/settings/tokens/{admins_token}/revoke",  # not the viewer's own
    ):
        answer = owner.post(path, data={"csrf_token": token, "name": "x", "new_name": "x"})
        assert answer.status_code == 404, path
    assert [t.name for t in list_teams(live.engine, theirs.name)] == ["Theirs"]
    assert all(t.revoked_at is None for t in list_tokens(live.engine, theirs.name))
    assert all(t.revoked_at is None for t in list_tokens(live.engine, mine.name))


XSS = '<script>alert("team")</script><img src=x onerror=alert(1)>'


@pytest.mark.parametrize("page", ["teams", "audit", "members"])
def test_a_team_name_is_escaped_on_every_page_that_shows_it(live: Live, signed: Signed, page: str) -> None:
    org, owner = signed.org, signed.owner
    made = _post(owner, f"/orgs/{org.id}/teams", f"/orgs/{org.id}/teams", name=XSS)
    assert made.status_code == 303
    shown = owner.get(f"/orgs/{org.id}/{page}").text
    assert "<script>alert" not in shown and "<img src=x" not in shown
    assert "&lt;script&gt;alert(&#34;team&#34;)&lt;/script&gt;" in shown


def test_odd_input_gets_an_answer_never_a_server_error(live: Live, signed: Signed) -> None:
    org, owner = signed.org, signed.owner
    base = f"/orgs/{org.id}"
    for params in ({"actor": "a\x00b"}, {"since": "9999-12-31T23:59-23:59"}, {"before": "²"},
                   {"before": "9" * 40}, {"since": "2025-13-45"}):  # fmt: skip
        answer = owner.get(f"{base}/audit", params=params)
        assert answer.status_code == 200, params
    assert "cannot hold control characters" in owner.get(f"{base}/audit", params={"actor": "\x00"}).text
    for path, data, status in (
        (f"{base}/teams", {"name": "Night\x00Shift"}, 400),
        (f"{base}/teams", {"name": "x" * 201}, 400),
        (f"{base}/settings/policy", {"min_length": "²"}, 422),
        (f"{base}/settings/tokens", {"name": "bad\x00name"}, 400),
    ):
        answer = _post(owner, f"{base}/teams", path, **data)
        assert answer.status_code == status, (path, data, answer.text[-300:])
        assert 'role="alert"' in answer.text
    acted = _post(owner, f"{base}/members", f"{base}/members/actions", action="deactivate", member="²")
    assert acted.status_code == 303
    assert [t.name for t in list_teams(live.engine, org.name)] == ["Sales", "Support"]
    assert list_tokens(live.engine, org.name) == []
