"""Whole journeys in Debian's chromium, controls found by their labels as people find them."""

from __future__ import annotations

import email
import email.policy
import os
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


def _screenshot(page: Any, name: str, tmp_path: Path) -> None:
    """The page as a PNG: into docs/ when IMPORTER_SCREENSHOTS is set (`make screenshots`), else a
    temporary folder (a test run leaves the work tree as it found it), and never empty."""
    folder = DOCS if os.environ.get("IMPORTER_SCREENSHOTS") else tmp_path
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0


def _set_password(page: Any, password: str) -> None:
    page.get_by_label("New password").fill(password)
    page.get_by_label("Confirm password").fill(password)
    page.get_by_role("button", name="Set password").click()


def _sign_in(page: Any, live: Live, address: str, password: str) -> None:
    page.goto(live.url + "/login")
    page.get_by_label("Email").fill(address)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_owner_sets_a_password_from_the_link_signs_in_and_sees_members(
    page: Any, live: Live, tmp_path: Path
) -> None:
    org = make_org(live.engine)
    page.goto(f"{live.url}/activate?token={org.owner_token}")
    expect(page.get_by_role("heading", name="Set your password")).to_be_visible()
    expect(page.get_by_text(org.name).first).to_be_visible()
    _screenshot(page, "portal-set-password.png", tmp_path)
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
    _screenshot(page, "portal-members.png", tmp_path)
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


def _created_by_org_create(live: Live, name: str, owner: str) -> str:
    """`importer org create` and `team create` on the portal's database: the link it printed."""
    from click.testing import CliRunner

    from importer.cli import cli

    db = ["--db", live.engine.url.render_as_string(hide_password=False)]
    created = CliRunner().invoke(
        cli,
        [*db, "org", "create", name, "--owner-email", owner, "--owner-name", "Olive Owner",
         "--base-url", live.url],
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    teams = CliRunner().invoke(cli, [*db, "team", "create", "--org", name, "Sales", "Support"])
    assert teams.exit_code == 0, teams.output
    link = re.search(r"(http://\S+/activate\?token=\S+)", created.output)
    assert link, created.output
    return link.group(1)


def _upload(page: Any, path: Path) -> None:
    page.get_by_role("link", name="Import", exact=True).click()
    page.get_by_label("Portal Access", exact=True).check()
    page.get_by_label("Spreadsheet").set_input_files(str(path))
    page.get_by_role("button", name="Upload").click()
    expect(page).to_have_url(re.compile(r"/batches/[\w-]+$"))
    # The page refreshes itself while the job runs, then shows the report.
    expect(page.get_by_role("heading", name=re.compile("Import report"))).to_be_visible(timeout=90_000)


def test_owner_imports_a_sheet_with_mistakes_fixes_the_rejected_rows_and_sends_invitations(
    page: Any, live: Live, tmp_path: Path
) -> None:
    import time

    import openpyxl

    owner, name = "olive.owner@acme.example", "Acme Corp"  # this module's database has no other
    page.goto(_created_by_org_create(live, name, owner))
    _set_password(page, GOOD_PASSWORD)
    expect(page).to_have_url(re.compile(r"/login"))
    _sign_in(page, live, owner, GOOD_PASSWORD)
    expect(page.get_by_role("heading", name="Members")).to_be_visible()

    # The sample, with the organization's teams in its Team dropdown, filled in with two mistakes.
    page.get_by_role("link", name="Import", exact=True).click()
    page.get_by_label("Portal Access", exact=True).check()
    with page.expect_download() as sample:
        page.get_by_role("link", name="Download sample (Excel)").click()
    sheet = tmp_path / "staff.xlsx"
    sample.value.save_as(sheet)
    book = openpyxl.load_workbook(sheet)
    assert [c.value for c in book["Lists"]["A"]] == ["Sales", "Support"]
    rows = [("Ada Lovelace", "ada.lovelace@acme.example", "Member", "Sales"),
            ("Grace Hopper", "grace.hopper@@acme", "Member", "Support"),
            ("Alan Turing", "alan.turing@acme.example", "Boss", "")]  # fmt: skip
    for row in rows:
        book.worksheets[0].append(row)
    book.save(sheet)
    page.get_by_label("Spreadsheet").set_input_files(str(sheet))
    _screenshot(page, "portal-import.png", tmp_path)
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("heading", name=re.compile("Import report"))).to_be_visible(timeout=90_000)

    # The report itself on the batch page, and its files.
    expect(page.get_by_text("2 of 3 rows need fixing")).to_be_visible()
    expect(page.get_by_role("cell", name=re.compile(r"grace\.hopper@@acme"))).to_be_visible()
    for file_name in ("rejected.xlsx", "rejected.csv", "errors.csv", "summary.json"):
        expect(page.get_by_role("link", name=file_name, exact=True)).to_be_visible()
    _screenshot(page, "portal-batch.png", tmp_path)
    with page.expect_download() as rejected:
        page.get_by_role("link", name="rejected.xlsx", exact=True).click()
    fixed = tmp_path / "rejected.xlsx"
    rejected.value.save_as(fixed)

    # Fixed in the workbook (the Errors column is ignored) and uploaded again: accepted.
    book = openpyxl.load_workbook(fixed)
    table = book.worksheets[0]
    header = [c.value for c in table[1]]
    email_at = header.index(next(h for h in header if h and h.startswith("Email")))
    role_at = header.index(next(h for h in header if h and h.startswith("Role")))
    for line in table.iter_rows(min_row=2):
        if "@@" in str(line[email_at].value):
            line[email_at].value = str(line[email_at].value).replace("@@", "@") + ".example"
        if line[role_at].value == "Boss":
            line[role_at].value = "Admin"
    book.save(fixed)
    _upload(page, fixed)
    expect(page.get_by_text("Nothing to fix")).to_be_visible()
    expect(page.locator("#counts .card.created dd")).to_have_text("2")

    # The Batches page lists both imports; then the invitations go out from the Members page.
    page.get_by_role("link", name="Batches", exact=True).click()
    expect(page.get_by_role("cell", name="staff.xlsx")).to_be_visible()
    expect(page.get_by_role("cell", name="rejected.xlsx")).to_be_visible()
    page.get_by_role("link", name="Members", exact=True).click()
    page.get_by_label("All matching").check()
    page.get_by_role("button", name="Send activation emails").click()
    expect(page.get_by_role("status")).to_contain_text("Sending in the background")
    invited = {"ada.lovelace@acme.example", "grace.hopper@acme.example", "alan.turing@acme.example"}
    deadline = time.monotonic() + 60
    while True:
        sent = {
            str(email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["To"])
            for p in live.outbox.glob("*.eml")
        }
        if all(any(who in to for to in sent) for who in invited):
            break
        assert time.monotonic() < deadline, f"invitations not sent: {sent}"
        time.sleep(0.1)
