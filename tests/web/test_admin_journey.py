"""The Owner's journey through Teams, Settings and Audit in Debian's chromium, controls found by
their labels: a team made and renamed, the policy tightened, an API token made, used and revoked."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.sync_api import expect

from importer.accounts.passwords import PasswordPolicy, get_password_policy
from importer.accounts.teams import list_teams
from tests.web.conftest import GOOD_PASSWORD, Live, activate_and_sign_in, make_org


def test_owner_manages_teams_policy_and_an_api_token_in_the_browser(page: Any, live: Live) -> None:
    org = make_org(live.engine)
    activate_and_sign_in(live, org).close()
    page.goto(live.url + "/login")
    page.get_by_label("Email").fill(org.owner)
    page.get_by_label("Password").fill(GOOD_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(rf"/orgs/{org.id}/members$"))

    # Teams: create one, see its count, rename it, refuse a duplicate, delete after confirming.
    page.get_by_role("link", name="Teams").click()
    expect(page.get_by_role("heading", name="Teams")).to_be_visible()
    page.get_by_label("Team name").fill("Night Shift")
    page.get_by_role("button", name="Create team").click()
    expect(page.get_by_role("status")).to_contain_text("Created team Night Shift.")
    expect(page.get_by_role("row", name=re.compile(r"Night Shift\s+0"))).to_have_count(1)
    page.get_by_label("Team name").fill("night shift")
    page.get_by_role("button", name="Create team").click()
    expect(page.get_by_role("alert")).to_contain_text("already has a team")
    page.get_by_label("New name for Night Shift").fill("Late Shift")
    page.get_by_role("button", name="Rename Night Shift").click()
    expect(page.get_by_role("status")).to_contain_text("Renamed team Night Shift to Late Shift.")
    page.get_by_role("link", name="Delete Support").click()
    expect(page.get_by_role("heading", name="Delete team Support?")).to_be_visible()
    page.get_by_role("button", name="Delete team").click()
    expect(page.get_by_role("status")).to_contain_text("Deleted team Support")
    assert [t.name for t in list_teams(live.engine, org.name)] == ["Late Shift", "Sales"]

    # Settings: the Owner tightens the password policy.
    page.get_by_role("link", name="Settings").click()
    page.get_by_label("Minimum length").fill("14")
    page.get_by_label("Require a symbol").check()
    page.get_by_role("button", name="Save policy").click()
    expect(page.get_by_role("status")).to_contain_text(
        "at least 14 characters, with letters, digits and a symbol"
    )
    assert get_password_policy(live.engine, org.name) == PasswordPolicy(14, True)

    # An API token: shown once, works against the API, then revoked: 401.
    page.get_by_label("Token name").fill("nightly export")
    page.get_by_role("button", name="Create token").click()
    token = page.get_by_label("New API token").input_value()
    assert token.startswith("imp_")
    api = httpx.Client(
        base_url=f"{live.url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    answer = api.get("/orgs")
    assert answer.status_code == 200 and answer.json() == [{"id": org.id, "name": org.name, "role": "Owner"}]
    page.goto(f"{live.url}/orgs/{org.id}/settings")  # shown once: not on the page again
    expect(page.get_by_label("New API token")).to_have_count(0)
    expect(page.get_by_role("cell", name="nightly export", exact=True)).to_be_visible()
    page.get_by_role("button", name="Revoke nightly export").click()
    expect(page.get_by_role("status")).to_contain_text("Revoked API token nightly export.")
    revoked = api.get("/orgs")
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "unauthorized"

    # Audit: every step above, newest first, by the Owner's own address.
    page.get_by_role("link", name="Audit").click()
    rows = page.locator("tbody tr")
    expect(rows.first).to_contain_text("api_token.revoked")
    for action in (
        "api_token.created",
        "password_policy.changed",
        "team.deleted",
        "team.renamed",
        "team.created",
    ):
        expect(page.get_by_role("cell", name=action, exact=True).first).to_be_visible()
    page.get_by_label("Actor").fill("somebody.else@acme.example")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No events match these filters.")).to_be_visible()
