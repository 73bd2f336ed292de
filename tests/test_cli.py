"""The command line: exit codes, JSON shapes, one clear line for every error."""

from __future__ import annotations

import email
import email.policy
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session

from importer.cli import cli
from importer.db import open_database
from importer.models import Member

from .conftest import SUMMARY_KEYS

OWNER = "olive.owner@acme.example"
MEMBER_KEYS = [
    "id",
    "name",
    "email",
    "type",
    "role",
    "team",
    "status",
    "batch_id",
    "invited_at",
    "invite_error",
]


@pytest.fixture
def run(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Invoke the CLI against a fresh database with Acme Corp set up, from inside tmp_path."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
        return runner.invoke(cli, ["--db", db_url, *args], input=input, catch_exceptions=False)

    assert (
        invoke("org", "create", "Acme Corp", "--owner-email", OWNER, "--owner-name", "Olive").exit_code == 0
    )
    assert invoke("team", "create", "--org", "Acme Corp", "Sales", "Support").exit_code == 0
    return invoke


def write(tmp_path: Path, name: str, *lines: str) -> str:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def import_args(path: str, *extra: str) -> list[str]:
    return ["import", path, "--org", "Acme Corp", "--as", OWNER, "--type", "portal", *extra]


def test_exit_0_when_every_row_is_created_or_skipped(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "ok.csv", "Name,Email,Role,Team", "A,a@example.com,Member,sales")
    first = run(*import_args(path, "--json"))
    second = run(*import_args(path, "--json"))
    assert (first.exit_code, second.exit_code) == (0, 0)
    one, two = json.loads(first.output), json.loads(second.output)
    assert set(one) == SUMMARY_KEYS
    assert (one["created"], one["skipped"], two["created"], two["skipped"]) == (1, 0, 0, 1)
    assert one["type"] == "portal" and one["dry_run"] is False
    assert Path(one["report_dir"], "report.html").exists()


def test_exit_3_when_some_rows_are_rejected_with_a_human_summary(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "some.csv", "Name,Email,Role,Team", "A,a@example.com,Member,", "B,b@,Member,")
    result = run(*import_args(path))
    assert result.exit_code == 3
    assert "2 rows, 1 created, 0 skipped (already members), 1 rejected." in result.output
    assert "email.invalid: 1" in result.output
    assert "report.html" in result.output


def test_exit_1_on_a_file_level_error_with_one_clear_line(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "bad.csv", "Name,Role", "A,Member")
    result = run(*import_args(path))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: bad.csv: missing required column Email")
    assert "Traceback" not in result.output


def test_exit_1_when_the_actor_may_not_import(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "ok.csv", "Name,Email,Role", "A,a@example.com,Member")
    result = run("import", path, "--org", "Acme Corp", "--as", "nobody@example.com", "--type", "portal")
    assert result.exit_code == 1 and "Error: nobody@example.com is not a member of Acme Corp" in result.output
    unknown_org = run("import", path, "--org", "Nope", "--as", OWNER, "--type", "portal")
    assert unknown_org.exit_code == 1 and "no organization 'Nope'" in unknown_org.output


def test_exit_1_for_all_or_nothing_with_rejections_and_nothing_written(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "some.csv", "Name,Email,Role", "A,a@example.com,Member", "B,b@,Member")
    result = run(*import_args(path, "--all-or-nothing", "--json"))
    assert result.exit_code == 1
    assert json.loads(result.output)["created"] == 0
    members = json.loads(run("members", "--org", "Acme Corp", "--format", "json").output)
    assert [m["email"] for m in members] == [OWNER]


def test_dry_run_json(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "ok.csv", "Name,Email,Role", "A,a@example.com,Member")
    result = run(*import_args(path, "--dry-run", "--json"))
    assert result.exit_code == 0
    assert json.loads(result.output) | {"batch_id": "", "report_dir": ""} == {
        "batch_id": "",
        "type": "portal",
        "dry_run": True,
        "rows": 1,
        "created": 1,
        "skipped": 0,
        "rejected": 0,
        "errors_by_code": {},
        "report_dir": "",
    }
    members = json.loads(run("members", "--org", "Acme Corp", "--format", "json").output)
    assert len(members) == 1


def test_exit_2_on_usage_errors(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "ok.csv", "Name,Email,Role", "A,a@example.com,Member")
    assert run("import", path, "--org", "Acme Corp", "--as", OWNER).exit_code == 2  # no --type
    assert run(*import_args(path, "--type", "staff")).exit_code == 2
    assert (
        run(
            "import", str(tmp_path / "missing.csv"), "--org", "A", "--as", OWNER, "--type", "portal"
        ).exit_code
        == 2
    )


def test_members_json_keys_and_filters(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run(*import_args(write(tmp_path, "p.csv", "Name,Email,Role,Team", "A,a@example.com,Admin,Sales")))
    run(
        "import",
        write(tmp_path, "n.csv", "Name,Team,PIN", "Desk,Support,0042"),
        "--org",
        "Acme Corp",
        "--as",
        OWNER,
        "--type",
        "no-portal",
    )

    everyone = json.loads(run("members", "--org", "Acme Corp", "--format", "json").output)
    assert [list(m) for m in everyone] == [MEMBER_KEYS] * 3
    assert [(m["name"], m["email"], m["type"], m["role"], m["team"], m["status"]) for m in everyone] == [
        ("Olive", OWNER, "portal", "Owner", None, "active"),
        ("A", "a@example.com", "portal", "Admin", "Sales", "pending"),
        ("Desk", None, "no-portal", "Member", "Support", "pending"),
    ]
    pending_portal = run(
        "members", "--org", "Acme Corp", "--status", "pending", "--type", "portal", "--format", "json"
    )
    assert [m["name"] for m in json.loads(pending_portal.output)] == ["A"]
    table = run("members", "--org", "Acme Corp").output
    assert "a@example.com" in table and "0042" not in table
    csv_out = run("members", "--org", "1", "--format", "csv").output
    assert csv_out.splitlines()[0] == ",".join(MEMBER_KEYS)


def test_batches_lists_every_run(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "ok.csv", "Name,Email,Role", "A,a@example.com,Member")
    run(*import_args(path, "--dry-run"))
    run(*import_args(path))
    listing = json.loads(run("batches", "--org", "Acme Corp", "--json").output)
    assert [(b["outcome"], b["created"], b["file_name"], b["actor"]) for b in listing] == [
        ("completed", 1, "ok.csv", OWNER),
        ("dry_run", 1, "ok.csv", OWNER),
    ]


def test_template_with_org_teams(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run("template", "portal", "--format", "xlsx", "--org", "Acme Corp", "-o", "t.xlsx")
    assert result.exit_code == 0
    workbook = load_workbook(tmp_path / "t.xlsx")
    assert [c.value for c in workbook.worksheets[0][1]] == [
        "Name (required)",
        "Email (required)",
        "Role (required)",
        "Team",
    ]
    assert [c.value for c in workbook["Lists"]["A"]] == ["Sales", "Support"]
    csv_result = run("template", "no-portal", "--format", "csv", "-o", "t.csv")
    assert csv_result.exit_code == 0
    assert (tmp_path / "t.csv").read_bytes() == b"Name (required),Team,PIN\r\n"


def test_org_create_twice_is_one_clear_error(run) -> None:  # type: ignore[no-untyped-def]
    again = run("org", "create", "Acme Corp", "--owner-email", "x@example.com", "--owner-name", "X")
    assert (
        again.exit_code == 1
        and again.output.strip() == "Error: an organization named 'Acme Corp' already exists."
    )


def _tokens_in(outbox: Path) -> dict[str, str]:
    """Recipient -> token of every activation email in the outbox."""
    found = {}
    for path in outbox.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        body = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        found[str(message["To"].addresses[0].addr_spec)] = re.search(r"token=([\w-]+)", body)[1]  # type: ignore[index]
    return found


def test_an_imported_admin_activates_then_invites_members_but_not_admins(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    admins = write(tmp_path, "admins.csv", "Name,Email,Role", "Adam Admin,adam@example.com,Admin")
    assert run(*import_args(admins)).exit_code == 0
    sent = run(
        "send-activations", "--org", "Acme Corp", "--outbox", "outbox", "--json",
        "--from", "Acme <no-reply@acme.example>", "--base-url", "https://portal.acme.example/",
    )  # fmt: skip
    assert (sent.exit_code, json.loads(sent.output)) == (0, {"sent": 1, "failed": 0, "skipped": 0})
    token = _tokens_in(tmp_path / "outbox")["adam@example.com"]

    weak = run("activate", token, "--password-stdin", input="short1\n")
    assert weak.exit_code == 1 and "at least 8 characters" in weak.output
    done = run("activate", token, "--password-stdin", input="correct horse 42\n")
    assert done.exit_code == 0 and "adam@example.com is now active in Acme Corp" in done.output
    again = run("activate", token, "--password-stdin", input="correct horse 42\n")
    assert again.exit_code == 1 and "already" in again.output

    invites = write(
        tmp_path, "invites.csv", "Name,Email,Role", "Mo,mo@example.com,Member", "Al,al@example.com,Admin"
    )
    result = run(
        "import", invites, "--org", "Acme Corp", "--as", "adam@example.com", "--type", "portal", "--json"
    )
    summary = json.loads(result.output)
    assert (result.exit_code, summary["created"], summary["errors_by_code"]) == (
        3,
        1,
        {"role.not_allowed": 1},
    )


def test_send_activations_needs_from_and_base_url(run) -> None:  # type: ignore[no-untyped-def]
    result = run("send-activations", "--org", "Acme Corp")
    assert result.exit_code == 2 and "--from" in result.output


def test_password_policy_command(run) -> None:  # type: ignore[no-untyped-def]
    shown = run("org", "password-policy", "--org", "Acme Corp", "--as", OWNER)
    assert shown.output.strip() == "Password policy: at least 8 characters, with letters, digits."
    changed = run(
        "org",
        "password-policy",
        "--org",
        "Acme Corp",
        "--as",
        OWNER,
        "--min-length",
        "12",
        "--require-symbol",
    )
    assert (
        changed.output.strip()
        == "Password policy: at least 12 characters, with letters, digits and a symbol."
    )
    refused = run(
        "org", "password-policy", "--org", "Acme Corp", "--as", "x@example.com", "--min-length", "9"
    )
    assert refused.exit_code == 1 and "only the Owner" in refused.output


def test_members_table_shows_a_refused_invitation(run, tmp_path: Path, db_url: str) -> None:  # type: ignore[no-untyped-def]
    run(*import_args(write(tmp_path, "p.csv", "Name,Email,Role", "Bo,bo@example.com,Member")))
    assert "invite_error" not in run("members", "--org", "Acme Corp").output
    engine = open_database(db_url)
    with Session(engine) as session, session.begin():
        session.scalars(
            select(Member).where(Member.email == "bo@example.com")
        ).one().invite_error = "550 5.1.1 no"
    engine.dispose()
    table = run("members", "--org", "Acme Corp").output.splitlines()
    assert table[0].split()[-1] == "invite_error"
    assert table[-1].endswith("550 5.1.1 no")
