"""End-to-end imports through the library entry point, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import csv
import json
import re
import stat
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy.exc
from click.testing import CliRunner, Result
from openpyxl import load_workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from importer.checks.pins import verify_pin
from importer.cli import cli
from importer.errors import (
    FileLevelError,
    MissingColumnsError,
    NotFoundError,
    PermissionDeniedError,
    WrongSheetTypeError,
)
from importer.reports.samples import write_template
from importer.settings import Settings
from importer.sheets import load_sheet
from importer.store.engine import parents_checked_by_writer
from importer.store.models import Batch, Member
from importer.store.orgs import create_organization, list_members
from importer.values import ErrorCode, Outcome, Remedy, Role, Status, UserType

from .conftest import SUMMARY_KEYS, Org, do_import, errors_of


def member_count(org: Org) -> int:
    with Session(org.engine) as session:
        return session.scalar(select(func.count()).select_from(Member)) or 0


def test_every_portal_error_code_on_the_row_the_user_sees(org: Org, data_dir: Path, tmp_path: Path) -> None:
    result = do_import(org, data_dir / "portal-every-error.csv", tmp_path)

    assert errors_of(result) == [
        (3, "Name", "name.missing"),
        (4, "Name", "name.too_long"),
        (5, "Name", "name.invalid"),
        (6, "Email", "email.missing"),
        (7, "Email", "email.invalid"),
        (8, "Email", "email.duplicate_in_file"),
        (9, "Email", "email.duplicate_in_file"),
        (10, "Role", "role.missing"),
        (11, "Role", "role.invalid"),
        (12, "Role", "role.not_allowed"),
        (13, "Team", "team.unknown"),
    ]
    assert (result.rows, result.created, result.rejected) == (12, 1, 11)
    messages = {e.code: e.message for e in result.errors}
    assert "limit is 100" in messages[ErrorCode.NAME_TOO_LONG]
    assert "line break" in messages[ErrorCode.NAME_INVALID]
    assert 'Did you mean "Admin"?' in messages[ErrorCode.ROLE_INVALID]
    assert "Nobody can be invited as Owner" in messages[ErrorCode.ROLE_NOT_ALLOWED]
    assert 'Did you mean "Sales"?' in messages[ErrorCode.TEAM_UNKNOWN]
    assert result.exit_code == 3


def test_every_no_portal_error_code(org: Org, data_dir: Path, tmp_path: Path) -> None:
    result = do_import(org, data_dir / "no-portal-every-error.csv", tmp_path, user_type=UserType.NO_PORTAL)

    assert errors_of(result) == [
        (3, "Name", "name.missing"),
        (4, "PIN", "pin.invalid"),
        (5, "PIN", "pin.invalid"),
        (6, "Name", "member.duplicate_in_file"),
        (7, "Name", "member.duplicate_in_file"),
        (8, "Team", "team.unknown"),
    ]
    by_row = {e.row_number: e for e in result.errors}
    assert "leading zeros" in by_row[5].message
    assert "also on row 7" in by_row[6].message and "also on row 6" in by_row[7].message
    # PINs never appear in errors, even invalid ones
    assert "12a4" not in by_row[4].message and by_row[4].value == "••••"


def test_duplicates_reject_every_copy_naming_the_others(org: Org, write_csv, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_csv(
        "dups.csv",
        "Name,Email,Role,Team",
        "A,same@example.com,Member,",
        "B,other@example.com,Member,",
        "C,SAME@example.com,Member,",
        "D,same@example.com,Member,",
    )
    result = do_import(org, path, tmp_path)

    assert [(e.row_number, e.code.value) for e in result.errors] == [
        (2, "email.duplicate_in_file"),
        (4, "email.duplicate_in_file"),
        (5, "email.duplicate_in_file"),
    ]
    assert "row 4 and 5" in result.errors[0].message.replace(", ", " and ")
    assert "row 2 and 5" in result.errors[1].message.replace(", ", " and ")
    assert result.created == 1
    assert [m.email for m in list_members(org.engine, org.name) if m.role != "Owner"] == ["other@example.com"]


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 1000])
def test_duplicates_and_row_numbers_are_exact_across_chunks(
    org: Org,
    write_csv,
    tmp_path: Path,
    chunk_rows: int,  # type: ignore[no-untyped-def]
) -> None:
    path = write_csv(
        "chunks.csv",
        "Name,Email,Role,Team",
        "A,a@example.com,Member,",
        "B,dup@example.com,Member,",
        "",
        "C,c@example.com,Member,",
        "D,d@example.com,Member,",
        "E,DUP@example.com,Member,",
        "F,bad@,Member,",
    )
    settings = Settings(report_dir=tmp_path / "reports", chunk_rows=chunk_rows)
    result = do_import(org, path, tmp_path, settings=settings)

    assert errors_of(result) == [
        (3, "Email", "email.duplicate_in_file"),
        (7, "Email", "email.duplicate_in_file"),
        (8, "Email", "email.invalid"),
    ]
    assert [r.row_number for r in result.rejected_rows] == [3, 7, 8]
    assert [r.values[1] for r in result.rejected_rows] == ["dup@example.com", "DUP@example.com", "bad@"]
    assert result.created == 3
    emails = sorted(m.email for m in list_members(org.engine, org.name) if m.role != "Owner")
    assert emails == ["a@example.com", "c@example.com", "d@example.com"]


def test_uploading_the_same_file_twice_creates_nothing_twice(
    org: Org, data_dir: Path, tmp_path: Path
) -> None:
    first = do_import(org, data_dir / "portal-every-error.csv", tmp_path)
    second = do_import(org, data_dir / "portal-every-error.csv", tmp_path)

    assert first.created == 1 and second.created == 0
    assert [(s.row_number, s.code.value) for s in second.skipped] == [(2, "member.exists")]
    assert member_count(org) == 2  # the Owner and Ada


def test_existing_member_is_matched_case_insensitively(org: Org, write_csv, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("owner.csv", "Name,Email,Role", "Olive,OLIVE.OWNER@acme.example,Member")
    result = do_import(org, path, tmp_path)
    assert (result.created, len(result.skipped), result.rejected) == (0, 1, 0)
    assert result.exit_code == 0


def test_dry_run_reports_like_a_real_run_and_writes_nothing(org: Org, data_dir: Path, tmp_path: Path) -> None:
    dry = do_import(org, data_dir / "portal-every-error.csv", tmp_path, dry_run=True)
    assert member_count(org) == 1
    real = do_import(org, data_dir / "portal-every-error.csv", tmp_path)

    assert (dry.rows, dry.created, dry.rejected, errors_of(dry)) == (
        real.rows,
        real.created,
        real.rejected,
        errors_of(real),
    )
    assert dry.outcome is Outcome.DRY_RUN and dry.to_dict()["dry_run"] is True
    assert (dry.report_dir / "report.html").exists()  # type: ignore[operator]
    with Session(org.engine) as session:
        outcomes = {b.id: (b.outcome, b.dry_run, b.created) for b in session.scalars(select(Batch))}
    assert outcomes[dry.batch_id] == ("dry_run", True, 1)


def test_all_or_nothing_writes_nothing_when_a_row_is_rejected(
    org: Org, data_dir: Path, tmp_path: Path
) -> None:
    result = do_import(org, data_dir / "portal-every-error.csv", tmp_path, all_or_nothing=True)

    assert result.outcome is Outcome.REFUSED
    assert (result.created, result.rejected, result.exit_code) == (0, 11, 1)
    assert member_count(org) == 1
    assert json.loads((result.report_dir / "summary.json").read_text())["created"] == 0  # type: ignore[operator]


def test_all_or_nothing_imports_a_clean_file(org: Org, write_csv, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("clean.csv", "Name,Email,Role", "A,a@example.com,Member", "B,b@example.com,Admin")
    result = do_import(org, path, tmp_path, all_or_nothing=True)
    assert (result.created, result.exit_code, member_count(org)) == (2, 0, 3)


def test_privileges_admin_invites_members_only(org: Org, write_csv, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    admin_file = write_csv("admin.csv", "Name,Email,Role", "Adam Admin,adam@example.com,Admin")
    do_import(org, admin_file, tmp_path)
    with Session(org.engine) as session, session.begin():
        adam = session.scalars(select(Member).where(Member.email == "adam@example.com")).one()
        # pending Admins may not import ...
        session.expunge(adam)
    with pytest.raises(PermissionDeniedError, match="not activated"):
        do_import(org, admin_file, tmp_path, actor="adam@example.com")
    with Session(org.engine) as session, session.begin():
        session.get(Member, adam.id).status = Status.ACTIVE  # type: ignore[union-attr]

    invite = write_csv("invite.csv", "Name,Email,Role", "M,m@example.com,member", "A2,a2@example.com,Admin")
    result = do_import(org, invite, tmp_path, actor="ADAM@example.com")

    assert errors_of(result) == [(3, "Role", "role.not_allowed")]
    assert "Only an Owner can invite Admins" in result.errors[0].message
    assert result.created == 1


def test_members_and_strangers_may_not_import(org: Org, write_csv, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("m.csv", "Name,Email,Role", "Mia,mia@example.com,Member")
    do_import(org, path, tmp_path)
    with Session(org.engine) as session, session.begin():
        session.scalars(select(Member).where(Member.email == "mia@example.com")).one().status = Status.ACTIVE

    with pytest.raises(PermissionDeniedError, match="is a Member"):
        do_import(org, path, tmp_path, actor="mia@example.com")
    with pytest.raises(PermissionDeniedError, match="not a member"):
        do_import(org, path, tmp_path, actor="stranger@example.com")
    create_organization(org.engine, "Other Org", owner_email="boss@other.example", owner_name="Boss")
    with pytest.raises(PermissionDeniedError, match="not a member of Acme Corp"):
        do_import(org, path, tmp_path, actor="boss@other.example")


def test_fix_and_reupload_rejected_csv(org: Org, data_dir: Path, tmp_path: Path) -> None:
    first = do_import(org, data_dir / "portal-every-error.csv", tmp_path)
    rejected = first.report_dir / "rejected.csv"  # type: ignore[operator]
    with rejected.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Name", "Email", "Role", "Team", "Errors"]
    assert len(rows) == 1 + 11

    fixed = [rows[0]]
    for number, (name, email, _role, team, errors) in enumerate(rows[1:], start=1):
        assert errors, "every rejected row says why"
        fixed.append(
            [
                (name or "Fixed Name")[:50].replace("\n", " "),
                email
                if "@" in email and "@@" not in email and "dup" not in email.lower()
                else f"fixed{number}@example.com",
                "Member",
                "Sales" if team else "",
                errors,  # left in place: the Errors column is ignored
            ]
        )
    fixed_path = tmp_path / "fixed.csv"
    with fixed_path.open("w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f).writerows(fixed)

    second = do_import(org, fixed_path, tmp_path)
    assert (second.created, second.rejected, second.exit_code) == (11, 0, 0)
    assert member_count(org) == 13


def test_no_portal_pins_generated_hashed_and_written_once(org: Org, tmp_path: Path, write_csv) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("phones.csv", "Name,Team,PIN", "Desk,Support,0042", "Lobby,,", "Lab,Engineering,")
    result = do_import(org, path, tmp_path, user_type=UserType.NO_PORTAL)

    assert (result.created, result.rejected) == (3, 0)
    pins_csv = result.report_dir / "pins.csv"  # type: ignore[operator]
    assert stat.S_IMODE(pins_csv.stat().st_mode) == 0o600
    with pins_csv.open(encoding="utf-8-sig") as f:
        generated = {row["name"]: row["pin"] for row in csv.DictReader(f)}
    assert set(generated) == {"Lobby", "Lab"}
    assert all(len(pin) == 6 and pin.isdigit() for pin in generated.values())
    with Session(org.engine) as session:
        phones = {m.name: m for m in session.scalars(select(Member).where(Member.email.is_(None)))}
    assert {m.role for m in phones.values()} == {Role.MEMBER}
    assert verify_pin(phones["Desk"].pin_hash or "", "0042")
    assert not verify_pin(phones["Desk"].pin_hash or "", "42")
    assert verify_pin(phones["Lobby"].pin_hash or "", generated["Lobby"])
    # nowhere else: not in the other report files, not in the members listing
    listing = json.dumps([m.to_dict() for m in list_members(org.engine, org.name)])
    for name in ("report.html", "errors.csv", "rejected.csv", "summary.json"):
        text = (result.report_dir / name).read_text(encoding="utf-8-sig")  # type: ignore[operator]
        assert all(pin not in text for pin in [*generated.values(), "0042"]), name
    assert all(pin not in listing for pin in [*generated.values(), "0042"])


def test_rejected_pin_left_out_of_reports_and_reupload_imports(org: Org, tmp_path: Path, write_csv) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("phones.csv", "Name,Team,PIN", "Desk,Nowhere,987654")
    result = do_import(org, path, tmp_path, user_type=UserType.NO_PORTAL)
    folder = result.report_dir
    assert folder is not None
    for name in ("report.html", "errors.csv", "rejected.csv"):
        assert "987654" not in (folder / name).read_text(encoding="utf-8-sig")
    rejected = (folder / "rejected.csv").read_text(encoding="utf-8-sig")
    assert "PIN left out of this report" in rejected
    fixed = tmp_path / "fixed.csv"
    fixed.write_text(rejected.replace("Nowhere", "Support"), encoding="utf-8")
    again = do_import(org, fixed, tmp_path, user_type=UserType.NO_PORTAL)
    assert (again.created, again.rejected) == (1, 0)


def test_formula_cells_neutralized_in_every_csv_and_kept_in_the_database(
    org: Org,
    tmp_path: Path,
    write_csv,  # type: ignore[no-untyped-def]
) -> None:
    path = write_csv(
        "evil.csv",
        "Name,Email,Role,Team",
        '"=HYPERLINK(""http://evil.example"",""x"")",evil@example.com,Member,',
        "+Plus,plus@example.com,Member,@SUM(A1)",
        "-Minus,not-an-email,Member,",
    )
    result = do_import(org, path, tmp_path)
    folder = result.report_dir
    assert folder is not None
    for name in ("rejected.csv", "errors.csv"):
        with (folder / name).open(encoding="utf-8-sig", newline="") as f:
            cells = [cell for row in csv.reader(f) for cell in row]
        assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r", "\n")], name
    rejected = (folder / "rejected.csv").read_text(encoding="utf-8-sig")
    assert "'-Minus" in rejected and "'@SUM(A1)" in rejected
    names = {m.name for m in list_members(org.engine, org.name)}
    assert '=HYPERLINK("http://evil.example","x")' in names  # stored exactly as given

    # the neutralized rejected.csv imports with the original values once fixed
    fixed = tmp_path / "fixed.csv"
    fixed.write_text(
        rejected.replace("not-an-email", "minus@example.com").replace("'@SUM(A1)", "Sales"), encoding="utf-8"
    )
    again = do_import(org, fixed, tmp_path)
    assert again.created == 2
    assert {"-Minus", "+Plus"} <= {m.name for m in list_members(org.engine, org.name)}


def test_report_html_escapes_markup_and_is_self_contained(org: Org, tmp_path: Path, write_csv) -> None:  # type: ignore[no-untyped-def]
    path = write_csv(
        "xss.csv",
        "Name,Email,Role,Team",
        '<script>alert(1)</script>,"<img src=x onerror=alert(2)>",Member,<b>Team</b>',
    )
    result = do_import(org, path, tmp_path)
    html = (result.report_dir / "report.html").read_text()  # type: ignore[operator]
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "<b>Team</b>" not in html
    assert "http://" not in html and "https://" not in html and "<link" not in html
    assert 'class="bad"' in html


def test_report_files_and_summary_match_the_result(org: Org, data_dir: Path, tmp_path: Path) -> None:
    result = do_import(org, data_dir / "portal-every-error.csv", tmp_path)
    folder = result.report_dir
    assert folder is not None and folder.name == result.batch_id
    assert sorted(p.name for p in folder.iterdir()) == [
        "errors.csv",
        "rejected.csv",
        "rejected.xlsx",
        "report.html",
        "summary.json",
    ]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary == result.to_dict()
    assert set(summary) == SUMMARY_KEYS
    with (folder / "errors.csv").open(encoding="utf-8-sig", newline="") as f:
        lines = list(csv.DictReader(f))
    assert list(lines[0]) == ["row", "column", "value", "code", "message"]
    assert [(int(r["row"]), r["code"]) for r in lines] == [
        (e.row_number, e.code.value) for e in result.errors
    ]


def test_missing_required_column_is_a_file_level_error_that_writes_nothing(
    org: Org,
    tmp_path: Path,
    write_csv,  # type: ignore[no-untyped-def]
) -> None:
    path = write_csv("noemail.csv", "Name,Role", "A,Member")
    with pytest.raises(MissingColumnsError, match="Email"):
        do_import(org, path, tmp_path)
    assert member_count(org) == 1
    assert not (tmp_path / "reports").exists()


def test_a_crash_mid_batch_leaves_no_half_batch(org: Org, tmp_path: Path, write_csv, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("crash.csv", "Name,Email,Role", *[f"P{i},p{i}@example.com,Member" for i in range(10)])
    from importer import pipeline

    calls = {"n": 0}
    original = pipeline._Run.process

    def crash_on_second_chunk(self, chunk):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, chunk)

    monkeypatch.setattr(pipeline._Run, "process", crash_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        do_import(org, path, tmp_path, settings=replace(Settings(report_dir=tmp_path / "r"), chunk_rows=4))
    assert member_count(org) == 1
    with Session(org.engine) as session:
        assert session.scalar(select(func.count()).select_from(Batch)) == 0
    monkeypatch.undo()
    assert do_import(org, path, tmp_path).created == 10


@pytest.mark.parametrize(
    ("email", "role", "team", "expected"),
    [
        ("a@example.com", "Admn", "", 'Did you mean "Admin"?'),
        ("a@example.com", "membr", "", 'Did you mean "Member"?'),
        ("a@example.com", "Member", "suport", 'Did you mean "Support"?'),
        ("a@hotmial", "Member", "", 'Did you mean "a@hotmail.com"?'),
        ("a@gmailcom", "Member", "", 'Did you mean "a@gmail.com"?'),
    ],
)
def test_suggestions_are_part_of_the_message_never_applied(
    org: Org,
    tmp_path: Path,
    write_csv,  # type: ignore[no-untyped-def]
    email: str,
    role: str,
    team: str,
    expected: str,
) -> None:
    result = do_import(org, write_csv("s.csv", "Name,Email,Role,Team", f"A,{email},{role},{team}"), tmp_path)
    assert result.rejected == 1 and member_count(org) == 1
    assert expected in result.errors[0].message


@pytest.mark.parametrize("email", ["grace.hopper@@acme", "a@acme", "b@@gmial.com"])
def test_no_suggestion_that_is_a_guess_or_still_invalid(
    org: Org,
    tmp_path: Path,
    write_csv,  # type: ignore[no-untyped-def]
    email: str,
) -> None:
    # "acme" is not a mistyped "me.com", and an address with two "@" is not fixed by any domain.
    result = do_import(org, write_csv("s.csv", "Name,Email,Role", f"A,{email},Member"), tmp_path)
    assert result.rejected == 1
    assert "Did you mean" not in result.errors[0].message, result.errors[0].message


def test_valid_address_at_a_mistyped_provider_is_imported_with_a_warning(
    org: Org,
    tmp_path: Path,
    write_csv,  # type: ignore[no-untyped-def]
) -> None:
    result = do_import(
        org, write_csv("s.csv", "Name,Email,Role", "A,ann@gmial.com,Member", "B,b@mail.com,Member"), tmp_path
    )
    assert (result.created, result.rejected) == (2, 0)
    typo_warnings = [w for w in result.warnings if "Did you mean" in w]
    assert typo_warnings == [
        'Row 2: ann@gmial.com was accepted. Did you mean "ann@gmail.com"? If it is a typo, undo this batch, '
        "fix the sheet and import it again."
    ]
    assert "ann@gmial.com" in {m.email for m in list_members(org.engine, org.name)}  # never changed

    # No "was accepted" for an address that was not: already a member, or a duplicate whose first
    # copy was written in an earlier chunk and taken back at the end.
    again = do_import(
        org,
        write_csv(
            "t.csv",
            "Name,Email,Role",
            "A,ann@gmial.com,Member",
            "C,cy@gmial.com,Member",
            *[f"P{i},p{i}@example.com,Member" for i in range(4)],
            "C,cy@gmial.com,Member",
            "D,dee@yaho.com,Member",
        ),
        tmp_path,
        settings=replace(Settings(report_dir=tmp_path / "r"), chunk_rows=3),
    )
    assert (again.created, len(again.skipped), again.rejected) == (5, 1, 2)
    assert [w.split(" was accepted")[0] for w in again.warnings if "Did you mean" in w] == [
        "Row 9: dee@yaho.com"
    ]


@pytest.mark.parametrize("pin", ["١٢٣٤", "０１２３", "12 34", "123456789", "12.5"])
def test_pins_are_ascii_digits_only(org: Org, tmp_path: Path, write_csv, pin: str) -> None:  # type: ignore[no-untyped-def]
    result = do_import(
        org, write_csv("p.csv", "Name,Team,PIN", f"Desk,,{pin}"), tmp_path, user_type=UserType.NO_PORTAL
    )
    assert errors_of(result) == [(2, "PIN", "pin.invalid")]
    assert pin not in result.errors[0].message


def test_parents_of_written_rows_are_checked_once_per_batch(  # type: ignore[no-untyped-def]
    org: Org, tmp_path: Path, write_csv, monkeypatch
) -> None:
    """On SQLite the bulk insert skips the per-row foreign-key look-ups; the batch's check stands in.

    A team can only vanish under a running import through its own connection (it holds the write
    lock), so the test deletes it there, as a stand-in for a bug: the import must refuse to commit.
    """
    path = write_csv(
        "teams.csv", "Name,Email,Role,Team", *[f"P{i},p{i}@example.com,Member,Sales" for i in range(6)]
    )
    from importer import pipeline

    original = pipeline._Run.process

    def team_vanishes(self, chunk):  # type: ignore[no-untyped-def]
        outcome = original(self, chunk)
        self.loader.conn.exec_driver_sql("DELETE FROM teams WHERE name = 'Sales'")
        return outcome

    monkeypatch.setattr(pipeline._Run, "process", team_vanishes)
    with pytest.raises(NotFoundError, match="disappeared while the import ran; nothing was written"):
        do_import(org, path, tmp_path)
    assert member_count(org) == 1  # the Owner
    with Session(org.engine) as session:
        assert session.scalar(select(func.count()).select_from(Batch)) == 0
    monkeypatch.undo()

    result = do_import(org, path, tmp_path)
    assert result.created == 6
    if org.engine.dialect.name == "sqlite":
        with org.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []


@pytest.mark.parametrize("fails", [False, True], ids=["ends", "fails"])
def test_foreign_keys_are_on_again_on_the_same_connection_after_a_bulk_write(org: Org, fails: bool) -> None:
    if org.engine.dialect.name != "sqlite":
        pytest.skip("only SQLite turns its per-row look-ups off")
    with org.engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        with contextlib.suppress(RuntimeError), parents_checked_by_writer(conn):
            conn.begin()
            conn.exec_driver_sql("INSERT INTO teams (organization_id, name, name_key) VALUES (999, 'X', 'x')")
            assert driver.execute("PRAGMA foreign_keys").fetchone() == (0,)
            if fails:
                raise RuntimeError("the import failed half-way")
            conn.commit()
        assert driver.execute("PRAGMA foreign_keys").fetchone() == (1,)
        assert not driver.in_transaction
        conn.rollback()  # SQLAlchemy's side of the transaction the block left (the import does this)
        insert = "INSERT INTO teams (organization_id, name, name_key) VALUES (998, 'Y', 'y')"
        with pytest.raises(sqlalchemy.exc.IntegrityError), conn.begin():  # enforced again here
            conn.exec_driver_sql(insert)


# --- what a newcomer meets first ---------------------------------------------------------------


def batch_count(org: Org) -> int:
    with Session(org.engine) as session:
        return session.scalar(select(func.count()).select_from(Batch)) or 0


def import_on_the_command_line(org: Org, path: Path, tmp_path: Path, *args: str) -> Result:
    url = org.engine.url.render_as_string(hide_password=False)
    reports = str(tmp_path / "reports")
    return CliRunner().invoke(
        cli,
        [
            "--db",
            url,
            "import",
            str(path),
            "--org",
            org.name,
            "--as",
            org.owner,
            "--report-dir",
            reports,
            *args,
        ],
    )


def filled_sample(path: Path, user_type: UserType, *rows: list[str]) -> Path:
    """The sample workbook as `importer template TYPE --format xlsx` writes it, filled in."""
    write_template(load_sheet(user_type), path, fmt="xlsx")
    book = load_workbook(path)
    for row in rows:
        book.worksheets[0].append(row)
    book.save(path)
    return path


@pytest.mark.parametrize(
    ("sheet_type", "imported_as", "says"),
    [
        (UserType.PORTAL, UserType.NO_PORTAL, "looks like a Portal Access sheet, not a No Portal Access"),
        (UserType.NO_PORTAL, UserType.PORTAL, "looks like a No Portal Access sheet: it has the column 'PIN'"),
    ],
)
def test_a_sheet_imported_as_the_other_type_is_refused_and_writes_nothing(
    org: Org, tmp_path: Path, sheet_type: UserType, imported_as: UserType, says: str
) -> None:
    rows = (
        [
            ["Ada Lovelace", "ada@example.com", "Member", "Sales"],
            ["Grace Hopper", "grace@example.org", "Admin"],
        ]
        if sheet_type is UserType.PORTAL
        else [["Lobby Phone", "Sales", "0042"], ["Front Desk", "", ""]]
    )
    path = filled_sample(tmp_path / "people.xlsx", sheet_type, *rows)
    with pytest.raises((WrongSheetTypeError, MissingColumnsError)) as caught:
        do_import(org, path, tmp_path, user_type=imported_as)
    assert caught.value.looks_like is sheet_type
    assert (caught.value.remedy, caught.value.remedy_arg) == (Remedy.IMPORT_AS_TYPE, sheet_type)
    assert says in str(caught.value)
    assert f"(type {sheet_type.value})" in str(caught.value)

    result = import_on_the_command_line(org, path, tmp_path, "--type", imported_as.value)
    assert result.exit_code == 1
    assert says in result.output and len(result.output.splitlines()) == 1
    assert (member_count(org), batch_count(org)) == (1, 0)  # the Owner alone, no batch
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("name", ["people.csv", "people.xlsx"])
def test_a_sheet_with_no_rows_below_the_header_is_refused_and_writes_nothing(
    org: Org, tmp_path: Path, name: str
) -> None:
    if name.endswith(".csv"):
        path = tmp_path / name
        path.write_text("Name,Email,Role,Team\n,,,\n", encoding="utf-8")
    else:
        path = filled_sample(tmp_path / name, UserType.PORTAL)  # the sample sheet as downloaded
    with pytest.raises(FileLevelError, match="has no rows below the header"):
        do_import(org, path, tmp_path, dry_run=True)

    result = import_on_the_command_line(org, path, tmp_path, "--type", "portal")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {name} has no rows below the header (row 1): nothing to import. "
        "Fill in one member per row below the header and upload it again.\n"
    )
    assert (member_count(org), batch_count(org)) == (1, 0)
    assert not (tmp_path / "reports").exists()


def test_report_html_says_how_many_of_the_rejected_rows_it_shows(org: Org, tmp_path: Path, write_csv) -> None:  # type: ignore[no-untyped-def]
    rows = [f"P{i},p{i}@example.com,Boss" for i in range(3_046)]
    result = do_import(org, write_csv("many.csv", "Name,Email,Role", *rows), tmp_path)
    assert result.rejected == 3_046
    html = (result.report_dir / "report.html").read_text(encoding="utf-8")  # type: ignore[operator]
    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    assert "Rejected rows (3,046)" in text
    assert (
        "Showing the first 2,000 of 3,046 rejected rows. All 3,046 are in rejected.csv and errors.csv "
        "beside this report."
    ) in text
    assert html.count('<tr id="row-') == 2_000
    # The filter's "All" counts the rows listed, and the script knows how many there are in all.
    assert re.search(r'data-code="" aria-pressed="true">All<span class="c">2,000</span>', html)
    assert 'data-total="3046"' in html


def test_a_cell_limit_above_the_csv_modules_own_is_honoured_on_the_command_line(
    org: Org, tmp_path: Path, write_csv
) -> None:  # type: ignore[no-untyped-def]
    # The csv module's cap (131,072 characters) is process-wide: the CLI raises it, not the library.
    path = write_csv("long.csv", "Name,Email,Role", f"{'x' * 150_000},long@example.com,Member")
    before = csv.field_size_limit()
    try:
        result = import_on_the_command_line(
            org, path, tmp_path, "--type", "portal", "--max-cell-chars", "200000", "--json"
        )
    finally:
        csv.field_size_limit(before)
    assert result.exit_code == 3, result.output
    assert json.loads(result.output)["errors_by_code"] == {"name.too_long": 1}


def test_run_import_as_a_library_leaves_process_wide_state_alone(org: Org, tmp_path: Path, write_csv) -> None:  # type: ignore[no-untyped-def]
    import csv as csv_module
    import gc

    gc.set_threshold(1234, 11, 12)
    csv_module.field_size_limit(4321)
    try:
        result = do_import(org, write_csv("s.csv", "Name,Email,Role", "A,a@example.com,Member"), tmp_path)
        assert result.created == 1
        assert (gc.get_threshold(), csv_module.field_size_limit()) == ((1234, 11, 12), 4321)
    finally:
        gc.set_threshold(700, 10, 10)
        csv_module.field_size_limit(131_072)
