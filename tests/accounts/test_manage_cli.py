"""Managing members from the command line: `member ...`, `team ...`, `members` pages, `audit`, `batch undo`.

Each command on SQLite and PostgreSQL, every refusal with its exit code and line, the sheet's own
messages, PINs shown once, pages that list every member exactly once, and the trail a session leaves.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session

from importer.accounts.accounts import activate_membership
from importer.activation.activating import check_token
from importer.checks.pins import verify_pin
from importer.cli import cli
from importer.errors import ActivationError
from importer.store.engine import open_database
from importer.store.models import Member
from tests.test_cli import MEMBER_KEYS, Terminal, _tokens_in, write

OWNER = "olive.owner@acme.example"
ADMIN = "ada@acme.example"
ORG = ("--org", "Acme Corp")
AS_OWNER = ("--as", OWNER)
SEND = ("--from", "Acme <no-reply@acme.example>", "--base-url", "https://portal.acme.example/")
PASSWORD = "Correct horse 42"

Run = Callable[..., Result]


@pytest.fixture
def run(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    """The CLI on a fresh database holding Acme Corp (an active Owner; teams Sales, Support)."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(cli, ["--db", db_url, *args], input=input, catch_exceptions=False)

    monkeypatch.setenv("IMPORTER_BASE_URL", "https://portal.acme.example")
    created = invoke("org", "create", "Acme Corp", "--owner-email", OWNER, "--owner-name", "Olive")
    assert created.exit_code == 0, created.output
    # The Owner follows the link `org create` printed (only an active Owner may act).
    link = created.output.splitlines()[-1]
    assert invoke("activate", "--password-stdin", input=f"{link}\nowner pass 2026\n").exit_code == 0
    assert invoke("team", "create", *ORG, "Sales", "Support").exit_code == 0
    return invoke


def add(run: Run, *args: str, actor: str = OWNER) -> dict[str, Any]:
    """`member add ... --json`, which must succeed; its JSON."""
    result = run("member", "add", *ORG, "--as", actor, *args, "--json")
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def activate(db_url: str, member_id: int) -> None:
    """The member sets a password (as from the emailed link)."""
    engine = open_database(db_url)
    with Session(engine) as session, session.begin():
        activate_membership(session, member_id, password=PASSWORD)
    engine.dispose()


@pytest.fixture
def admin_id(run: Run, db_url: str) -> int:
    """Ada, an active Admin of Acme Corp."""
    member_id = int(add(run, "--name", "Ada Admin", "--email", ADMIN, "--role", "Admin")["member"]["id"])
    activate(db_url, member_id)
    return member_id


def one_line_error(result: Result) -> str:
    """The single line an error prints, without a traceback."""
    assert "Traceback" not in result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: ")
    return line


# --- member add -------------------------------------------------------------------------------


def test_a_bad_address_is_refused_with_exactly_the_sheets_message(run: Run, tmp_path: Path) -> None:
    sheet = write(tmp_path, "bad.csv", "Name,Email,Role,Team", "Bob,bob@gmial..com,Membr,Salez")
    imported = run("import", sheet, *ORG, *AS_OWNER, "--type", "portal", "--report-dir", "reports", "--json")
    assert imported.exit_code == 3
    report = Path(json.loads(imported.stdout)["report_dir"]) / "errors.csv"
    with report.open(encoding="utf-8-sig", newline="") as handle:
        from_sheet = [(r["column"], r["code"], r["message"]) for r in csv.DictReader(handle)]
    assert {code for _, code, _ in from_sheet} == {"email.invalid", "role.invalid", "team.unknown"}

    args = ("--name", "Bob", "--email", "bob@gmial..com", "--role", "Membr", "--team", "Salez")
    refused = run("member", "add", *ORG, *AS_OWNER, *args, "--json")
    assert refused.exit_code == 3
    errors = json.loads(refused.stdout)["errors"]
    assert [(e["column"], e["code"], e["message"]) for e in errors] == from_sheet
    assert json.loads(refused.stdout)["member"] is None

    human = run("member", "add", *ORG, *AS_OWNER, *args)
    assert human.exit_code == 3 and "Traceback" not in human.output
    lines = human.output.strip().splitlines()
    assert lines[0] == "Not added: the sheet's rules refuse it (3 problem(s)):"
    assert lines[1:] == [f"  {column}: {message} [{code}]" for column, code, message in from_sheet]
    listed = json.loads(run("members", *ORG, "--format", "json").stdout)
    assert [m["email"] for m in listed] == [OWNER]


def test_add_a_portal_member_and_an_existing_one_is_skipped_as_in_a_sheet(run: Run) -> None:
    added = add(run, "--name", " Ann ", "--email", "ann@x.example", "--role", "admin", "--team", "sales")
    member = added["member"]
    assert (member["name"], member["email"], member["role"], member["team"], member["status"]) == (
        "Ann", "ann@x.example", "Admin", "Sales", "pending",
    )  # fmt: skip
    assert "pin" not in added and added["errors"] == []
    human = run(
        "member", "add", *ORG, *AS_OWNER, "--name", "Ann", "--email", "ANN@x.example", "--role", "Member"
    )
    assert human.exit_code == 3
    again = json.loads(
        run(
            "member",
            "add",
            *ORG,
            *AS_OWNER,
            "--name",
            "A",
            "--email",
            "ANN@x.example",
            "--role",
            "Member",
            "--json",
        ).stdout
    )
    assert [e["code"] for e in again["errors"]] == ["member.exists"]


def test_a_generated_pin_is_printed_once_and_never_again(run: Run, db_url: str) -> None:
    added = run("member", "add", *ORG, *AS_OWNER, "--name", "Front Desk", "--team", "Support", "--no-portal")
    assert added.exit_code == 0
    pin = next(line for line in added.output.splitlines() if line.startswith("PIN: ")).split()[1]
    assert pin.isdigit() and 4 <= len(pin) <= 8
    engine = open_database(db_url)
    with Session(engine) as session:
        row = session.scalars(select(Member).where(Member.name == "Front Desk")).one()
        member_id, stored = row.id, row.pin_hash
    assert stored and pin not in stored and verify_pin(stored, pin)

    new = json.loads(run("member", "pin", str(member_id), *ORG, *AS_OWNER, "--json").stdout)
    assert new["member"]["id"] == member_id and new["pin"] != pin
    with Session(engine) as session:
        stored = session.get(Member, member_id).pin_hash  # type: ignore[union-attr]
    engine.dispose()
    assert verify_pin(stored, new["pin"]) and not verify_pin(stored, pin)
    human = run("member", "pin", str(member_id), *ORG, *AS_OWNER)
    assert human.exit_code == 0 and "Shown this once" in human.output
    third = human.output.splitlines()[0].rsplit(": ", 1)[1]

    everything = "".join(
        run(*args).output
        for args in (
            ("members", *ORG),
            ("members", *ORG, "--format", "json"),
            ("members", *ORG, "--format", "csv"),
            ("members", *ORG, "--limit", "5", "--format", "json"),
            ("audit", *ORG, "--json"),
        )
    )
    for shown in (pin, new["pin"], third):
        assert shown not in everything
    given = run("member", "add", *ORG, *AS_OWNER, "--name", "Phone", "--no-portal", "--pin", "0042", "--json")
    assert given.exit_code == 0 and "pin" not in json.loads(given.stdout)  # the admin chose it


def test_member_add_usage_errors_exit_2(run: Run) -> None:
    mixed = run("member", "add", *ORG, *AS_OWNER, "--name", "X", "--no-portal", "--email", "x@x.example")
    assert mixed.exit_code == 2 and "--no-portal has neither" in one_line_error(mixed)
    pin = run("member", "add", *ORG, *AS_OWNER, "--name", "X", "--email", "x@x.example", "--pin", "1234")
    assert pin.exit_code == 2 and "add --no-portal" in one_line_error(pin)
    nothing = run("member", "edit", "1", *ORG, *AS_OWNER)
    assert nothing.exit_code == 2 and "nothing to change" in one_line_error(nothing)


# --- privileges, the last Owner and the other refusals ---------------------------------------


def test_privileges_are_the_sheets(run: Run, admin_id: int) -> None:
    # An Admin may add Members, not Admins: the sheet's role.not_allowed, exit 3.
    add(run, "--name", "Mo", "--email", "mo@x.example", "--role", "Member", actor=ADMIN)
    refused = run(
        "member",
        "add",
        *ORG,
        "--as",
        ADMIN,
        "--name",
        "Al",
        "--email",
        "al@x.example",
        "--role",
        "Admin",
        "--json",
    )
    assert refused.exit_code == 3
    assert [e["code"] for e in json.loads(refused.stdout)["errors"]] == ["role.not_allowed"]
    # An Admin changes Members only.
    owner_id = json.loads(run("members", *ORG, "--format", "json").stdout)[0]["id"]
    for args in (("edit", str(owner_id), "--name", "X"), ("deactivate", str(owner_id))):
        result = run("member", *args, *ORG, "--as", ADMIN)
        assert result.exit_code == 1 and "only the Owner may change" in one_line_error(result)
    # Someone who is not an active Owner or Admin may do nothing.
    pending = add(run, "--name", "Pat", "--email", "pat@x.example", "--role", "Admin")["member"]["id"]
    for actor, why in (("nobody@x.example", "is not a member"), ("pat@x.example", "has not activated"),
                       ("mo@x.example", "is a Member")):  # fmt: skip
        result = run("member", "deactivate", str(pending), *ORG, "--as", actor)
        assert result.exit_code == 1 and why in one_line_error(result)
        result = run(
            "member", "add", *ORG, "--as", actor, "--name", "Z", "--email", "z@x.example", "--role", "Member"
        )
        assert result.exit_code == 1 and why in one_line_error(result)


def test_the_last_active_owner_stays(run: Run) -> None:
    owner_id = str(json.loads(run("members", *ORG, "--format", "json").stdout)[0]["id"])
    for args in (("deactivate", owner_id), ("edit", owner_id, "--role", "Admin")):
        result = run("member", *args, *ORG, *AS_OWNER)
        assert result.exit_code == 1
        assert "is the last active Owner of Acme Corp" in one_line_error(result)
    removed = run("member", "remove", owner_id, *ORG, *AS_OWNER)
    assert removed.exit_code == 1 and "only a pending member can be removed" in one_line_error(removed)
    nobody = run("member", "edit", "9999", *ORG, *AS_OWNER, "--name", "X")
    assert nobody.exit_code == 1
    assert one_line_error(nobody) == (
        "Error: no member 9999 in Acme Corp (`importer members --org ORG` lists them)."
    )


def test_edit_deactivate_reactivate_remove(run: Run, db_url: str) -> None:
    member = add(run, "--name", "Ann", "--email", "ann@x.example", "--role", "Member", "--team", "Sales")[
        "member"
    ]
    ann = str(member["id"])
    edited = run(
        "member", "edit", ann, *ORG, *AS_OWNER, "--name", "Ann Lee", "--role", "Admin", "--team", "", "--json"
    )
    assert edited.exit_code == 0
    view = json.loads(edited.stdout)
    assert sorted(view["changed"]) == ["name", "role", "team"]
    assert (view["member"]["name"], view["member"]["role"], view["member"]["team"]) == (
        "Ann Lee",
        "Admin",
        None,
    )
    bad = run("member", "edit", ann, *ORG, *AS_OWNER, "--email", "ann@", "--json")
    assert bad.exit_code == 3 and [e["code"] for e in json.loads(bad.stdout)["errors"]] == ["email.invalid"]
    assert run("member", "edit", ann, *ORG, *AS_OWNER, "--name", "Ann Lee").output.startswith(
        "Nothing to change"
    )

    deactivated = run("member", "deactivate", ann, *ORG, *AS_OWNER)
    assert deactivated.exit_code == 0 and deactivated.output.startswith(f"Deactivated member {ann}: Ann Lee")
    again = run("member", "deactivate", ann, *ORG, *AS_OWNER)
    assert again.exit_code == 1 and "already deactivated" in one_line_error(again)
    listed = json.loads(run("members", *ORG, "--status", "deactivated", "--format", "json").stdout)
    assert [m["id"] for m in listed] == [int(ann)]
    back = json.loads(run("member", "reactivate", ann, *ORG, *AS_OWNER, "--json").stdout)
    assert back["status"] == "pending"  # never activated: pending again

    active = add(run, "--name", "Bo", "--email", "bo@x.example", "--role", "Member")["member"]["id"]
    activate(db_url, active)
    refused = run("member", "edit", str(active), *ORG, *AS_OWNER, "--email", "bo2@x.example")
    assert refused.exit_code == 1 and "only a pending member's address can change" in one_line_error(refused)
    refused = run("member", "remove", str(active), *ORG, *AS_OWNER)
    assert refused.exit_code == 1 and "deactivate an active member instead" in one_line_error(refused)

    assert run("member", "remove", ann, *ORG, *AS_OWNER).exit_code == 0
    assert int(ann) not in [m["id"] for m in json.loads(run("members", *ORG, "--format", "json").stdout)]


def test_resend_sends_one_member_a_new_link_and_the_old_one_dies(run: Run, db_url: str) -> None:
    ann = str(add(run, "--name", "Ann", "--email", "ann@x.example", "--role", "Member")["member"]["id"])
    add(run, "--name", "Bo", "--email", "bo@x.example", "--role", "Member")
    assert run("send-activations", *ORG, *SEND, "--outbox", "first").exit_code == 0
    first = _tokens_in(Path("first"))
    assert set(first) == {"ann@x.example", "bo@x.example"}

    resent = run("member", "resend", ann, *ORG, *AS_OWNER, *SEND, "--outbox", "second")
    assert resent.exit_code == 0, resent.output
    assert (
        resent.output.strip()
        == "Sent a new invitation to ann@x.example to second/; the old link no longer works."
    )
    second = _tokens_in(Path("second"))
    assert set(second) == {"ann@x.example"}  # only her
    engine = open_database(db_url)
    with pytest.raises(ActivationError):
        check_token(engine, first["ann@x.example"])
    assert check_token(engine, second["ann@x.example"]).email == "ann@x.example"
    assert check_token(engine, first["bo@x.example"]).email == "bo@x.example"  # Bo's still works
    engine.dispose()

    usage = run("member", "resend", ann, *ORG, *AS_OWNER)
    assert usage.exit_code == 2 and "--from" in one_line_error(usage)
    desk = json.loads(run("member", "add", *ORG, *AS_OWNER, "--name", "Desk", "--no-portal", "--json").stdout)
    refused = run("member", "resend", str(desk["member"]["id"]), *ORG, *AS_OWNER, *SEND)
    assert refused.exit_code == 1 and "never emailed" in one_line_error(refused)
    owner_id = json.loads(run("members", *ORG, "--format", "json").stdout)[0]["id"]
    refused = run("member", "resend", str(owner_id), *ORG, *AS_OWNER, *SEND)
    assert refused.exit_code == 1 and "is active" in one_line_error(refused)
    actions = [e["action"] for e in json.loads(run("audit", *ORG, "--json").stdout)]
    assert actions.count("invitation.resent") == 1


# --- teams -----------------------------------------------------------------------------------


def test_team_list_rename_delete(run: Run) -> None:
    add(run, "--name", "Ann", "--email", "ann@x.example", "--role", "Member", "--team", "Sales")
    add(run, "--name", "Bo", "--email", "bo@x.example", "--role", "Member", "--team", "sales")
    listed = json.loads(run("team", "list", *ORG, "--json").stdout)
    assert [(t["name"], t["members"]) for t in listed] == [("Sales", 2), ("Support", 0)]
    human = run("team", "list", *ORG).output.splitlines()
    assert human[0].split() == ["id", "name", "members"] and human[1].split()[1:] == ["Sales", "2"]

    renamed = run("team", "rename", *ORG, *AS_OWNER, "sales", "Field Sales")
    assert (
        renamed.exit_code == 0
        and renamed.output.strip() == "Renamed team 'sales' to 'Field Sales' (2 member(s))."
    )
    clash = run("team", "rename", *ORG, *AS_OWNER, "Field Sales", "SUPPORT")
    assert clash.exit_code == 1 and "already has a team 'SUPPORT'" in one_line_error(clash)
    unknown = run("team", "delete", *ORG, *AS_OWNER, "Nope")
    assert unknown.exit_code == 1
    assert (
        one_line_error(unknown)
        == "Error: Acme Corp has no team 'Nope' (`importer team list --org ORG` lists them)."
    )
    nobody = run("team", "delete", *ORG, "--as", "nobody@x.example", "Support")
    assert nobody.exit_code == 1

    deleted = run("team", "delete", *ORG, *AS_OWNER, "field sales")
    assert deleted.exit_code == 0 and "2 member(s) now have no team" in deleted.output
    assert [t["name"] for t in json.loads(run("team", "list", *ORG, "--json").stdout)] == ["Support"]
    members = json.loads(run("members", *ORG, "--format", "json").stdout)
    assert [m["team"] for m in members] == [None, None, None]


# --- members: filters and pages --------------------------------------------------------------


def test_pages_list_every_member_exactly_once_while_members_are_added(run: Run, tmp_path: Path) -> None:
    rows = [f"Person {i:02},p{i:02}@x.example,Member,{'Sales' if i % 2 else ''}" for i in range(23)]
    sheet = write(tmp_path, "many.csv", "Name,Email,Role,Team", *rows)
    assert run("import", sheet, *ORG, *AS_OWNER, "--type", "portal").exit_code == 0
    seen: list[int] = []
    after: tuple[str, ...] = ()
    added = 0
    while True:
        page = run("members", *ORG, "--limit", "5", *after, "--format", "json")
        assert page.exit_code == 0, page.output
        body = json.loads(page.stdout)
        assert list(body) == ["members", "next"]
        assert all(list(m) == [*MEMBER_KEYS, "activated_at", "deactivated_at"] for m in body["members"])
        seen += [m["id"] for m in body["members"]]
        if added < 3:  # someone adds a member while the pages are read
            add(run, "--name", f"Late {added}", "--email", f"late{added}@x.example", "--role", "Member")
            added += 1
        if body["next"] is None:
            break
        after = ("--after", body["next"])
    everyone = [m["id"] for m in json.loads(run("members", *ORG, "--format", "json").stdout)]
    assert len(everyone) == 1 + 23 + 3
    assert seen == everyone  # every member once, in order, the late ones included
    owner = json.loads(run("members", *ORG, "--limit", "1", "--format", "json").stdout)["members"][0]
    assert owner["activated_at"] is not None

    table = run("members", *ORG, "--limit", "2")
    assert table.stdout.splitlines()[0].split()[-1] == "activated_at"
    assert table.stderr.startswith("More: --after ")


def test_members_filters(run: Run, tmp_path: Path) -> None:
    sheet = write(tmp_path, "p.csv", "Name,Email,Role,Team", "Ann Lee,ann@x.example,Member,Sales",
                  "Bo Diddley,bo@y.example,Member,Support", "Cy,cy@x.example,Admin,Sales")  # fmt: skip
    batch = json.loads(run("import", sheet, *ORG, *AS_OWNER, "--type", "portal", "--json").stdout)["batch_id"]
    add(run, "--name", "Dee", "--email", "dee@x.example", "--role", "Member", "--team", "Sales")

    def names(*args: str) -> list[str]:
        result = run("members", *ORG, *args, "--format", "json")
        assert result.exit_code == 0, result.output
        return [m["name"] for m in json.loads(result.stdout)]

    assert names("--team", "sales") == ["Ann Lee", "Cy", "Dee"]
    assert names("--batch", batch) == ["Ann Lee", "Bo Diddley", "Cy"]
    assert names("--search", "LEE") == ["Ann Lee"]
    assert names("--search", "@y.exa") == ["Bo Diddley"]
    assert names("--team", "Sales", "--batch", batch, "--search", "c") == ["Cy"]
    assert names("--search", "%") == []  # a wildcard is a character
    unknown = run("members", *ORG, "--team", "Nope")
    assert unknown.exit_code == 1 and "has no team 'Nope'" in one_line_error(unknown)
    cursor = run("members", *ORG, "--limit", "2", "--after", "garbage")
    assert cursor.exit_code == 1 and "is not a cursor" in one_line_error(cursor)
    alone = run("members", *ORG, "--after", "bTE6Mg")
    assert alone.exit_code == 2 and "give --limit too" in one_line_error(alone)
    assert run("members", *ORG, "--limit", "0").exit_code == 2


# --- audit -----------------------------------------------------------------------------------


def test_the_audit_trail_of_a_cli_session_names_the_actor_and_holds_no_secret(
    run: Run, admin_id: int
) -> None:
    ann = str(
        add(run, "--name", "Ann", "--email", "ann@x.example", "--role", "Member", actor=ADMIN)["member"]["id"]
    )
    assert run("member", "edit", ann, *ORG, "--as", ADMIN, "--team", "Sales").exit_code == 0
    assert run("send-activations", *ORG, *SEND).exit_code == 0
    assert run("member", "resend", ann, *ORG, *AS_OWNER, *SEND).exit_code == 0
    tokens = _tokens_in(Path("outbox"))
    desk = run("member", "add", *ORG, *AS_OWNER, "--name", "Desk", "--no-portal")
    pin = desk.output.split("PIN: ")[1].split()[0]
    desk_id = str(json.loads(run("members", *ORG, "--search", "desk", "--format", "json").stdout)[0]["id"])
    new_pin = json.loads(run("member", "pin", desk_id, *ORG, *AS_OWNER, "--json").stdout)["pin"]
    assert run("member", "deactivate", ann, *ORG, *AS_OWNER).exit_code == 0
    assert run("member", "reactivate", ann, *ORG, *AS_OWNER).exit_code == 0
    assert run("team", "rename", *ORG, *AS_OWNER, "Support", "Help").exit_code == 0
    assert run("team", "delete", *ORG, *AS_OWNER, "Help").exit_code == 0
    assert run("member", "remove", desk_id, *ORG, *AS_OWNER).exit_code == 0

    result = run("audit", *ORG, "--json")
    assert result.exit_code == 0
    events = json.loads(result.stdout)
    assert all(list(e) == ["at", "actor", "organization", "action", "subject", "detail"] for e in events)
    assert all(e["organization"] == "Acme Corp" for e in events)
    mine = [(e["actor"], e["action"], e["subject"]) for e in events if e["actor"].startswith("cli:")]
    assert (
        mine
        == [
            (f"cli:{OWNER}", "member.removed", "Desk"),
            (f"cli:{OWNER}", "team.deleted", "Help"),
            (f"cli:{OWNER}", "team.renamed", "Help"),
            (f"cli:{OWNER}", "member.reactivated", "ann@x.example"),
            (f"cli:{OWNER}", "member.deactivated", "ann@x.example"),
            (f"cli:{OWNER}", "pin.regenerated", "Desk"),
            (f"cli:{OWNER}", "member.added", "Desk"),
            (f"cli:{OWNER}", "invitation.resent", "ann@x.example"),
            ("cli:", "invitation.sent", "ann@x.example"),  # send-activations without --as
            (f"cli:{ADMIN}", "member.edited", "ann@x.example"),
            (f"cli:{ADMIN}", "member.added", "ann@x.example"),
            (f"cli:{OWNER}", "member.added", ADMIN),
            *mine[-1:],  # org create's link for the Owner (checked by tests/activation/test_invitations.py)
        ]
    )
    assert mine[-1][1] == "invitation.sent" and mine[-1][2] == OWNER
    times = [e["at"] for e in events]
    assert times == sorted(times, reverse=True)  # newest first
    text = result.stdout + run("audit", *ORG).stdout
    for secret in (pin, new_pin, PASSWORD, *tokens.values()):
        assert secret not in text

    by_admin = json.loads(run("audit", *ORG, "--actor", ADMIN.upper(), "--json").stdout)
    assert {e["actor"] for e in by_admin} >= {f"cli:{ADMIN}"}
    assert {e["actor"].removeprefix("cli:") for e in by_admin} == {ADMIN}
    assert json.loads(run("audit", *ORG, "--since", "2999-01-01", "--json").stdout) == []
    assert len(json.loads(run("audit", *ORG, "--since", "2000-01-01T00:00Z", "--json").stdout)) == len(events)
    bad = run("audit", *ORG, "--since", "yesterday")
    assert bad.exit_code == 2 and "is not an ISO date" in one_line_error(bad)


# --- batch undo ------------------------------------------------------------------------------


def _batch(run: Run, tmp_path: Path) -> str:
    sheet = write(tmp_path, "b.csv", "Name,Email,Role", "Ann,ann@x.example,Member", "Bo,bo@x.example,Member")
    result = run("import", sheet, *ORG, *AS_OWNER, "--type", "portal", "--json")
    assert result.exit_code == 0
    return str(json.loads(result.stdout)["batch_id"])


def _count(run: Run) -> int:
    return len(json.loads(run("members", *ORG, "--format", "json").stdout))


def test_batch_undo_without_a_terminal_needs_yes_and_an_owner_or_admin(run: Run, tmp_path: Path) -> None:
    batch = _batch(run, tmp_path)
    asked = run("batch", "undo", batch, *AS_OWNER)  # CliRunner's stdin is not a terminal
    assert asked.exit_code == 2 and "add --yes" in one_line_error(asked)
    missing = run("batch", "undo", batch, "--yes")
    assert missing.exit_code == 2 and "--as" in one_line_error(missing)
    nobody = run("batch", "undo", batch, "--as", "nobody@x.example", "--yes")
    assert nobody.exit_code == 1 and "is not a member of Acme Corp" in one_line_error(nobody)
    assert _count(run) == 3

    done = run("batch", "undo", batch, *AS_OWNER, "--yes", "--json")
    assert done.exit_code == 0
    assert json.loads(done.stdout) == {"batch_id": batch, "removed": 2, "kept_active": []}
    assert _count(run) == 1
    (event,) = [e for e in json.loads(run("audit", *ORG, "--json").stdout) if e["action"] == "undo"]
    assert (event["actor"], event["subject"], event["detail"]) == (
        f"cli:{OWNER}", batch, "removed 2 pending member(s)",
    )  # fmt: skip


def test_batch_undo_asks_on_a_terminal(run: Run, tmp_path: Path, db_url: str) -> None:
    batch = _batch(run, tmp_path)
    terminal = Terminal(["--db", db_url, "batch", "undo", batch, *AS_OWNER], tmp_path)
    shown = terminal.read_until("[y/N]")
    assert f"Remove the 2 pending member(s) of batch {batch} (b.csv, Acme Corp)" in shown
    terminal.type("n")
    assert terminal.finish() == 1 and "Nothing was undone." in terminal.shown
    assert _count(run) == 3

    terminal = Terminal(["--db", db_url, "batch", "undo", batch, *AS_OWNER], tmp_path)
    terminal.read_until("[y/N]")
    terminal.type("y")
    assert terminal.finish() == 0, terminal.shown
    assert f"Batch {batch}: removed 2 pending member(s)." in terminal.shown
    assert _count(run) == 1


def test_the_page_limit_spelt_for_a_light_start_matches_the_library() -> None:
    from importer.accounts.listing import MAX_PAGE
    from importer.cli import orgs

    assert orgs.MAX_PAGE == MAX_PAGE
