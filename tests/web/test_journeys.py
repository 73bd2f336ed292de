"""Whole journeys in Debian's chromium, controls found by their labels as people find them."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from importer.accounts.audit import Acting
from importer.accounts.members import NewMember, add_member
from importer.activation.sending import send_activations
from importer.activation.transports.file import FileTransport
from tests.web.conftest import GOOD_PASSWORD, Live, activate_and_sign_in, make_org

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _set_password(page: Any, password: str) -> None:
    page.get_by_label("New password").fill(password)
    page.get_by_label("Confirm password").fill(password)
    page.get_by_role("button", name="Set password").click()


def _sign_in(page: Any, live: Live, address: str, password: str) -> None:
    page.goto(live.url + "/login")
    page.get_by_label("Email").fill(address)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_owner_sets_a_password_from_the_link_signs_in_and_sees_members(page: Any, live: Live) -> None:
    org = make_org(live.engine)
    page.goto(f"{live.url}/activate?token={org.owner_token}")
    expect(page.get_by_role("heading", name="Set your password")).to_be_visible()
    expect(page.get_by_text(org.name).first).to_be_visible()
    page.screenshot(path=str(DOCS / "portal-set-password.png"), full_page=True)
    _set_password(page, GOOD_PASSWORD)
    expect(page).to_have_url(re.compile(r"/login"))
    for n, name in enumerate(["Ada Lovelace", "Grace Hopper", "Alan Turing"]):
        address = f"{name.split()[0].lower()}@acme.example"
        new = NewMember(name, address, "Member", "Sales" if n else "Support")
        add_member(live.engine, org.name, acting=Acting(org.owner), member=new)
    _sign_in(page, live, org.owner, GOOD_PASSWORD)
    expect(page).to_have_url(re.compile(rf"/orgs/{org.id}/members$"))
    expect(page.get_by_role("heading", name="Members")).to_be_visible()
    expect(page.get_by_role("cell", name="Grace Hopper", exact=True)).to_be_visible()
    page.get_by_label("Search").fill("grace")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("cell", name="Ada Lovelace", exact=True)).to_have_count(0)
    expect(page.get_by_role("cell", name="Grace Hopper", exact=True)).to_be_visible()
    page.goto(f"{live.url}/orgs/{org.id}/members")
    page.screenshot(path=str(DOCS / "portal-members.png"), full_page=True)
    # Add member: an error beside its field, in the sheet's words.
    page.get_by_role("link", name="Add member").click()
    page.get_by_label("Name").fill("Bad Address")
    page.get_by_label("Email").fill("bad@@acme")
    page.get_by_role("button", name="Add member").click()
    expect(page.locator("#email-error")).to_be_visible()
    page.get_by_label("Email").fill("bad.address@acme.example")
    page.get_by_role("button", name="Add member").click()
    expect(page.get_by_role("cell", name="Bad Address", exact=True)).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))


def test_member_opens_the_emailed_link_is_refused_a_weak_password_and_the_admin_pages(
    page: Any, live: Live, tmp_path: Path
) -> None:
    org = make_org(live.engine)
    activate_and_sign_in(live, org).close()
    add_member(live.engine, org.name, acting=Acting(org.owner),
               member=NewMember("Mo Member", "mo.member@acme.example", "Member", "Sales"))  # fmt: skip
    outbox = tmp_path / "outbox"
    with FileTransport(outbox) as transport:
        send_activations(
            live.engine,
            org.name,
            transport=transport,
            sender="Acme <no-reply@acme.example>",
            base_url=live.url,
        )
    mails = [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in outbox.glob("*.eml")
    ]
    mail = next(m for m in mails if "mo.member@acme.example" in str(m["To"]))
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None
    link = re.search(r"(http://\S+/activate\?token=\S+)", body.get_content())
    assert link, body.get_content()
    page.goto(link.group(1))
    expect(page.get_by_text("Mo Member").first).to_be_visible()
    _set_password(page, "password123")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("most common passwords")
    _set_password(page, "Mo.Member-2024x")
    expect(page.get_by_role("alert")).to_contain_text("email address")
    _set_password(page, GOOD_PASSWORD)
    expect(page).to_have_url(re.compile(r"/login"))
    _sign_in(page, live, "mo.member@acme.example", GOOD_PASSWORD)
    expect(page).to_have_url(re.compile(r"/me$"))
    expect(page.get_by_role("cell", name=org.name)).to_be_visible()
    answer = page.goto(f"{live.url}/orgs/{org.id}/members")
    assert answer is not None and answer.status == 403
