"""The API's jobs: an upload is polled to its report and its files are served; sends run as jobs;
every refusal (no token, a Member, another organization, a bad type, no file, too big) answers
with its status and a JSON error."""

from __future__ import annotations

import io
import json
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest
import uvicorn
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from importer.accounts.api_tokens import create_token
from importer.jobs import JobSettings, MailSettings, Queue, start_embedded_worker
from importer.store.engine import open_database
from importer.store.models import Job, Member, StoredFile
from importer.values import Role
from importer.web import WebConfig, create_app
from importer.web.app import UPLOAD_OVERHEAD
from tests.conftest import SUMMARY_KEYS
from tests.web.conftest import MAX_UPLOAD, Live, Org, activate_with_library, make_org

DEADLINE = 60.0
SHEET = (
    b"Name,Email,Role,Team\n"
    b"Ada Lovelace,ada@example.com,Member,Sales\n"
    b"Bob Bad,bob@@example,Member,Sales\n"
    b"Cy Team,cy@example.com,Member,Nowhere\n"
    b"Di Admin,di@example.com,Admin,Support\n"
)
FILES = {
    "rejected.xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "rejected.csv": "text/csv; charset=utf-8",
    "errors.csv": "text/csv; charset=utf-8",
    "summary.json": "application/json",
    "report.html": "text/html; charset=utf-8",
}


@pytest.fixture(scope="module")
def outbox(live: Live) -> Path:
    return live.tmp / "outbox"


@pytest.fixture(scope="module", autouse=True)
def worker(live: Live, outbox: Path) -> Iterator[None]:
    """A worker on the portal's database (the portal has no queue here: the worker polls)."""
    url = live.engine.url.render_as_string(hide_password=False)
    mail = MailSettings(sender="Acme <no-reply@acme.example>", base_url=live.url, outbox=outbox)
    handle = start_embedded_worker(
        live.engine, queue=Queue(None, database_url=url), settings=JobSettings(poll_seconds=0.1, mail=mail)
    )
    yield
    handle.stop()


def api_for(live: Live, org: Org) -> httpx.Client:
    activate_with_library(live.engine, org)
    token = create_token(live.engine, org.name, email=org.owner).token
    return httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def upload(api: httpx.Client, org_id: int, content: bytes = SHEET, **fields: str) -> httpx.Response:
    return api.post(
        f"/api/v1/orgs/{org_id}/imports",
        files={"file": ("members.csv", content, "text/csv")},
        data={"type": "portal", **fields},
    )


def until_over(api: httpx.Client, url: str) -> dict[str, Any]:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        answer = api.get(url)
        assert answer.status_code == 200, answer.text
        state: dict[str, Any] = answer.json()
        if state["status"] in ("done", "failed"):
            return state
        time.sleep(0.05)
    pytest.fail(f"{url} did not end within {DEADLINE} s")


def test_an_upload_is_polled_to_its_report_and_every_file_is_served(live: Live) -> None:
    org, other = make_org(live.engine), make_org(live.engine)
    api, theirs = api_for(live, org), api_for(live, other)
    accepted = upload(api, org.id)
    assert accepted.status_code == 202, accepted.text
    batch_id = accepted.json()["batch_id"]
    assert accepted.json()["status_url"] == f"/api/v1/orgs/{org.id}/imports/{batch_id}"
    state = until_over(api, accepted.json()["status_url"])
    assert state["status"] == "done", state
    summary = state["summary"]
    assert set(summary) == SUMMARY_KEYS
    assert (summary["rows"], summary["created"], summary["rejected"]) == (4, 2, 2)
    assert (state["rows_done"], state["rows_total"]) == (4, 4)
    assert set(state["files"]) == set(FILES)
    for name, kind in FILES.items():
        got = api.get(state["files"][name])
        assert got.status_code == 200, (name, got.text)
        assert got.headers["content-type"] == kind
        assert f'filename="{name}"' in got.headers["content-disposition"]
        # Another organization's token, whatever it types: 404, for the file and the progress.
        assert theirs.get(state["files"][name]).status_code == 404
        assert theirs.get(f"/api/v1/orgs/{other.id}/imports/{batch_id}/files/{name}").status_code == 404
    assert json.loads(api.get(state["files"]["summary.json"]).content) == summary
    rejected = openpyxl.load_workbook(io.BytesIO(api.get(state["files"]["rejected.xlsx"]).content))
    names = [row[0] for row in rejected.active.iter_rows(min_row=2, values_only=True) if row[0]]
    assert sorted(names) == ["Bob Bad", "Cy Team"]
    assert theirs.get(f"/api/v1/orgs/{other.id}/imports/{batch_id}").status_code == 404
    assert theirs.get(f"/api/v1/orgs/{org.id}/imports/{batch_id}").status_code == 404
    # The PINs are not a report file, and an unknown name is not one either.
    for name in ("pins.csv", "upload", "nope.csv"):
        missing = api.get(f"{accepted.json()['status_url']}/files/{name}")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    # The members are there, and the upload is gone now that its job is over.
    listed = api.get(f"/api/v1/orgs/{org.id}/members", params={"batch": batch_id}).json()
    assert sorted(m["email"] for m in listed["members"]) == ["ada@example.com", "di@example.com"]
    with Session(live.engine) as session:
        job_id = session.scalar(select(Job.id).where(Job.batch_id == batch_id))
        left = session.scalar(select(func.count()).select_from(StoredFile).where(StoredFile.job_id == job_id))
    assert left == 0


def test_a_dry_run_creates_nobody_and_says_so(live: Live) -> None:
    org = make_org(live.engine)
    api = api_for(live, org)
    accepted = upload(api, org.id, dry_run="true", all_or_nothing="true")
    assert accepted.status_code == 202, accepted.text
    state = until_over(api, accepted.json()["status_url"])
    assert state["status"] == "done" and state["summary"]["dry_run"] is True
    assert state["summary"]["created"] == 0
    members = api.get(f"/api/v1/orgs/{org.id}/members").json()["members"]
    assert [m["email"] for m in members] == [org.owner]


def test_a_file_level_error_fails_with_its_message(live: Live) -> None:
    org = make_org(live.engine)
    api = api_for(live, org)
    accepted = api.post(
        f"/api/v1/orgs/{org.id}/imports",
        files={"file": ("members.csv", b"Nombre,Correo\nAda,ada@example.com\n", "text/csv")},
        data={"type": "portal"},
    )
    assert accepted.status_code == 202
    state = until_over(api, accepted.json()["status_url"])
    assert state["status"] == "failed" and state["summary"] is None
    assert state["error"] and "Name" in state["error"]
    # An empty file is stored as one empty part, and fails as the CLI says it: empty.
    empty = upload(api, org.id, b"")
    assert empty.status_code == 202, empty.text
    state = until_over(api, empty.json()["status_url"])
    assert state["status"] == "failed" and "empty" in state["error"], state


def test_upload_refusals(live: Live) -> None:
    org, other = make_org(live.engine), make_org(live.engine)
    api = api_for(live, org)

    def refused(answer: httpx.Response, status: int, code: str) -> str:
        assert answer.status_code == status, answer.text
        assert answer.json()["error"]["code"] == code
        return str(answer.json()["error"]["message"])

    refused(upload(api, org.id, type="staff"), 422, "invalid")
    refused(api.post(f"/api/v1/orgs/{org.id}/imports", data={"type": "portal"}), 422, "invalid")
    message = refused(upload(api, org.id, b"x" * (MAX_UPLOAD + 1)), 413, "limit_exceeded")
    assert "max_file_bytes" in message
    # Past the limit with its framing too: refused from the declared length, nothing read.
    assert "max_file_bytes" in refused(upload(api, org.id, b"x" * (MAX_UPLOAD * 2)), 413, "limit_exceeded")
    # A chunked upload that never declares its length: refused once it crosses the limit, unread
    # to its end.
    host, port = live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(
            f"POST /api/v1/orgs/{org.id}/imports HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            f"Authorization: {api.headers['authorization']}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n\r\n".encode()
        )
        part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n\r\n'
        raw.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        chunk = b"y" * 65_536
        for sent in range(1, MAX_UPLOAD // len(chunk) + 3):  # past the limit and its framing allowance
            raw.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            # Past the limit, wait for the answer before sending more: writing on after the server
            # has answered and closed would reset the connection and lose the answer unread.
            if len(part) + sent * len(chunk) > MAX_UPLOAD + UPLOAD_OVERHEAD and _answered(raw, within=10):
                break
        answer = raw.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    refused(upload(api, other.id), 404, "not_found")
    refused(upload(api, 2**40), 404, "not_found")
    refused(upload(httpx.Client(base_url=live.url), org.id), 401, "unauthorized")
    # The token's owner made a Member of the organization: 403, and nothing was queued.
    with Session(live.engine) as session, session.begin():
        session.execute(update(Member).where(Member.id == org.owner_id).values(role=Role.MEMBER))
    refused(upload(api, org.id), 403, "forbidden")
    refused(api.post(f"/api/v1/orgs/{org.id}/activations", json={}), 403, "forbidden")
    with Session(live.engine) as session:
        assert session.scalar(select(func.count()).select_from(Job).where(Job.organization_id == org.id)) == 0


def test_activations_run_as_a_job(live: Live, outbox: Path) -> None:
    org, other = make_org(live.engine), make_org(live.engine)
    api, theirs = api_for(live, org), api_for(live, other)
    imported = until_over(api, upload(api, org.id).json()["status_url"])
    batch_id = imported["batch_id"]
    before = set(outbox.glob("*.eml")) if outbox.exists() else set()
    # Another organization's batch or job: 404, and nothing is sent.
    assert theirs.post(f"/api/v1/orgs/{other.id}/activations", json={"batch_id": batch_id}).status_code == 404
    accepted = api.post(f"/api/v1/orgs/{org.id}/activations", json={"batch_id": batch_id})
    assert accepted.status_code == 202, accepted.text
    job = accepted.json()
    assert job["status_url"] == f"/api/v1/orgs/{org.id}/jobs/{job['job_id']}"
    assert theirs.get(f"/api/v1/orgs/{other.id}/jobs/{job['job_id']}").status_code == 404
    state = until_over(api, job["status_url"])
    assert state["status"] == "done", state
    assert state["kind"] == "activations" and state["summary"]["sent"] == 2
    sent = set(outbox.glob("*.eml")) - before
    assert len(sent) == 2
    assert api.get(f"/api/v1/orgs/{org.id}/jobs/{2**40}").status_code == 404
    refused = api.post(f"/api/v1/orgs/{org.id}/activations", json={"batch_id": "20990101-000000-abcdef"})
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"


@pytest.fixture
def woken(tmp_path: Path) -> Iterator[Live]:
    """A portal given the queue, and a worker that only a wake-up can start (it polls hourly)."""
    url = f"sqlite:///{tmp_path / 'woken.db'}"
    engine = open_database(url)
    queue = Queue(None, database_url=url)
    handle = start_embedded_worker(engine, queue=queue, settings=JobSettings(poll_seconds=3600))
    config = WebConfig(secret_key="woken-key-" + "x" * 32, base_url="http://127.0.0.1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(engine, config, queue=queue)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < end, "the portal did not start"
        time.sleep(0.02)
    try:
        yield Live(f"http://127.0.0.1:{port}", engine, tmp_path)
    finally:
        server.should_exit = True
        thread.join(10)
        handle.stop()
        engine.dispose()


def test_the_portal_wakes_a_worker_for_its_upload(woken: Live) -> None:
    org = make_org(woken.engine)
    api = api_for(woken, org)
    accepted = upload(api, org.id)
    assert accepted.status_code == 202
    # The worker's next look at the job table is an hour away: only the portal's wake-up runs it.
    state = until_over(api, accepted.json()["status_url"])
    assert state["status"] == "done" and state["summary"]["created"] == 2


def _answered(connection: socket.socket, *, within: float) -> bool:
    """Whether the server has written to the connection, waiting at most `within` seconds."""
    with selectors.DefaultSelector() as selector:
        selector.register(connection, selectors.EVENT_READ)
        return bool(selector.select(timeout=within))
