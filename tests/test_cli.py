"""The command line: exit codes, JSON shapes, one clear line for every error."""

from __future__ import annotations

import csv
import email
import email.policy
import fcntl
import io
import json
import os
import pty
import re
import secrets
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from select import select as select_fds

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from importer.activation.tokens import TOKEN_BYTES, hash_token, new_token
from importer.cli import cli
from importer.store.engine import open_database
from importer.store.models import ActivationToken, Batch, Member

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


# `org create` needs the portal's address for the Owner's activation link.
PORTAL = ("--base-url", "https://portal.example")


@pytest.fixture
def run(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Invoke the CLI against a fresh database with Acme Corp set up, from inside tmp_path."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
        return runner.invoke(cli, ["--db", db_url, *args], input=input, catch_exceptions=False)

    monkeypatch.setenv("IMPORTER_BASE_URL", "https://portal.acme.example")
    created = invoke("org", "create", "Acme Corp", "--owner-email", OWNER, "--owner-name", "Olive")
    assert created.exit_code == 0
    # The Owner follows the link `org create` printed (only an active Owner may import).
    link = created.output.splitlines()[-1]
    assert invoke("activate", "--password-stdin", input=f"{link}\nowner pass 2026\n").exit_code == 0
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
        "warnings": [],
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


# --- issue 11: the command line's hygiene -------------------------------------------------------

IMPORTER = Path(sys.executable).with_name("importer")  # the console script, as a user runs it


def _wait_until(condition: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        assert process.poll() is None, f"the command ended before {what}: {process.communicate()}"
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.005)


def _ctrl_c(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    """Ctrl-C as a terminal sends it (to the whole foreground group); the exit code and stderr."""
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=120)
    return process.returncode, err.decode()


def _loaded_a_library(pid: int) -> bool:
    """Whether the command line has begun loading its libraries (a compiled module is mapped)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False
    return any("site-packages" in line and line.endswith(".so") for line in maps.splitlines())


def _has_worker(pid: int) -> bool:
    """Whether the import has forked its checking worker: it is in its transaction, mid-run."""
    try:
        return bool(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except OSError:
        return False


def _written(db_url: str) -> tuple[int, int]:
    engine = open_database(db_url)
    try:
        with Session(engine) as session:
            return (
                session.scalar(select(func.count()).select_from(Member)) or 0,
                session.scalar(select(func.count()).select_from(Batch)) or 0,
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize("moment", ["start-up", "mid-run"])
def test_ctrl_c_is_one_line_and_exit_130_and_writes_nothing(
    run, tmp_path: Path, db_url: str, moment: str
) -> None:  # type: ignore[no-untyped-def]
    rows = 1 if moment == "start-up" else 120_000  # a file big enough to be checked by a worker
    path = write(
        tmp_path, "big.csv", "Name,Email,Role", *(f"P{i},p{i}@example.com,Member" for i in range(rows))
    )
    before = _written(db_url)
    process = subprocess.Popen(
        [str(IMPORTER), "--db", db_url, *import_args(path, "--report-dir", str(tmp_path / "reports"))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    if moment == "start-up":
        _wait_until(lambda: _loaded_a_library(process.pid), process, "it loaded a library")
    else:
        _wait_until(lambda: _has_worker(process.pid), process, "it started checking the rows")
    code, err = _ctrl_c(process)
    assert (code, err.strip().splitlines()) == (130, ["Interrupted; nothing was written."])
    assert _written(db_url) == before
    assert not list((tmp_path / "reports").glob("*"))


def test_a_file_name_with_escape_sequences_is_shown_not_obeyed(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name = "x\x1b[2J\rForged: 0 rejected\n.csv"
    path = write(tmp_path, name, "Name,Email,Role,Extra", "A,a@example.com,Member,1")
    summary = run(*import_args(path))
    listing = run("batches", "--org", "Acme Corp")
    batch_id = json.loads(run("batches", "--org", "Acme Corp", "--json").output)[0]["id"]
    shown = run("batch", "show", batch_id)
    failed = run(*import_args(write(tmp_path, "y\x1b]0;owned\x07.csv", "Name,Role", "A,Member")))
    for output in (summary.output, listing.output, shown.output, failed.output):
        assert not {"\x1b", "\r", "\x07"} & set(output), output
    forged_name = "x⟨U+001B⟩[2J⟨U+000D⟩Forged: 0 rejected⟨U+000A⟩.csv"
    assert summary.output.splitlines()[0].startswith(f"{forged_name}: 1 rows, 1 created")
    assert f"{forged_name}' has 4 columns" in summary.output or forged_name in summary.output
    assert forged_name in listing.output.splitlines()[1]
    assert f"file_name:        {forged_name}" in shown.output.splitlines()
    assert failed.output.startswith("Error: y⟨U+001B⟩]0;owned⟨U+0007⟩.csv: missing required column Email")


def _send(run, tmp_path: Path, *emails: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    rows = [f"{e.split('@')[0]},{e},Member" for e in emails]
    assert run(*import_args(write(tmp_path, "invite.csv", "Name,Email,Role", *rows))).exit_code == 0
    sent = run(
        "send-activations", "--org", "Acme Corp", "--outbox", "outbox",
        "--from", "Acme <no-reply@acme.example>", "--base-url", "https://portal.acme.example/",
    )  # fmt: skip
    assert sent.exit_code == 0, sent.output
    return _tokens_in(tmp_path / "outbox")


def _dash_token() -> str:
    """A real token, as tokens were drawn before issue 11, that starts with `-`."""
    while not (token := secrets.token_urlsafe(TOKEN_BYTES)).startswith("-"):
        pass
    return token


def _give_token(db_url: str, email: str, token: str) -> None:
    """The member's link is now `token` (as if sent by an older version)."""
    engine = open_database(db_url)
    with Session(engine) as session, session.begin():
        member_id = session.scalars(select(Member.id).where(Member.email == email)).one()
        session.execute(
            update(ActivationToken)
            .where(ActivationToken.member_id == member_id)
            .values(token_hash=hash_token(token))
        )
    engine.dispose()


def test_a_token_starting_with_a_dash_activates_as_documented(run, tmp_path: Path, db_url: str) -> None:  # type: ignore[no-untyped-def]
    _send(run, tmp_path, "ann@example.com", "bob@example.com", "cy@example.com")
    tokens = {email: _dash_token() for email in ("ann@example.com", "bob@example.com", "cy@example.com")}
    for address, token in tokens.items():
        _give_token(db_url, address, token)
    documented = run("activate", tokens["ann@example.com"], "--password-stdin", input="correct horse 42\n")
    flag_first = run("activate", "--password-stdin", tokens["bob@example.com"], input="correct horse 42\n")
    after_dashes = run(
        "activate", "--password-stdin", "--", tokens["cy@example.com"], input="correct horse 42\n"
    )
    for result, address in zip((documented, flag_first, after_dashes), tokens, strict=True):
        assert (result.exit_code, result.output) == (
            0,
            f"{address} is now active in Acme Corp. Sign in with your email and password.\n",
        )
    assert not any(new_token().startswith("-") for _ in range(2000))  # new links never do


def test_the_link_can_stay_out_of_the_process_list(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    token = _send(run, tmp_path, "ann@example.com")["ann@example.com"]
    link = f"https://portal.acme.example/activate?token={token}"
    done = run("activate", "--password-stdin", input=f"{link}\ncorrect horse 42\n")
    assert (done.exit_code, done.output.splitlines()) == (
        0,
        ["ann@example.com is now active in Acme Corp. Sign in with your email and password."],
    )


def test_activate_without_a_terminal_points_at_password_stdin(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    token = _send(run, tmp_path, "ann@example.com")["ann@example.com"]
    result = run("activate", token)  # CliRunner's stdin is not a terminal
    assert result.exit_code == 2
    (line,) = result.output.splitlines()
    assert (
        line.startswith("Error: there is no terminal to ask for the password") and "--password-stdin" in line
    )


class Terminal:
    """The importer run with a pseudo-terminal as its controlling terminal, as a person runs it."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.fd, attached = pty.openpty()
        self.process = subprocess.Popen(
            [str(IMPORTER), *args],
            cwd=cwd,
            stdin=attached,
            stdout=attached,
            stderr=attached,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(attached)
        self.shown = ""

    def read_until(self, *wanted: str) -> str:
        """What the terminal shows until one of `wanted` appears or the program ends."""
        deadline = time.monotonic() + 60
        while not any(w in self.shown for w in wanted) and time.monotonic() < deadline:
            if select_fds([self.fd], [], [], 0.1)[0]:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the program ended: its side of the terminal is closed
                    break
                if not chunk:
                    break
                self.shown += chunk.decode(errors="replace")
        return self.shown

    def type(self, line: str) -> None:
        """Type a line and press Enter."""
        os.write(self.fd, line.encode() + b"\n")

    def finish(self) -> int:
        """Read to the end (killing a program that still waits for input); its exit code."""
        self.read_until()
        if self.process.poll() is None:
            self.process.kill()
        code = self.process.wait(timeout=60)
        os.close(self.fd)
        return code


def test_activate_on_a_terminal_checks_the_link_before_asking_for_a_password(
    run, tmp_path: Path, db_url: str
) -> None:  # type: ignore[no-untyped-def]
    terminal = Terminal(["--db", db_url, "activate", "not-a-real-token"], tmp_path)
    shown = terminal.read_until("password:", "not valid")
    code = terminal.finish()
    assert "password:" not in shown
    assert "Error: This activation link is not valid" in terminal.shown and code == 1


def test_activate_on_a_terminal_asks_for_the_link_without_echo(run, tmp_path: Path, db_url: str) -> None:  # type: ignore[no-untyped-def]
    token = _send(run, tmp_path, "ann@example.com")["ann@example.com"]
    terminal = Terminal(["--db", db_url, "activate"], tmp_path)
    terminal.read_until("Activation link:")
    terminal.type(f"https://portal.acme.example/activate?token={token}")
    terminal.read_until("New password:")
    terminal.type("correct horse 42")
    terminal.read_until("Repeat the password:")
    terminal.type("correct horse 42")
    code = terminal.finish()
    assert code == 0 and token not in terminal.shown and "correct horse" not in terminal.shown
    assert "Choose the password of ann@example.com in Acme Corp." in terminal.shown
    assert "ann@example.com is now active in Acme Corp." in terminal.shown


def test_template_to_standard_output(run, tmp_path: Path, db_url: str) -> None:  # type: ignore[no-untyped-def]
    as_csv = run("template", "portal", "--format", "csv", "-o", "-")
    assert (as_csv.exit_code, as_csv.stdout_bytes) == (
        0,
        b"Name (required),Email (required),Role (required),Team\r\n",
    )
    as_xlsx = CliRunner().invoke(cli, ["template", "portal", "-o", "-"], catch_exceptions=False)
    assert as_xlsx.exit_code == 0
    workbook = load_workbook(io.BytesIO(as_xlsx.stdout_bytes))
    assert [c.value for c in workbook.worksheets[0][1]][:2] == ["Name (required)", "Email (required)"]
    assert not (tmp_path / "-").exists()
    terminal = Terminal(["template", "portal", "-o", "-"], tmp_path)
    code = terminal.finish()
    assert code == 2 and "PK" not in terminal.shown
    (line,) = terminal.shown.strip().splitlines()
    assert line.startswith("Error: an XLSX workbook is binary")


@pytest.mark.parametrize(
    "args",
    [
        ["members", "--org", "Acme Corp"],
        ["batches", "--org", "Acme Corp"],
        ["batch", "show", "20260101-000000-abcdef"],
        [
            "send-activations",
            "--org",
            "Acme Corp",
            "--from",
            "a@example.com",
            "--base-url",
            "https://x.example",
        ],
        ["activate", "some-token", "--password-stdin"],
    ],
)
def test_a_reading_command_creates_no_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IMPORTER_DATABASE_URL", raising=False)
    result = CliRunner().invoke(cli, args, input="x\n", catch_exceptions=False)
    assert (result.exit_code, result.output.splitlines()[0].split(":")[:2]) == (
        1,
        ["Error", f" no database at {tmp_path / 'importer.db'}"],
    )
    assert len(result.output.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    created = CliRunner().invoke(
        cli,
        ["org", "create", "Acme Corp", "--owner-email", OWNER, "--owner-name", "O", *PORTAL],
    )
    assert created.exit_code == 0 and (tmp_path / "importer.db").exists()


def test_import_json_carries_the_warnings(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "extra.csv", "Name,Email,Role,Shoe Size", "A,a@gmial.com,Member,42")
    result = run(*import_args(path, "--json"))
    summary = json.loads(result.output)
    assert [w["code"] for w in summary["warnings"]] == ["column.ignored", "email.provider_typo"]
    assert summary["warnings"][0]["message"] == "Ignored column not in the Portal Access sheet: 'Shoe Size'."
    assert json.loads(Path(summary["report_dir"], "summary.json").read_text()) == summary
    human = run(*import_args(path)).output
    assert "Warning: Ignored column not in the Portal Access sheet: 'Shoe Size'." in human


def test_the_summary_says_where_generated_pins_are_and_pins_csv_names_the_team(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(
        tmp_path, "phones.csv", "Name,Team,PIN", "Lobby Phone,Sales,", "Lobby Phone,Support,", "Desk,,0042"
    )
    result = run("import", path, "--org", "Acme Corp", "--as", OWNER, "--type", "no-portal")
    assert result.exit_code == 0
    batch_id = json.loads(run("batches", "--org", "Acme Corp", "--json").output)[0]["id"]
    pins = tmp_path / "reports" / batch_id / "pins.csv"
    assert (
        f"Generated PINs of 2 member(s): reports/{batch_id}/pins.csv (mode 0600). It is the only copy, "
        "shown nowhere else: hand them out, then delete it."
    ) in result.output.splitlines()
    with pins.open(encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    assert [(r["row"], r["name"], r["team"], len(r["pin"])) for r in rows] == [
        ("2", "Lobby Phone", "Sales", 6),
        ("3", "Lobby Phone", "Support", 6),
    ]


# --- The listings render typed records exactly as the dicts they replaced -----------------------


def _old_member_dicts(db_url: str) -> list[dict[str, object]]:
    """Members as `list_members` returned them before it answered MemberRecords (the reference)."""
    from importer.store.models import Team

    with Session(open_database(db_url)) as session:
        query = select(Member, Team.name).outerjoin(Team, Member.team_id == Team.id).order_by(Member.id)
        return [
            {
                "id": m.id,
                "name": m.name,
                "email": m.email,
                "type": m.user_type,
                "role": m.role.value,
                "team": team,
                "status": m.status.value,
                "batch_id": m.batch_id,
                "invited_at": m.invited_at.isoformat() if m.invited_at else None,
                "invite_error": m.invite_error,
            }
            for m, team in session.execute(query)
        ]


def _old_batch_dicts(db_url: str) -> list[dict[str, object]]:
    """Batches as `list_batches` returned them before BatchRecord (the reference)."""
    with Session(open_database(db_url)) as session:
        return [
            {
                "id": b.id,
                "type": b.user_type,
                "file_name": b.file_name,
                "sha256": b.sha256,
                "actor": b.actor_email,
                "dry_run": b.dry_run,
                "all_or_nothing": b.all_or_nothing,
                "rows": b.rows,
                "created": b.created,
                "skipped": b.skipped,
                "rejected": b.rejected,
                "outcome": b.outcome,
                "started_at": b.started_at.isoformat(),
                "finished_at": b.finished_at.isoformat() if b.finished_at else None,
                "seconds": round(b.seconds, 3),
                "report_dir": b.report_dir,
            }
            for b in session.scalars(select(Batch).order_by(Batch.started_at.desc()))
        ]


def test_listings_print_exactly_what_the_dicts_printed(run, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from importer.cli.orgs import BATCH_COLUMNS, MEMBER_COLUMNS
    from importer.cli.output import csv_text, table

    path = write(tmp_path, "p.csv", "Name,Email,Role,Team", "A,a@example.com,Admin,Sales", "B,b@,Member,")
    run(*import_args(path, "--dry-run"))
    run(*import_args(path))
    with Session(open_database(db_url)) as session, session.begin():
        session.execute(update(Member).where(Member.name == "A").values(invite_error="550 no such user"))
    members, batches = _old_member_dicts(db_url), _old_batch_dicts(db_url)
    assert len(members) == 2 and len(batches) == 2

    assert (
        run("members", "--org", "Acme Corp", "--format", "json").output
        == json.dumps(members, indent=2) + "\n"
    )
    # (CliRunner gives the CSV's \r\n line ends as \n.)
    csv_out = csv_text(members).replace("\r\n", "\n")
    assert run("members", "--org", "Acme Corp", "--format", "csv").output == csv_out
    assert run("members", "--org", "Acme Corp").output.splitlines() == table(
        members, (*MEMBER_COLUMNS, "invite_error")
    )
    assert run("batches", "--org", "Acme Corp", "--json").output == json.dumps(batches, indent=2) + "\n"
    assert run("batches", "--org", "Acme Corp").output.splitlines() == table(batches, BATCH_COLUMNS)
    newest = batches[0]
    detail = newest | {"organization": "Acme Corp", "members_pending": 1, "members_active": 0}
    shown = run("batch", "show", str(newest["id"]), "--json").output
    assert shown == json.dumps(detail, indent=2) + "\n"
    human = run("batch", "show", str(newest["id"])).output.splitlines()
    assert human == [f"{key + ':':<17} {'' if value is None else value}" for key, value in detail.items()]
    undone = run("batch", "undo", str(newest["id"]), "--as", OWNER, "--yes", "--json").output
    assert undone == json.dumps({"batch_id": newest["id"], "removed": 1, "kept_active": []}) + "\n"
    assert [b["outcome"] for b in _old_batch_dicts(db_url)] == ["undone", "dry_run"]


def test_the_cli_choices_spelt_for_a_light_start_match_the_library() -> None:
    from importer.activation.transports import smtp
    from importer.activation.transports.smtp import SmtpSecurity
    from importer.cli.activation import MAX_SMTP_CONNECTIONS, SMTP_SECURITY
    from importer.cli.imports import LIMIT_HELP
    from importer.cli.orgs import MEMBER_STATUSES
    from importer.errors import Limit
    from importer.settings import Settings
    from importer.store.models import Status

    assert tuple(s.value for s in Status) == MEMBER_STATUSES
    assert tuple(s.value for s in SmtpSecurity) == SMTP_SECURITY
    assert smtp.MAX_SMTP_CONNECTIONS == MAX_SMTP_CONNECTIONS
    assert set(LIMIT_HELP) == set(Limit)
    assert all(hasattr(Settings(), limit.value) for limit in Limit)


# --- Remedies: the library says what can be done, the command line says it in its words ---------


def test_every_remedy_has_the_command_lines_words() -> None:
    from importer.cli.answers import REMEDY_WORDS, error_line
    from importer.errors import ImporterError, Remedy

    assert set(REMEDY_WORDS) == set(Remedy)
    for remedy in Remedy:
        line = error_line(ImporterError("something is wrong.", remedy=remedy, remedy_arg="x"))
        assert line.startswith("something is wrong (") and line.endswith(")."), line


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            ("the file has 12 rows; the limit is 10.", "RAISE_LIMIT", "max_rows"),
            "the file has 12 rows; the limit is 10 (raise it with --max-rows).",
        ),
        (
            ("no organization 'Nope'", "CREATE_ORGANIZATION", None),
            "no organization 'Nope' (create it with `importer org create`)",
        ),
        (("no batch 'x'", "LIST_BATCHES", None), "no batch 'x' (`importer batches --org ORG` lists them)"),
        (
            ("undo it.", "UNDO_BATCH", "20260101-000000-abcdef"),
            "undo it (`importer batch undo 20260101-000000-abcdef`).",
        ),
        (("plain.", None, None), "plain."),
    ],
)
def test_a_remedy_is_rendered_after_the_message(error: tuple[str, str | None, str | None], line: str) -> None:
    from importer.cli.answers import error_line
    from importer.errors import ImporterError, Remedy

    message, remedy, arg = error
    exc = ImporterError(message, remedy=Remedy[remedy] if remedy else None, remedy_arg=arg)
    assert error_line(exc) == line


def test_a_limit_error_names_the_option_that_raises_it(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "big.csv", "Name,Email,Role", *(f"N{i},n{i}@example.com,Member" for i in range(5)))
    result = run(*import_args(path, "--max-rows", "2"))
    assert result.exit_code == 1
    assert "--max-rows" in result.output and len(result.output.strip().splitlines()) == 1


def test_the_library_messages_of_the_store_name_no_flag_and_the_cli_adds_its_words(run, db_url: str) -> None:  # type: ignore[no-untyped-def]
    from importer.errors import NotFoundError, Remedy
    from importer.store.orgs import list_members, undo_batch

    with pytest.raises(NotFoundError) as no_batch:
        undo_batch(open_database(db_url), "nope")
    with pytest.raises(NotFoundError) as no_org:
        list_members(open_database(db_url), "Nope")
    assert (no_batch.value.remedy, no_org.value.remedy) == (Remedy.LIST_BATCHES, Remedy.CREATE_ORGANIZATION)
    assert "importer" not in str(no_batch.value) + str(no_org.value)
    result = run("batch", "show", "nope")
    assert result.output == "Error: no batch 'nope' (`importer batches --org ORG` lists them)\n"
    result = run("members", "--org", "Nope")
    assert result.output == "Error: no organization 'Nope' (create it with `importer org create`)\n"


def test_a_provider_typo_warning_says_how_to_undo_the_batch(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "typo.csv", "Name,Email,Role", "A,ann@gmial.com,Member")
    result = run(*import_args(path))
    batch_id = json.loads(run("batches", "--org", "Acme Corp", "--json").output)[0]["id"]
    assert (
        'Warning: Row 2: ann@gmial.com was accepted. Did you mean "ann@gmail.com"? If it is a typo, undo '
        f"this batch, fix the sheet and import it again (`importer batch undo {batch_id}`)."
    ) in result.output.splitlines()


# --- An instant start -----------------------------------------------------------------------------

HEAVY = (
    "pandas",
    "pandera",
    "numpy",
    "sqlalchemy",
    "openpyxl",
    "xlsxwriter",
    "python_calamine",
    "email_validator",
    "jinja2",
    "alembic",
)


def _loaded_after(argv: list[str], *, cwd: Path) -> tuple[int, list[str]]:
    """Run the command line in a fresh interpreter; its exit code and the heavy modules it loaded."""
    probe = (
        "import sys\n"
        "from importer.cli import main\n"
        f"sys.argv = ['importer', *{argv!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    code = exc.code or 0\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('LOADED', code, ','.join(heavy), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=120)
    (last,) = [line for line in done.stderr.splitlines() if line.startswith("LOADED")]
    _, code, heavy = [*last.split(" "), ""][:3]
    return int(code), [m for m in heavy.split(",") if m]


def _command_paths() -> list[list[str]]:
    paths: list[list[str]] = [[]]
    for name, command in cli.commands.items():
        sub = getattr(command, "commands", None)
        paths += [[name, s] for s in sub] if sub else [[name]]
    return paths


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "importer")
def test_help_loads_no_heavy_library(path: list[str], tmp_path: Path) -> None:
    assert _loaded_after([*path, "--help"], cwd=tmp_path) == (0, [])


def test_members_loads_sqlalchemy_but_not_pandas(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    assert (
        CliRunner()
        .invoke(
            cli,
            ["--db", url, "org", "create", "A", "--owner-email", OWNER, "--owner-name", "O", *PORTAL],
        )
        .exit_code
        == 0
    )
    code, heavy = _loaded_after(["--db", url, "members", "--org", "A", "--format", "json"], cwd=tmp_path)
    assert code == 0 and "sqlalchemy" in heavy
    assert not {"pandas", "pandera", "numpy", "openpyxl", "python_calamine", "jinja2"} & set(heavy)


def test_an_import_from_the_cli_puts_the_collector_and_the_csv_limit_back(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import csv as csv_module
    import gc

    before = (gc.get_threshold(), csv_module.field_size_limit())
    path = write(tmp_path, "ok.csv", "Name,Email,Role", "A,a@example.com,Member")
    assert run(*import_args(path, "--max-cell-chars", "500000")).exit_code == 0
    assert (gc.get_threshold(), csv_module.field_size_limit()) == before
