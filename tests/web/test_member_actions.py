"""The members page's actions reach exactly the members chosen: the selection, or all matching."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select
from sqlalchemy.orm import Session

from importer.accounts.audit import Acting
from importer.accounts.members import NewMember, add_member
from importer.store.models import Job, JobStatus
from tests.conftest import wait_for
from tests.web.conftest import GOOD_PASSWORD, Live, activate_and_sign_in, make_org


@pytest.fixture
def outbox(live: Live) -> Path:
    """The folder where the portal's own worker (conftest's `live`) drops activation emails."""
    return live.outbox


def _recipients(folder: Path) -> list[str]:
    return sorted(
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["To"].addresses[0].addr_spec
        for p in folder.glob("*.eml")
    )


def _jobs_done(live: Live, org_id: int) -> bool:
    with Session(live.engine) as session:
        statuses = session.scalars(select(Job.status).where(Job.organization_id == org_id)).all()
    return bool(statuses) and all(s in (JobStatus.DONE, JobStatus.FAILED) for s in statuses)


def test_send_activation_emails_goes_to_the_selected_members_only(
    page: Any, live: Live, outbox: Path
) -> None:
    org = make_org(live.engine)
    activate_and_sign_in(live, org).close()
    for name in ("Ann Alpha", "Ben Beta", "Cat Gamma"):
        local = name.lower().replace(" ", ".")
        add_member(live.engine, org.name, acting=Acting(org.owner),
                   member=NewMember(name, f"{local}@acme.example", "Member", "Sales"))  # fmt: skip
    page.goto(f"{live.url}/login")
    page.get_by_label("Email").fill(org.owner)
    page.get_by_label("Password").fill(GOOD_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(rf"/orgs/{org.id}/members"))
    page.get_by_label("Select Ben Beta").check()
    page.get_by_role("button", name="Send activation emails").click()
    expect(page.get_by_text("Sending in the background")).to_be_visible()
    wait_for(lambda: _jobs_done(live, org.id), "the send jobs did not end")
    assert _recipients(outbox) == ["ben.beta@acme.example"]

    # All matching, narrowed by a search: Ann only (Ben was emailed already; Cat does not match).
    page.get_by_label("Search").fill("alpha")
    page.get_by_role("button", name="Filter").click()
    page.get_by_label("All matching").check()
    page.get_by_role("button", name="Send activation emails").click()
    expect(page.get_by_text("Sending in the background")).to_be_visible()
    wait_for(lambda: _jobs_done(live, org.id), "the send jobs did not end")
    assert _recipients(outbox) == ["ann.alpha@acme.example", "ben.beta@acme.example"]
