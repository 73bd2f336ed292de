"""The portal's fixtures: a live uvicorn server on a free port (SQLite in a tmp dir) with a worker of
its own (as `importer serve` runs one), an organization whose Owner holds an activation link,
signed-in HTTP clients, and Playwright on Debian's chromium."""

from __future__ import annotations

import datetime as dt
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from importer import jobs
from importer.activation import activating
from importer.activation.tokens import hash_token, new_token
from importer.settings import Settings
from importer.store.engine import open_database
from importer.store.models import ActivationToken, Member, Status, utcnow
from importer.store.orgs import create_organization, create_teams
from importer.web import WebConfig, create_app
from tests.conftest import debian_chromium

MAX_UPLOAD = 200_000
GOOD_PASSWORD = "Tangerine-Harbour-42"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Live:
    """The running portal: its address, its database, and the folder its worker mails to."""

    url: str
    engine: Engine
    tmp: Path

    @property
    def outbox(self) -> Path:
        """Where the worker's activation emails land (.eml files)."""
        return self.tmp / "outbox"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# Module scope: the server's and the worker's threads end with the module, so that later tests in
# this process may fork (importer.forked forks only a single-threaded process).
@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The portal on a free port, and its worker, in threads of this process."""
    tmp = tmp_path_factory.mktemp("portal")
    engine = open_database(f"sqlite:///{tmp / 'portal.db'}")
    config = WebConfig(
        secret_key="test-secret-key-" + "x" * 32,
        base_url="http://127.0.0.1",
        sign_in_per_address="1000/minute",  # every test signs in from 127.0.0.1
        activate_per_address="1000/minute",
        settings=Settings(max_file_bytes=MAX_UPLOAD),
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    queue = jobs.Queue(None, database_url=str(engine.url))
    mail = jobs.MailSettings(sender="Acme <no-reply@acme.example>", base_url=url, outbox=tmp / "outbox")
    worker = jobs.start_embedded_worker(
        engine, queue=queue, settings=jobs.JobSettings(mail=mail, poll_seconds=0.2), threads=2
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(engine, config, queue=queue), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "the portal did not start"
        time.sleep(0.02)
    yield Live(url, engine, tmp)
    server.should_exit = True
    thread.join(10)
    worker.stop(wait=True)
    engine.dispose()


def activate_with_library(engine: Engine, org: Org) -> None:
    """The Owner's account made from the link without the portal (for in-process tests)."""
    activating.activate(engine, org.owner_token, GOOD_PASSWORD)


def issue_link(engine: Engine, member_id: int, *, days: int = 30) -> str:
    """A fresh activation token for a pending member (as a send would make), returned in clear."""
    token = new_token()
    with Session(engine) as session, session.begin():
        member = session.get_one(Member, member_id)
        member.status = Status.PENDING
        member.activated_at = None
        session.add(
            ActivationToken(
                member_id=member_id,
                token_hash=hash_token(token),
                expires_at=utcnow() + dt.timedelta(days=days),
            )
        )
    return token


@dataclass
class Org:
    """An organization made for one test: its id, its Owner's address and activation token."""

    id: int
    name: str
    owner: str
    owner_id: int
    owner_token: str


_counter = iter(range(1, 10_000))


def make_org(engine: Engine, *, teams: tuple[str, ...] = ("Sales", "Support")) -> Org:
    """A new organization whose Owner is pending with a link (as `org create` leaves it)."""
    n = next(_counter)
    name = f"Org {n} {time.monotonic_ns()}"
    owner = f"owner{n}.{time.monotonic_ns()}@acme.example"
    org_id = create_organization(engine, name, owner_email=owner, owner_name=f"Olive Owner {n}")
    if teams:
        create_teams(engine, name, list(teams))
    with Session(engine) as session:
        owner_id = session.scalars(select(Member.id).where(Member.organization_id == org_id)).one()
    return Org(org_id, name, owner, owner_id, issue_link(engine, owner_id))


def csrf_of(html: str) -> str:
    """The CSRF token of a page's forms."""
    found = _CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def activate_and_sign_in(live: Live, org: Org, *, password: str = GOOD_PASSWORD) -> httpx.Client:
    """The Owner sets a password through /activate and signs in; a client holding the session."""
    client = httpx.Client(base_url=live.url, follow_redirects=False, timeout=30)
    page = client.get("/activate", params={"token": org.owner_token})
    assert page.status_code == 200, page.text
    done = client.post(
        "/activate",
        data={
            "csrf_token": csrf_of(page.text),
            "token": org.owner_token,
            "new_password": password,
            "confirm_password": password,
        },
    )
    assert done.status_code == 303, done.text
    return sign_in(client, org.owner, password)


def sign_in(client: httpx.Client, email: str, password: str) -> httpx.Client:
    """Sign the client in (asserting it worked)."""
    login = client.get("/login")
    answer = client.post(
        "/login", data={"csrf_token": csrf_of(login.text), "email": email, "password": password}
    )
    assert answer.status_code == 303, answer.text
    return client


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, driven by Playwright (never a downloaded browser)."""
    chromium = debian_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=str(chromium),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-sync"],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and its page."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()
