"""`Send me a new link` on /activate: a pending member whose link was used up, replaced or expired
really gets a new one (a one-member activations job, then an email in the outbox), and the answer
is the same page whatever the link was; a password change on /me refuses a common password."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from importer import jobs
from importer.accounts.audit import Acting, list_events
from importer.accounts.members import NewMember, add_member
from importer.activation.activating import RENEWAL_COOLDOWN, Renewal, renewal_for
from importer.activation.tokens import hash_token, new_token
from importer.store.models import ActivationToken, Job, JobKind, utcnow
from importer.web.pages_activate import queue_new_link
from tests.conftest import wait_for
from tests.web.conftest import GOOD_PASSWORD, Live, Org, activate_and_sign_in, csrf_of, make_org


def _pending(live: Live, org: Org, address: str) -> int:
    change = add_member(
        live.engine,
        org.name,
        acting=Acting(org.owner),
        member=NewMember(name="Pat", email=address, role="Member"),
    )
    assert change.member is not None, change.errors
    return change.member.id


def _old_link(live: Live, member_id: int, *, expired: bool = False, revoked: bool = False) -> str:
    """A link sent 40 days ago (past the cooldown): expired, or replaced, as asked."""
    token = new_token()
    sent = utcnow() - dt.timedelta(days=40)
    with Session(live.engine) as session, session.begin():
        session.add(
            ActivationToken(
                member_id=member_id,
                token_hash=hash_token(token),
                created_at=sent,
                expires_at=sent + dt.timedelta(days=30 if expired else 60),
                revoked_at=sent + dt.timedelta(days=1) if revoked else None,
            )
        )
    return token


def _activation_jobs(live: Live, org: Org) -> list[dict[str, Any]]:
    with Session(live.engine) as session:
        rows = session.scalars(
            select(Job).where(Job.organization_id == org.id, Job.kind == JobKind.ACTIVATIONS).order_by(Job.id)
        ).all()
        return [json.loads(row.options or "{}") | {"actor": row.actor, "id": row.id} for row in rows]


def _ask_for_new_link(live: Live, token: str) -> httpx.Response:
    client = httpx.Client(base_url=live.url, timeout=30)
    page = client.get("/activate", params={"token": token})
    assert page.status_code == 410 and "Send me a new link" in page.text
    return client.post("/activate/new-link", data={"csrf_token": csrf_of(page.text), "token": token})


def _body(answer: httpx.Response) -> str:
    main = answer.text.split("<main>", 1)[1].split("</main>", 1)[0]
    return re.sub(r'value="[^"]*"', "", main)  # the CSRF token differs from client to client


def test_renewal_is_for_a_pending_members_dead_link_only(live: Live) -> None:
    org = make_org(live.engine)
    activate_and_sign_in(live, org).close()
    pat = _pending(live, org, "pat.renew@acme.example")
    expired, replaced = _old_link(live, pat, expired=True), _old_link(live, pat, revoked=True)
    working = _old_link(live, pat)
    expected = Renewal(organization_id=org.id, member_id=pat, email="pat.renew@acme.example", admin=org.owner)
    assert renewal_for(live.engine, expired) == renewal_for(live.engine, replaced) == expected
    assert renewal_for(live.engine, working) is None  # still usable: nothing to replace
    assert renewal_for(live.engine, "imp_" + new_token()) is None  # unknown
    assert renewal_for(live.engine, org.owner_token) is None  # used: the Owner is active
    # A link issued within the cooldown: one email is already on its way.
    with Session(live.engine) as session, session.begin():
        session.execute(
            update(ActivationToken)
            .where(ActivationToken.token_hash == hash_token(working))
            .values(created_at=utcnow())
        )
    assert renewal_for(live.engine, expired) is None
    assert renewal_for(live.engine, expired, now=utcnow() + RENEWAL_COOLDOWN) == expected


def test_send_me_a_new_link_queues_one_members_email_and_answers_the_same(live: Live) -> None:
    org = make_org(live.engine)
    activate_and_sign_in(live, org).close()
    pat = _pending(live, org, "pat@acme.example")
    other = _pending(live, org, "quinn@acme.example")
    expired = _old_link(live, pat, expired=True)
    _old_link(live, other, expired=True)  # Quinn asks for nothing and gets nothing

    unknown = _ask_for_new_link(live, "not-a-token-" + new_token())
    asked = _ask_for_new_link(live, expired)
    assert unknown.status_code == asked.status_code == 200
    assert _body(unknown) == _body(asked) and "a new link is on its way" in asked.text

    queued = wait_for(lambda: _activation_jobs(live, org))
    assert [(j["member_ids"], j["resend"], j["actor"]) for j in queued] == [([pat], True, "pat@acme.example")]

    # The portal's own worker sends it (the live fixture runs one, mailing to live.outbox).
    view = wait_for(
        lambda: (v := jobs.job_view(live.engine, queued[0]["id"])).status is jobs.JobStatus.DONE and v
    )
    assert view.summary is not None and view.summary["sent"] == 1
    (message,) = [
        m
        for m in (
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in live.outbox.glob("*.eml")
        )
        if m["To"].addresses[0].addr_spec in ("pat@acme.example", "quinn@acme.example")
    ]
    assert message["To"].addresses[0].addr_spec == "pat@acme.example"
    assert message["Subject"] == "Your account has been created!"
    events = list_events(live.engine, org.name)
    mailed = [(e.actor, e.subject) for e in events if e.action.value.startswith("invitation.")]
    # Sent in Pat's own name (a signed-out request acts for no admin), to Pat only.
    assert mailed == [("pat@acme.example", "pat@acme.example")]
    text = message.get_body(("plain",)).get_content()
    fresh = re.search(r"/activate\?token=([A-Za-z0-9_\-]+)", text)
    assert fresh is not None and fresh.group(1) != expired
    # The new link works: the page asks for the password (the old one still cannot be used).
    client = httpx.Client(base_url=live.url, timeout=30)
    assert client.get("/activate", params={"token": fresh.group(1)}).status_code == 200
    assert client.get("/activate", params={"token": expired}).status_code == 410
    # Asking again at once queues nothing more (the cooldown), with the same answer.
    again = _ask_for_new_link(live, expired)
    assert _body(again) == _body(unknown)
    assert queue_new_link(live.engine, expired) is None
    assert len(_activation_jobs(live, org)) == 1


def test_a_password_change_on_me_refuses_a_common_password(live: Live) -> None:
    org = make_org(live.engine)
    client = activate_and_sign_in(live, org)
    page = client.get("/me")
    refused = client.post(
        "/me/password",
        data={"csrf_token": csrf_of(page.text), "current_password": GOOD_PASSWORD,
              "new_password": "password123", "confirm_password": "password123"},
    )  # fmt: skip
    assert refused.status_code == 422 and "one of the most common passwords" in refused.text
