"""Attacks that fail: CSRF, other organizations' ids, a Member on admin pages, XSS, brute force,
oversized uploads; the headers and cookie flags on every page; API tokens."""

from __future__ import annotations

import socket

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from importer.accounts.api_tokens import create_token
from importer.accounts.audit import Acting
from importer.accounts.members import NewMember, add_member
from importer.store.models import Member
from tests.web.conftest import (
    GOOD_PASSWORD,
    MAX_UPLOAD,
    Live,
    activate_and_sign_in,
    csrf_of,
    issue_link,
    make_org,
)


def _count(live: Live, org_id: int) -> int:
    with Session(live.engine) as session:
        return session.scalar(select(func.count()).where(Member.organization_id == org_id)) or 0


def _add(live: Live, org_name: str, owner: str, **fields: object) -> int:
    fields.setdefault("role", "Member")
    change = add_member(live.engine, org_name, acting=Acting(owner), member=NewMember(**fields))  # type: ignore[arg-type]
    assert change.member is not None, change.errors
    return change.member.id


def test_post_without_csrf_token_is_refused_and_changes_nothing(live: Live) -> None:
    org = make_org(live.engine)
    client = activate_and_sign_in(live, org)
    before = _count(live, org.id)
    refused = client.post(f"/orgs/{org.id}/members/new", data={"name": "Eve", "email": "eve@acme.example"})
    forged = client.post(
        f"/orgs/{org.id}/members/new",
        data={"name": "Eve", "email": "eve@acme.example", "csrf_token": "forged"},
    )
    assert (refused.status_code, forged.status_code) == (403, 403)
    assert _count(live, org.id) == before
    form = client.get(f"/orgs/{org.id}/members/new")
    added = client.post(
        f"/orgs/{org.id}/members/new",
        data={"name": "Eve", "email": "eve@acme.example", "role": "Member", "csrf_token": csrf_of(form.text)},
    )
    assert added.status_code == 303
    assert _count(live, org.id) == before + 1


def test_another_organizations_ids_answer_404(live: Live) -> None:
    mine, theirs = make_org(live.engine), make_org(live.engine)
    client = activate_and_sign_in(live, mine)
    paths = [
        f"/orgs/{theirs.id}/members",
        f"/orgs/{theirs.id}/members/new",
        f"/orgs/{theirs.id}/members/{theirs.owner_id}/edit",
        f"/orgs/{mine.id}/members/{theirs.owner_id}/edit",
        "/orgs/999999/members",
    ]
    assert [client.get(p).status_code for p in paths] == [404] * len(paths)


def test_member_gets_403_on_admin_pages(live: Live) -> None:
    org = make_org(live.engine)
    owner = activate_and_sign_in(live, org)
    member_id = _add(
        live, org.name, org.owner, name="Mia Member", email="mia.member@acme.example", role="Member"
    )
    token = issue_link(live.engine, member_id)
    from tests.web.conftest import Org

    member = activate_and_sign_in(live, Org(org.id, org.name, "mia.member@acme.example", member_id, token))
    assert member.get("/").headers["location"] == "/me"
    for path in (
        f"/orgs/{org.id}/members",
        f"/orgs/{org.id}/members/new",
        f"/orgs/{org.id}/members/{member_id}/edit",
    ):
        assert member.get(path).status_code == 403
    assert owner.get(f"/orgs/{org.id}/members").status_code == 200


def test_a_members_name_is_escaped(live: Live) -> None:
    org = make_org(live.engine, teams=("<b>Team</b>",))
    client = activate_and_sign_in(live, org)
    _add(live, org.name, org.owner, name='Zed <script>alert("x")</script>', email="zed@acme.example")
    page = client.get(f"/orgs/{org.id}/members")
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(" in page.text
    assert "<b>Team</b>" not in page.text and "&lt;b&gt;Team&lt;/b&gt;" in page.text


def test_thirty_wrong_passwords_get_429_with_retry_after(live: Live) -> None:
    org = make_org(live.engine)
    activate_and_sign_in(live, org).close()
    client = httpx.Client(base_url=live.url, timeout=30)
    statuses = []
    for _ in range(30):
        token = csrf_of(client.get("/login").text)
        answer = client.post(
            "/login", data={"csrf_token": token, "email": org.owner, "password": "wrong-1234"}
        )
        statuses.append(answer.status_code)
        if answer.status_code == 429:
            retry = answer.headers["retry-after"]
    assert set(statuses[:9]) == {401}  # 10 a minute per account; one went on signing in
    assert statuses[-1] == 429 and int(retry) > 0
    # An unknown address gets the very same answer as a wrong password.
    token = csrf_of(client.get("/login").text)
    unknown = client.post(
        "/login", data={"csrf_token": token, "email": "nobody@acme.example", "password": "x1"}
    )
    assert unknown.status_code == 401 and "The email or password is not right." in unknown.text


def test_headers_and_cookie_flags(live: Live) -> None:
    org = make_org(live.engine)
    client = activate_and_sign_in(live, org)
    cookie = next(c for c in client.cookies.jar if c.name == "importer_session")
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite", "").lower() == "lax"
    for path in ("/login", f"/orgs/{org.id}/members", "/me", "/activate?token=nope", "/orgs/999999/members",
                 "/api/v1/orgs", "/static/portal.css"):  # fmt: skip
        answer = client.get(path)
        csp = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, path
        assert answer.headers["x-content-type-options"] == "nosniff", path
        assert answer.headers["referrer-policy"] == "same-origin", path


def test_session_id_changes_at_sign_in_and_sign_out_ends_it(live: Live) -> None:
    org = make_org(live.engine)
    client = activate_and_sign_in(live, org)
    first = client.cookies["importer_session"]
    token = csrf_of(client.get(f"/orgs/{org.id}/members").text)
    again = client.post("/login", data={"csrf_token": token, "email": org.owner, "password": GOOD_PASSWORD})
    assert again.status_code == 303
    second = client.cookies["importer_session"]
    assert first != second
    members = client.get(f"/orgs/{org.id}/members")
    out = client.post("/logout", data={"csrf_token": csrf_of(members.text)})
    assert out.status_code == 303
    stale = httpx.Client(base_url=live.url, cookies={"importer_session": second})
    assert stale.get(f"/orgs/{org.id}/members").headers["location"] == "/login"


def test_upload_past_the_limit_is_413_while_it_streams(live: Live) -> None:
    org = make_org(live.engine)
    declared = httpx.post(
        f"{live.url}/orgs/{org.id}/import",
        content=b"x" * (MAX_UPLOAD + 70_000),
        headers={"content-type": "text/csv"},
    )
    assert declared.status_code == 413 and "max_file_bytes" in declared.text  # a page: not an /api path
    # A chunked body that never says its length is refused once it crosses the limit, unread to its
    # end (a form's limit here: the upload routes come with the Import page).
    host, port = live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(
            b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
        )
        chunk = b"y" * 65_536
        for _ in range(6):  # 384 KiB sent (over the 256 KiB of a form), the rest never
            raw.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        answer = raw.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]


def test_api_tokens_and_json_errors(live: Live) -> None:
    mine, theirs = make_org(live.engine), make_org(live.engine)
    activate_and_sign_in(live, mine).close()
    token = create_token(live.engine, mine.name, email=mine.owner, name="script").token
    api = httpx.Client(base_url=f"{live.url}/api/v1", headers={"Authorization": f"Bearer {token}"})
    orgs = api.get("/orgs")
    assert orgs.status_code == 200 and orgs.json() == [{"id": mine.id, "name": mine.name, "role": "Owner"}]
    added = api.post(
        f"/orgs/{mine.id}/members", json={"name": "Ana", "email": "ana@acme.example", "role": "Member"}
    )
    assert added.status_code == 201, added.text
    bad = api.post(f"/orgs/{mine.id}/members", json={"name": "Bo", "email": "bo@@acme", "role": "Member"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_member"
    listed = api.get(f"/orgs/{mine.id}/members", params={"search": "ana"}).json()
    assert [m["email"] for m in listed["members"]] == ["ana@acme.example"]
    assert api.get(f"/orgs/{theirs.id}/members").status_code == 404
    nobody = httpx.get(f"{live.url}/api/v1/orgs", headers={"Authorization": "Bearer imp_guessed"})
    assert nobody.status_code == 401 and nobody.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("kind", ["unknown", "used"])
def test_dead_links_get_their_message_and_a_new_link_button(live: Live, kind: str) -> None:
    org = make_org(live.engine)
    client = httpx.Client(base_url=live.url)
    token = "guessed-token-that-does-not-exist"
    if kind == "used":
        activate_and_sign_in(live, org).close()
        token = org.owner_token
    page = client.get("/activate", params={"token": token})
    expected = "not valid" if kind == "unknown" else "already"
    assert page.status_code == 410 and expected in page.text
    assert "Send me a new link" in page.text
    again = client.post("/activate/new-link", data={"csrf_token": csrf_of(page.text), "token": token})
    assert again.status_code == 200 and "If this link belongs" in again.text
