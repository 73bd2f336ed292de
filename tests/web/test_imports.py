"""The Import page, the batch page, the Batches page and Undo, over HTTP against the live portal
(its own worker runs the uploads); and the attacks on them that must fail."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import time
from pathlib import Path

import httpx
import openpyxl
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from importer.accounts.audit import Acting
from importer.accounts.members import NewMember, add_member
from importer.pipeline import new_batch_id
from importer.store.models import AuditAction, AuditEvent, Job, JobKind, JobStatus, Member, utcnow
from importer.values import Status
from tests.web.conftest import (
    MAX_UPLOAD,
    Live,
    Org,
    activate_and_sign_in,
    csrf_of,
    issue_link,
    make_org,
)

DEADLINE = 90.0
DOWNLOADS = ("rejected.xlsx", "rejected.csv", "errors.csv", "summary.json")
GOOD_ROWS = ["Ada Lovelace,ada.{n}@acme.example,Member,Sales", "Grace Hopper,grace.{n}@acme.example,Admin,"]
_BATCH = re.compile(r"/orgs/(\d+)/batches/([\w-]+)$")


def sheet(*rows: str) -> bytes:
    """A Portal Access CSV with these rows."""
    return ("Name,Email,Role,Team\n" + "".join(row + "\n" for row in rows)).encode()


def upload(
    client: httpx.Client,
    org_id: int,
    name: str,
    content: bytes,
    *,
    user_type: str = "portal",
    token: str | None = None,
    **flags: bool,
) -> httpx.Response:
    """POST the Import form (with the page's CSRF token unless one is given)."""
    if token is None:
        token = csrf_of(client.get(f"/orgs/{org_id}/import").text)
    data = {"csrf_token": token, "type": user_type} | {k: "on" for k, v in flags.items() if v}
    files = {"spreadsheet": (name, content, "text/csv")}
    return client.post(f"/orgs/{org_id}/import", data=data, files=files)


def finished(client: httpx.Client, path: str) -> str:
    """The batch page once its job ended (it stops refreshing itself); polled with a deadline."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        page = client.get(path)
        assert page.status_code == 200, page.text
        if 'http-equiv="refresh"' not in page.text:
            return page.text
        time.sleep(0.1)
    pytest.fail(f"{path} still refreshing after {DEADLINE} s")


def imported(client: httpx.Client, org_id: int, name: str, content: bytes, **options: object) -> str:
    """Upload, follow to the batch page, wait for the job: the batch page's path."""
    answer = upload(client, org_id, name, content, **options)  # type: ignore[arg-type]
    assert answer.status_code == 303, answer.text
    path = answer.headers["location"]
    assert _BATCH.match(path), path
    finished(client, path)
    return path


def members(live: Live, org_id: int, status: Status | None = None) -> int:
    with Session(live.engine) as session:
        query = select(func.count()).select_from(Member).where(Member.organization_id == org_id)
        if status is not None:
            query = query.where(Member.status == status)
        return session.scalar(query) or 0


def jobs_of(live: Live, org_id: int) -> int:
    with Session(live.engine) as session:
        return session.scalar(select(func.count()).select_from(Job).where(Job.organization_id == org_id)) or 0


def second_admin(live: Live, org: Org, role: str = "Admin") -> httpx.Client:
    """Another account of the organization (Admin or Member), signed in."""
    n = time.monotonic_ns()
    address = f"{role.lower()}.{n}@acme.example"
    change = add_member(
        live.engine, org.name, acting=Acting(org.owner), member=NewMember(f"{role} {n}", address, role)
    )
    assert change.member is not None, change.errors
    token = issue_link(live.engine, change.member.id)
    return activate_and_sign_in(live, Org(org.id, org.name, address, change.member.id, token))


def test_import_page_offers_the_types_samples_and_upload(live: Live) -> None:
    org = make_org(live.engine, teams=("Sales", "Support", "Night Shift"))
    client = activate_and_sign_in(live, org)
    page = client.get(f"/orgs/{org.id}/import")
    assert page.status_code == 200
    for label in ("Portal Access", "No Portal Access", "Spreadsheet", "Dry run", "All or nothing", "Upload",
                  "Download sample (Excel)", "Download sample (CSV)"):  # fmt: skip
        assert label in page.text, label
    excel = client.get(f"/orgs/{org.id}/import/sample.xlsx", params={"type": "portal"})
    assert excel.status_code == 200 and "portal-users-sample.xlsx" in excel.headers["content-disposition"]
    book = openpyxl.load_workbook(io.BytesIO(excel.content))
    listed = {cell.value for sheet_ in book.worksheets for row in sheet_.iter_rows() for cell in row}
    assert {"Sales", "Support", "Night Shift"} <= listed  # the Team dropdown's list
    plain = client.get(f"/orgs/{org.id}/import/sample.csv", params={"type": "no-portal"})
    assert plain.status_code == 200
    assert plain.content.decode().splitlines()[0] == "Name (required),Team,PIN"


def test_upload_runs_in_the_background_and_the_batch_page_shows_the_report(live: Live) -> None:
    org = make_org(live.engine)
    client = activate_and_sign_in(live, org)
    rows = [r.format(n=1) for r in GOOD_ROWS] + ["Bad Address,bad@@acme,Member,Sales"]
    answer = upload(client, org.id, "staff.csv", sheet(*rows))
    assert answer.status_code == 303
    path = answer.headers["location"]
    first = client.get(path).text
    assert "staff.csv" in first
    page = finished(client, path)
    assert "Import report" in page and "1 of 3 rows needs fixing" in page
    assert "bad@@acme" in page  # the rejected row, with its message, in the report itself
    assert "<script>" not in page.split("</head>", 1)[1]  # the report's own script is not inlined
    for name in DOWNLOADS:
        assert f">{name}</a>" in page, name
    summary = client.get(f"{path}/files/summary.json").json()
    assert (summary["rows"], summary["created"], summary["rejected"]) == (3, 2, 1)
    rejected = client.get(f"{path}/files/rejected.csv")
    assert rejected.status_code == 200 and "attachment" in rejected.headers["content-disposition"]
    assert "bad@@acme" in rejected.content.decode("utf-8-sig")
    xlsx = client.get(f"{path}/files/rejected.xlsx")
    assert openpyxl.load_workbook(io.BytesIO(xlsx.content)).active is not None
    assert members(live, org.id) == 1 + 2  # the Owner and the two good rows
    listing = client.get(f"/orgs/{org.id}/batches").text
    batch_id = path.rsplit("/", 1)[1]
    assert f'href="{path}"' in listing and "staff.csv" in listing and org.owner in listing
    assert "completed" in listing and f"/batches/{batch_id}/undo" in listing


def test_dry_run_and_all_or_nothing_create_nobody(live: Live) -> None:
    org = make_org(live.engine)
    client = activate_and_sign_in(live, org)
    dry = finished(client, imported(client, org.id, "dry.csv", sheet(*[r.format(n=2) for r in GOOD_ROWS]),
                                    dry_run=True))  # fmt: skip
    assert "Dry run:" in dry
    rows = [r.format(n=3) for r in GOOD_ROWS] + ["Bad,bad@@acme,Member,"]
    refused = finished(client, imported(client, org.id, "all.csv", sheet(*rows), all_or_nothing=True))
    assert "All-or-nothing import refused" in refused
    assert members(live, org.id) == 1


@pytest.mark.parametrize(
    ("name", "content", "status", "said"),
    [
        (None, b"", 422, "Choose a spreadsheet"),
        ("empty.csv", b"", 422, "empty.csv is empty"),
        ("notes.pdf", b"%PDF-1.4\n", 422, "notes.pdf: unsupported file type"),
        ("big.csv", b"x" * (MAX_UPLOAD + 10_000), 413, "max_file_bytes"),  # inside the body's allowance
        ("huge.csv", b"x" * (MAX_UPLOAD + 100_000), 413, "max_file_bytes"),  # refused while streaming
    ],
)
def test_upload_errors_are_said_on_the_page(
    live: Live, name: str | None, content: bytes, status: int, said: str
) -> None:
    org = make_org(live.engine)
    client = activate_and_sign_in(live, org)
    token = csrf_of(client.get(f"/orgs/{org.id}/import").text)
    files = {"spreadsheet": (name or "", content, "text/csv")}
    answer = client.post(f"/orgs/{org.id}/import", data={"csrf_token": token, "type": "portal"}, files=files)
    assert answer.status_code == status
    assert said in answer.text and "Traceback" not in answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert jobs_of(live, org.id) == 0


def test_generated_pins_are_offered_once_to_the_uploader_only(live: Live) -> None:
    org = make_org(live.engine)
    owner = activate_and_sign_in(live, org)
    admin = second_admin(live, org)
    content = b"Name,Team,PIN\nKim Kiosk,Sales,\nLee Locker,,\n"
    path = imported(owner, org.id, "kiosk.csv", content, user_type="no-portal")
    page = owner.get(path).text
    assert "Download PINs (shown once)" in page
    assert "Download PINs (shown once)" not in admin.get(path).text
    refused = admin.post(f"{path}/pins", data={"csrf_token": csrf_of(admin.get(path).text)})
    assert refused.status_code == 404
    pins = owner.post(f"{path}/pins", data={"csrf_token": csrf_of(page)})
    assert pins.status_code == 200 and "attachment" in pins.headers["content-disposition"]
    names = {row["name"] for row in csv.DictReader(io.StringIO(pins.content.decode("utf-8-sig")))}
    assert names == {"Kim Kiosk", "Lee Locker"}
    again = owner.post(f"{path}/pins", data={"csrf_token": csrf_of(page)})
    assert again.status_code == 404 and "already downloaded" in again.text
    assert "Download PINs (shown once)" not in owner.get(path).text


def test_undo_asks_first_then_removes_the_pending_members_audited(live: Live) -> None:
    org = make_org(live.engine)
    client = activate_and_sign_in(live, org)
    path = imported(client, org.id, "undo-me.csv", sheet(*[r.format(n=4) for r in GOOD_ROWS]))
    assert members(live, org.id) == 3
    confirm = client.get(f"{path}/undo")
    assert confirm.status_code == 200 and "Confirm undo" in confirm.text
    assert "<strong>2</strong> pending member(s)" in confirm.text
    assert members(live, org.id) == 3  # asking changed nothing
    done = client.post(f"{path}/undo", data={"csrf_token": csrf_of(confirm.text)})
    assert done.status_code == 303 and done.headers["location"].startswith(f"/orgs/{org.id}/batches?")
    end = time.monotonic() + DEADLINE
    while members(live, org.id) != 1:
        assert time.monotonic() < end, "the undo did not run"
        time.sleep(0.1)
    batch_id = path.rsplit("/", 1)[1]
    with Session(live.engine) as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == AuditAction.UNDO, AuditEvent.subject == batch_id)
        ).one()
        assert event.actor == org.owner and "removed 2 pending" in event.detail
    end = time.monotonic() + DEADLINE
    while "undone" not in (listing := client.get(f"/orgs/{org.id}/batches").text):
        assert time.monotonic() < end, "the batch is not shown undone"
        time.sleep(0.1)
    assert f"/batches/{batch_id}/undo" not in listing
    again = client.post(f"{path}/undo", data={"csrf_token": csrf_of(confirm.text)})
    assert again.status_code == 409 and "only a completed import can be undone" in again.text


def test_a_batch_being_undone_offers_no_second_undo(live: Live) -> None:
    org = make_org(live.engine)
    client = activate_and_sign_in(live, org)
    path = imported(client, org.id, "twice.csv", sheet(*[r.format(n=6) for r in GOOD_ROWS]))
    batch_id = path.rsplit("/", 1)[1]
    # An undo another worker holds (its lease runs for an hour): queued or running, not yet done.
    with Session(live.engine) as session, session.begin():
        session.add(
            Job(
                kind=JobKind.UNDO, organization_id=org.id, actor=org.owner, batch_id=batch_id,
                status=JobStatus.RUNNING, worker="elsewhere", lease_until=utcnow() + dt.timedelta(hours=1),
            )
        )  # fmt: skip
    listing = client.get(f"/orgs/{org.id}/batches").text
    assert "being undone" in listing and f"/batches/{batch_id}/undo" not in listing
    asked = client.get(f"{path}/undo")
    assert asked.status_code == 409 and "being undone already" in asked.text
    token = csrf_of(client.get(f"/orgs/{org.id}/batches").text)
    again = client.post(f"{path}/undo", data={"csrf_token": token})
    assert again.status_code == 409 and "being undone already" in again.text
    assert members(live, org.id) == 3  # nothing removed twice, nothing queued twice
    with Session(live.engine) as session:
        undos = session.scalar(
            select(func.count()).where(Job.kind == JobKind.UNDO, Job.organization_id == org.id)
        )
    assert undos == 1


# --- attacks that fail ---


def test_upload_and_undo_without_csrf_token_are_refused_and_change_nothing(live: Live) -> None:
    org = make_org(live.engine)
    client = activate_and_sign_in(live, org)
    rows = sheet(*[r.format(n=5) for r in GOOD_ROWS])
    for token in ("", "forged"):
        refused = upload(client, org.id, "csrf.csv", rows, token=token)
        assert refused.status_code == 403
    assert jobs_of(live, org.id) == 0 and members(live, org.id) == 1
    path = imported(client, org.id, "csrf.csv", rows)
    before = jobs_of(live, org.id)
    assert client.post(f"{path}/undo", data={}).status_code == 403
    assert client.post(f"{path}/undo", data={"csrf_token": "forged"}).status_code == 403
    assert client.post(f"{path}/pins", data={}).status_code == 403
    assert jobs_of(live, org.id) == before and members(live, org.id) == 3


def test_another_organizations_batches_answer_404_in_every_url(live: Live) -> None:
    mine, theirs = make_org(live.engine), make_org(live.engine)
    client = activate_and_sign_in(live, mine)
    other = activate_and_sign_in(live, theirs)
    their_path = imported(other, theirs.id, "theirs.csv", sheet(*[r.format(n=6) for r in GOOD_ROWS]))
    their_batch = their_path.rsplit("/", 1)[1]
    ids = [their_batch, "20260101-000000-abcdef", "x" * 500, "..%2F..%2Fetc", "1 OR 1=1"]
    paths = [f"/orgs/{theirs.id}/import", f"/orgs/{theirs.id}/import/sample.xlsx",
             f"/orgs/{theirs.id}/batches", f"/orgs/{theirs.id}/batches/{their_batch}",
             "/orgs/999999/batches"]  # fmt: skip
    for org_id in (mine.id, theirs.id):
        for batch_id in ids:
            base = f"/orgs/{org_id}/batches/{batch_id}"
            paths += [base, f"{base}/undo", *(f"{base}/files/{name}" for name in (*DOWNLOADS, "report.html"))]
    assert {p: client.get(p).status_code for p in paths} == dict.fromkeys(paths, 404)
    token = csrf_of(client.get(f"/orgs/{mine.id}/batches").text)
    for org_id in (mine.id, theirs.id):
        for action in ("undo", "pins"):
            answer = client.post(f"/orgs/{org_id}/batches/{their_batch}/{action}", data={"csrf_token": token})
            assert answer.status_code == 404, (org_id, action)
    assert upload(client, theirs.id, "x.csv", sheet(), token=token).status_code == 404
    assert members(live, theirs.id) == 3 and jobs_of(live, theirs.id) == 1
    assert other.get(their_path).status_code == 200  # still theirs, untouched


def test_a_member_gets_403_on_import_and_batches(live: Live) -> None:
    org = make_org(live.engine)
    owner = activate_and_sign_in(live, org)
    path = imported(owner, org.id, "m.csv", sheet(*[r.format(n=7) for r in GOOD_ROWS]))
    member = second_admin(live, org, role="Member")
    for p in (f"/orgs/{org.id}/import", f"/orgs/{org.id}/import/sample.csv", f"/orgs/{org.id}/batches",
              path, f"{path}/undo", f"{path}/files/summary.json"):  # fmt: skip
        assert member.get(p).status_code == 403, p
    token = csrf_of(member.get("/me").text)
    assert upload(member, org.id, "m.csv", sheet(), token=token).status_code == 403
    assert member.post(f"{path}/undo", data={"csrf_token": token}).status_code == 403
    assert members(live, org.id) == 4


def test_file_and_member_names_are_escaped_on_the_batch_pages(live: Live) -> None:
    org = make_org(live.engine)
    client = activate_and_sign_in(live, org)
    name = "<img src=x onerror=alert(1)>.csv"
    rows = ['"Zed <script>alert(""x"")</script>",zed@@acme,Member,Sales', "Ok,ok.8@acme.example,Member,"]
    path = imported(client, org.id, name, sheet(*rows))
    for page in (client.get(path).text, client.get(f"/orgs/{org.id}/batches").text):
        assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;.csv" in page
    report = client.get(path).text
    assert "<script>alert" not in report and "&lt;script&gt;alert(" in report


def test_batch_page_shows_progress_and_queue_place_until_the_job_ends(live: Live) -> None:
    """A job another worker holds (its lease alive) keeps the import slot: the page shows its phase
    and rows done of total; an upload meanwhile waits with its place in the queue; once the slot is
    free (the held job fails) the upload runs and its page shows the report."""
    org = make_org(live.engine)
    client = activate_and_sign_in(live, org)
    held = Job(
        kind=JobKind.IMPORT, organization_id=org.id, actor=org.owner, status=JobStatus.RUNNING,
        options=json.dumps({"file_name": "held.csv", "user_type": "portal"}), batch_id=new_batch_id(),
        worker="another-host:1:thread", lease_until=utcnow() + dt.timedelta(minutes=10),
        rows_done=1500, rows_total=4000, phase="checking",
    )  # fmt: skip
    with Session(live.engine) as session, session.begin():
        session.add(held)
        session.flush()
        held_id, held_path = held.id, f"/orgs/{org.id}/batches/{held.batch_id}"
    try:
        running = client.get(held_path).text
        assert 'http-equiv="refresh"' in running
        assert "Running: checking" in running and "1,500 rows done of 4,000" in running
        answer = upload(client, org.id, "waits.csv", sheet(*[r.format(n=9) for r in GOOD_ROWS]))
        path = answer.headers["location"]
        queued = client.get(path).text
        assert 'http-equiv="refresh"' in queued and "Queued: number 1 in the queue" in queued
        listing = client.get(f"/orgs/{org.id}/batches").text
        assert "held.csv" in listing and "waits.csv" in listing and "(1 in the queue)" in listing
    finally:
        with Session(live.engine) as session, session.begin():
            job = session.get_one(Job, held_id)
            job.status, job.error, job.lease_until = JobStatus.FAILED, "the file could not be read.", None
    assert "Nothing to fix" in finished(client, path)
    failed = client.get(held_path).text
    assert 'http-equiv="refresh"' not in failed
    assert "The import failed: the file could not be read." in failed


def test_a_batch_imported_on_the_command_line_has_its_page_and_undo(live: Live, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from importer.cli import cli

    org = make_org(live.engine)
    client = activate_and_sign_in(live, org)
    csv_path = tmp_path / "from-the-cli.csv"
    csv_path.write_bytes(sheet(*[r.format(n=10) for r in GOOD_ROWS]))
    result = CliRunner().invoke(
        cli,
        ["--db", live.engine.url.render_as_string(hide_password=False), "import", str(csv_path),
         "--org", org.name, "--as", org.owner, "--type", "portal", "--report-dir", str(tmp_path / "r"),
         "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    batch_id = json.loads(result.stdout)["batch_id"]
    page = client.get(f"/orgs/{org.id}/batches/{batch_id}")
    assert page.status_code == 200 and 'http-equiv="refresh"' not in page.text
    assert "from-the-cli.csv" in page.text and "imported on the command line" in page.text
    assert client.get(f"/orgs/{org.id}/batches/{batch_id}/files/summary.json").status_code == 404
    listing = client.get(f"/orgs/{org.id}/batches").text
    assert f"/batches/{batch_id}/undo" in listing and "from-the-cli.csv" in listing


def test_the_batches_page_pages_through_every_batch_once_newest_first(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from importer.pipeline import run_import
    from importer.settings import Settings
    from importer.values import UserType
    from importer.web import pages_batches

    monkeypatch.setattr(pages_batches, "BATCHES_PAGE", 2)
    org = make_org(live.engine)
    client = activate_and_sign_in(live, org)
    made = []
    for n in range(5):  # dry runs: each is a batch of its own, recorded
        path = tmp_path / f"file-{n}.csv"
        path.write_bytes(sheet(*[r.format(n=20 + n) for r in GOOD_ROWS]))
        result = run_import(
            live.engine, path, org_ref=org.name, actor_email=org.owner, user_type=UserType.PORTAL,
            dry_run=True, settings=Settings(report_dir=tmp_path / "r"),
        )  # fmt: skip
        made.append(result.batch_id)
    listed: list[str] = []
    url: str | None = f"/orgs/{org.id}/batches"
    while url is not None:
        page = client.get(url)
        assert page.status_code == 200
        on_page = re.findall(rf'href="/orgs/{org.id}/batches/([\w-]+)">', page.text)
        assert 1 <= len(on_page) <= 2
        listed += on_page
        following = re.search(r'<a href="([^"]+)">Next</a>', page.text)
        url = following.group(1).replace("&amp;", "&") if following else None
        if listed != on_page:  # every page after the first links back to it
            assert f'<a href="/orgs/{org.id}/batches">First page</a>' in page.text
    assert listed == made[::-1]  # each once, newest first
    unknown = client.get(f"/orgs/{org.id}/batches", params={"before": "20200101-000000-abcdef"})
    assert unknown.status_code == 404
