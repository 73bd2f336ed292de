"""rejected.xlsx and the sample workbook, checked the way an admin meets them: in a spreadsheet."""

from __future__ import annotations

import csv
import dataclasses
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook, load_workbook
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import Engine

from importer.pipeline import run_import
from importer.reports import files as report
from importer.reports import workbook
from importer.reports.rejected import PIN_REMOVED
from importer.reports.samples import plain_rule, write_template
from importer.reports.workbook import write_rejected_xlsx
from importer.settings import Settings
from importer.sheets import error_codes_for, load_sheet
from importer.stamp import describe_template_stamp, read_template_stamp, template_stamp
from importer.store.engine import open_database
from importer.store.orgs import create_organization, create_teams, list_members
from importer.values import ImportResult, UserType

OWNER = "olive.owner@acme.example"
TEAMS = ["Sales", "Support", "Engineering", "Warehouse"]
ROOT = Path(__file__).parent.parent.parent

WriteCsv = Callable[..., Path]


@pytest.fixture
def acme(tmp_path: Path) -> Iterator[Engine]:
    """A fresh SQLite database with Acme Corp, its active Owner, and four teams."""
    engine = open_database(f"sqlite:///{tmp_path / 't.db'}")
    create_organization(engine, "Acme Corp", owner_email=OWNER, owner_name="Olive Owner")
    create_teams(engine, "Acme Corp", TEAMS)
    yield engine
    engine.dispose()


def do_import(
    engine: Engine, path: Path, tmp_path: Path, *, user_type: UserType = UserType.PORTAL
) -> ImportResult:
    return run_import(
        engine,
        path,
        org_ref="Acme Corp",
        actor_email=OWNER,
        user_type=user_type,
        settings=Settings(report_dir=tmp_path / "reports"),
    )


def rejected_xlsx(result: ImportResult, path: Path) -> Path:
    pins = {i for i, header in enumerate(result.headers) if header == "PIN"}
    write_rejected_xlsx(result, path, pin_columns=pins)
    return path


def data_cells(sheet: Worksheet) -> Iterator[tuple[int, str, Any]]:
    """(row, header, cell) of every data cell, by the header the admin sees."""
    headers = [c.value for c in sheet[1]]
    for row in sheet.iter_rows(min_row=2):
        for header, cell in zip(headers, row, strict=True):
            yield int(cell.row or 0), str(header), cell


def marked(sheet: Worksheet) -> set[tuple[int, str]]:
    return {(r, h) for r, h, c in data_cells(sheet) if c.fill.fill_type is not None}


def commented(sheet: Worksheet) -> set[tuple[int, str]]:
    return {(r, h) for r, h, c in data_cells(sheet) if c.comment is not None}


PORTAL_LINES = (
    "Name,Email,Role,Team,Notes",
    "Ada Lovelace,ada@example.com,Admin,Engineering,first day Monday",
    "Linus Torvalds,linus@example,Member,Engineering,",
    'Barbara Liskov,barbara@example.com,Admn,Sails,"=HYPERLINK(""http://evil.example"",""x"")"',
    ",radia@example.com,Member,Support,",
    "-Dash Person,dash@example,member,,@mention",
    "Grace Hopper,grace@example.com,Member,support,",
)
# The bad cells of rejected.xlsx (sheet row, header) and what the admin types to fix each.
FIXES = {
    (2, "Email"): "linus@example.com",
    (3, "Role"): "Admin",
    (3, "Team"): "Sales",
    (4, "Name"): "Radia Perlman",
    (5, "Email"): "dash@example.com",
}


def test_rejected_xlsx_marks_exactly_the_bad_cells(acme: Engine, write_csv: WriteCsv, tmp_path: Path) -> None:
    result = do_import(acme, write_csv("people.csv", *PORTAL_LINES), tmp_path)
    assert (result.created, result.rejected) == (2, 4)

    book = load_workbook(rejected_xlsx(result, tmp_path / "rejected.xlsx"))
    sheet = book.worksheets[0]

    assert [c.value for c in sheet[1]] == ["Name", "Email", "Role", "Team", "Notes", "Errors"]
    assert sheet.freeze_panes == "A2"
    assert all(c.font.b and c.fill.fill_type == "solid" for c in sheet[1])
    assert sheet["F1"].comment is not None and "ignored" in sheet["F1"].comment.text
    assert [[c.value for c in row] for row in sheet.iter_rows(min_row=2, max_col=5)] == [
        ["Linus Torvalds", "linus@example", "Member", "Engineering", None],
        ["Barbara Liskov", "barbara@example.com", "Admn", "Sails", '\'=HYPERLINK("http://evil.example","x")'],
        [None, "radia@example.com", "Member", "Support", None],
        ["'-Dash Person", "dash@example", "member", None, "'@mention"],
    ]
    assert marked(sheet) == commented(sheet) == set(FIXES)
    assert {c.fill.fgColor.rgb for _, _, c in data_cells(sheet) if c.fill.fill_type} == {"FFFFC7CE"}
    assert 'Did you mean "Sales"?' in sheet["D3"].comment.text
    assert 'Did you mean "Admin"?' in sheet["C3"].comment.text and "role.invalid" in sheet["C3"].comment.text
    assert "Name is empty" in sheet["A4"].comment.text
    assert sheet["F3"].value.startswith("Row 4: Role: ")
    assert "Team: There is no team" in sheet["F3"].value
    # Every value is text: nothing a spreadsheet could run as a formula.
    assert {c.data_type for _, _, c in data_cells(sheet) if c.value is not None} == {"s"}
    widths = {letter: sheet.column_dimensions[letter].width for letter in "ABCDEF"}
    # Excel stores a width with its cell padding: 100 characters are saved as 100.71.
    assert all(10 <= w <= 101 for w in widths.values()) and widths["F"] > widths["B"] > widths["C"]


def test_fixed_rejected_xlsx_imports_every_row_once(
    acme: Engine, write_csv: WriteCsv, tmp_path: Path
) -> None:
    original = write_csv("people.csv", *PORTAL_LINES)
    first = do_import(acme, original, tmp_path)
    book = load_workbook(rejected_xlsx(first, tmp_path / "rejected.xlsx"))
    sheet = book.worksheets[0]
    headers = [c.value for c in sheet[1]]
    for (row, header), value in FIXES.items():
        sheet.cell(row=row, column=headers.index(header) + 1, value=value)
    book.save(tmp_path / "fixed.xlsx")

    second = do_import(acme, tmp_path / "fixed.xlsx", tmp_path)

    assert (second.rows, second.created, len(second.skipped), second.rejected) == (4, 4, 0, 0)
    members = {m.email: (m.name, m.role, m.team) for m in list_members(acme, "Acme Corp")}
    assert members == {
        OWNER: ("Olive Owner", "Owner", None),
        "ada@example.com": ("Ada Lovelace", "Admin", "Engineering"),
        "grace@example.com": ("Grace Hopper", "Member", "Support"),
        "linus@example.com": ("Linus Torvalds", "Member", "Engineering"),
        "barbara@example.com": ("Barbara Liskov", "Admin", "Sales"),
        "radia@example.com": ("Radia Perlman", "Member", "Support"),
        "dash@example.com": ("-Dash Person", "Member", None),  # the guard apostrophe is gone again
    }

    # Uploading the fixed workbook again, or the whole original file fixed the same way: nobody twice.
    again = do_import(acme, tmp_path / "fixed.xlsx", tmp_path)
    fixed_original = write_csv(
        "people-fixed.csv",
        *[
            line.replace("linus@example,", "linus@example.com,")
            .replace("Admn,Sails", "Admin,Sales")
            .replace(",radia@", "Radia Perlman,radia@")
            .replace("dash@example,", "dash@example.com,")
            for line in PORTAL_LINES
        ],
    )
    whole = do_import(acme, fixed_original, tmp_path)
    assert (again.created, len(again.skipped), again.rejected) == (0, 4, 0)
    assert (whole.created, len(whole.skipped), whole.rejected) == (0, 6, 0)
    assert len(list_members(acme, "Acme Corp")) == 7


def test_unfixed_rejected_xlsx_reads_back_exactly_the_values_given(
    acme: Engine, write_csv: WriteCsv, tmp_path: Path
) -> None:
    """Formula guards, control characters and literal `_x0041_` survive the workbook unchanged."""
    path = tmp_path / "tricky.csv"
    path.write_text(
        "Name,Email,Role,Team\n"
        "Bell\x07Name,bell@example.com,Member,Sales\n"
        "Under_x0041_score,under@example,Member,\n"
        "=1+2,formula@example,+Admin,\n"
        'Line "Break",lb@example.com,Member,"@Sales"\n'
        # What XlsxWriter would write as raw rich-text XML if nobody wrapped it
        '<r><t>Rich</t></r>,rich@example,<r>Member</r>,"<r>x</r>&amp;</r>"\n',
        encoding="utf-8",
    )
    first = do_import(acme, path, tmp_path)
    again = do_import(acme, rejected_xlsx(first, tmp_path / "rejected.xlsx"), tmp_path)

    def seen(result: ImportResult) -> list[tuple[str, str, str, tuple[str, ...]]]:
        values = {r.row_number: r.values[:4] for r in result.rejected_rows}
        return [(e.column, e.code.value, e.value, values[e.row_number]) for e in result.errors]

    assert first.rejected == 5
    assert seen(again) == seen(first)
    assert again.rejected_rows[-1].values[:4] == (
        "<r><t>Rich</t></r>",
        "rich@example",
        "<r>Member</r>",
        "<r>x</r>&amp;</r>",
    )
    assert again.created == 0
    # Rejected again: one Errors column, today's, not the stale one beside it.
    sheet = load_workbook(rejected_xlsx(again, tmp_path / "again.xlsx")).worksheets[0]
    assert [c.value for c in sheet[1]] == ["Name", "Email", "Role", "Team", "Errors"]
    assert [c.value.split(":")[0] for c in sheet["E"][1:]] == ["Row 2", "Row 3", "Row 4", "Row 5", "Row 6"]


def test_no_portal_pins_are_blank_and_never_in_the_workbook(
    acme: Engine, write_csv: WriteCsv, tmp_path: Path
) -> None:
    path = write_csv(
        "phones.csv",
        "Name,Team,PIN",
        "Front Desk,Support,0042",
        "Phone,Sales,12a4",
        "Lobby,Nowhere,98765",
    )
    first = do_import(acme, path, tmp_path, user_type=UserType.NO_PORTAL)
    out = rejected_xlsx(first, tmp_path / "rejected.xlsx")
    book = load_workbook(out)
    sheet = book.worksheets[0]

    assert [[c.value for c in row] for row in sheet.iter_rows(min_row=2, max_col=3)] == [
        ["Phone", "Sales", None],
        ["Lobby", "Nowhere", None],
    ]
    assert marked(sheet) == commented(sheet) == {(2, "PIN"), (3, "Team")}
    assert "4–8 digits" in sheet["C2"].comment.text
    assert PIN_REMOVED in sheet["D3"].value
    with zipfile.ZipFile(out) as archive:
        everything = b"".join(archive.read(name) for name in archive.namelist())
    assert b"12a4" not in everything and b"98765" not in everything and b"0042" not in everything

    sheet["B3"] = "Support"
    book.save(tmp_path / "fixed.xlsx")
    second = do_import(acme, tmp_path / "fixed.xlsx", tmp_path, user_type=UserType.NO_PORTAL)
    assert (second.created, second.rejected) == (2, 0)
    assert [pin.name for pin in second.generated_pins] == ["Phone", "Lobby"]


# --- the sample workbook ----------------------------------------------------------------------


def validations(sheet: Worksheet) -> set[tuple[str, str | None, str | None, str]]:
    return {(v.type, v.formula1, v.formula2, str(v.sqref)) for v in sheet.data_validations.dataValidation}


def test_portal_template_has_role_and_team_dropdowns(tmp_path: Path) -> None:
    spec = load_sheet(UserType.PORTAL)
    path = write_template(spec, tmp_path / "t.xlsx", fmt="xlsx", teams=["Sales", "Support", "=Ops"])
    book = load_workbook(path)

    assert book.sheetnames == ["Portal Access", "Lists", "Instructions"]
    sheet = book["Portal Access"]
    assert [c.value for c in sheet[1]] == ["Name (required)", "Email (required)", "Role (required)", "Team"]
    assert sheet.freeze_panes == "A2"
    assert all(c.font.b and c.fill.fgColor.rgb == "001F4E79" for c in sheet[1])
    assert validations(sheet) == {
        ("list", '"Admin,Member"', None, "C2:C10001"),
        ("list", "'Lists'!$A$1:$A$3", None, "D2:D10001"),
    }
    assert book["Lists"].sheet_state == "hidden"
    assert [c.value for c in book["Lists"]["A"]] == ["Sales", "Support", "'=Ops"]

    plain = load_workbook(write_template(spec, tmp_path / "no-org.xlsx", fmt="xlsx"))
    assert plain.sheetnames == ["Portal Access", "Instructions"]
    assert validations(plain["Portal Access"]) == {("list", '"Admin,Member"', None, "C2:C10001")}


def test_no_portal_template_keeps_pins_as_text(tmp_path: Path) -> None:
    spec = load_sheet(UserType.NO_PORTAL)
    sheet = load_workbook(write_template(spec, tmp_path / "t.xlsx", fmt="xlsx")).worksheets[0]

    assert [c.value for c in sheet[1]] == ["Name (required)", "Team", "PIN"]
    assert {sheet.cell(row=r, column=3).number_format for r in range(2, 1002)} == {"@"}
    assert validations(sheet) == {("textLength", "4", "8", "C2:C10001")}


@pytest.mark.parametrize("user_type", list(UserType))
def test_instructions_and_stamp_come_from_schemas(tmp_path: Path, user_type: UserType) -> None:
    real = load_sheet(user_type)
    changed = dataclasses.replace(
        real,
        version=7,
        columns=(dataclasses.replace(real.columns[0], rule="`shorter` than before"), *real.columns[1:]),
    )
    path = write_template(changed, tmp_path / "t.xlsx", fmt="xlsx", teams=["Sales"])
    rows = [[c for c in row if c is not None] for row in load_workbook(path)["Instructions"].values]

    for column in changed.columns:
        assert [
            column.header,
            "yes" if column.required else "no",
            plain_rule(column),
            *([", ".join(e for e in column.examples if e)] if any(column.examples) else []),
            ", ".join(column.aliases),
            ", ".join(code.value for code in error_codes_for(column.kind)),
        ] in rows
    name_row = next(row for row in rows if row[:1] == ["Name"])
    assert name_row[:3] == ["Name", "yes", "Shorter than before."]
    assert ["Template version:", f"member-importer/{user_type.value}/v7"] in rows
    assert ["Teams:", "Sales"] in rows
    assert read_template_stamp(path) == f"member-importer/{user_type.value}/v7"
    assert read_template_stamp(
        ROOT / "sample_files" / f"{user_type.value}-users-sample.xlsx"
    ) == template_stamp(real)


# --- reading the stamp of an upload -------------------------------------------------------------

BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties">
<cp:keywords>member-importer/portal/v1 &lol2;</cp:keywords></cp:coreProperties>"""
EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/hostname">]>
<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties">
<cp:keywords>&e;</cp:keywords></cp:coreProperties>"""


def core(keywords: str) -> bytes:
    return (
        '<?xml version="1.0"?><cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/'
        f'2006/metadata/core-properties"><cp:keywords>{keywords}</cp:keywords></cp:coreProperties>'
    ).encode()


@pytest.mark.parametrize(
    ("name", "core_xml", "expected"),
    [
        ("ours.xlsx", core("member-importer/no-portal/v3"), "member-importer/no-portal/v3"),
        ("edited.xlsm", core("budget; member-importer/portal/v1; q3"), "member-importer/portal/v1"),
        ("foreign.xlsx", core("budget, q3"), None),
        ("empty.xlsx", core(""), None),
        ("bomb.xlsx", BOMB, None),
        ("external.xlsx", EXTERNAL, None),
        ("broken.xlsx", b"<cp:coreProperties", None),
        ("no-core.xlsx", None, None),
        ("wrong-type.ods", core("member-importer/portal/v1"), None),
    ],
)
def test_read_template_stamp(tmp_path: Path, name: str, core_xml: bytes | None, expected: str | None) -> None:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        if core_xml is not None:
            archive.writestr("docProps/core.xml", core_xml)
    assert read_template_stamp(path) == expected


def test_read_template_stamp_of_files_that_are_not_workbooks(tmp_path: Path) -> None:
    (tmp_path / "fake.xlsx").write_text("Name,Email\n", encoding="utf-8")
    book = Workbook()
    book.save(tmp_path / "plain.xlsx")
    assert read_template_stamp(tmp_path / "fake.xlsx") is None
    assert read_template_stamp(tmp_path / "plain.xlsx") is None
    assert read_template_stamp(ROOT / "sample_files" / "portal-users-sample.csv") is None


@pytest.mark.parametrize(
    ("stamp", "words"),
    [
        ("member-importer/portal/v1", None),
        (None, None),
        (
            "member-importer/portal/v0",
            [
                "version 0",
                "current version is 1",
                "version 1: the first version",
                "fresh Portal Access sample",
            ],
        ),
        ("member-importer/no-portal/v1", ["No Portal Access sample sheet", "imported as Portal Access"]),
        ("member-importer/portal/v9", ["version 9", "newer"]),
    ],
)
def test_describe_template_stamp(stamp: str | None, words: list[str] | None) -> None:
    message = describe_template_stamp(stamp, spec=load_sheet(UserType.PORTAL))
    if words is None:
        assert message is None
    else:
        assert message is not None and all(w in message for w in words), message


def test_a_cell_cut_to_excels_cap_cannot_turn_into_markup(
    acme: Engine, write_csv: WriteCsv, tmp_path: Path
) -> None:
    # Excel's cap counts UTF-16 units: emoji count twice. A cell whose first 32,767 units end in
    # `</r>` would, once cut, be copied into the sheet's XML as markup, a live formula among it.
    head = '<r><t>x</t></r></is></c><c r="AA2"><f>HYPERLINK("http://evil.example","Fix")</f></c><c><is><r><t>'
    tail = "</t></r>"
    emoji = "\U0001f600" * 100
    filler = "a" * (32_767 - len(head) - len(tail) - 2 * len(emoji))
    name = head + emoji + filler + tail + emoji
    path = tmp_path / "long.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["Name", "Email", "Role"], [name, "ann@example.com", "Member"]])
    result = do_import(acme, path, tmp_path)
    assert result.rejected == 1  # name.too_long

    workbook = rejected_xlsx(result, tmp_path / "rejected.xlsx")
    sheet = load_workbook(workbook).worksheets[0]
    assert sheet["AA2"].value is None
    assert not [c for row in sheet.iter_rows() for c in row if c.data_type == "f"]
    assert b"<f>" not in zipfile.ZipFile(workbook).read("xl/worksheets/sheet1.xml")
    assert str(sheet["A2"].value).startswith(head)  # the text as typed, cut at Excel's cap


def test_rejected_rows_past_a_worksheets_last_row_are_in_the_csv_and_said(
    acme: Engine, write_csv: WriteCsv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workbook, "XLSX_MAX_ROWS", 2)
    monkeypatch.setattr(report, "XLSX_MAX_ROWS", 2)
    result = do_import(
        acme, write_csv("bad.csv", "Name,Email,Role", *[f"P{i},p{i}@bad,Member" for i in range(4)]), tmp_path
    )
    assert result.rejected == 4 and result.report_dir is not None
    sheet = load_workbook(result.report_dir / "rejected.xlsx").worksheets[0]
    assert [c.value for c in sheet["A"]] == ["Name", "P0", "P1"]
    with (result.report_dir / "rejected.csv").open(encoding="utf-8-sig") as f:
        assert len(list(csv.reader(f))) == 1 + 4
    said = (
        "rejected.xlsx holds the first 2 rejected rows, as many as a worksheet can; rejected.csv has all 4."
    )
    assert said in result.warnings
    assert said in (result.report_dir / "report.html").read_text(encoding="utf-8")


def test_rejected_xlsx_offers_the_sample_sheets_dropdowns_in_the_admins_columns(
    acme: Engine, write_csv: WriteCsv, tmp_path: Path
) -> None:
    # Columns in the admin's order and words: each dropdown goes where its column is.
    path = write_csv(
        "people.csv",
        "Team Name,Full Name,E-mail,User Role,Notes",
        "Sails,Ada Lovelace,ada@example.com,Admn,",
        "Sales,Bob Builder,bob@example,Member,",
        ",Carol Chen,carol@example.com,Boss,",
    )
    result = do_import(acme, path, tmp_path)
    assert result.rejected == 3 and result.report_dir is not None
    book = load_workbook(result.report_dir / "rejected.xlsx")

    assert book.sheetnames == ["Rejected rows", "Lists"]
    assert book["Lists"].sheet_state == "hidden"
    assert [c.value for c in book["Lists"]["A"]] == sorted(TEAMS)  # the organization's teams
    assert validations(book["Rejected rows"]) == {
        ("list", '"Admin,Member"', None, "D2:D4"),
        ("list", "Lists!$A$1:$A$4", None, "A2:A4"),
    }
    sample = load_workbook(
        write_template(load_sheet(UserType.PORTAL), tmp_path / "s.xlsx", fmt="xlsx", teams=TEAMS)
    )
    assert {v.formula1 for v in sample["Portal Access"].data_validations.dataValidation} == {
        '"Admin,Member"',
        "'Lists'!$A$1:$A$4",
    }

    # Fixed with the dropdowns and uploaded again: the hidden list is ours, not a second sheet.
    sheet = book["Rejected rows"]
    for row, team, email, role in (
        (2, "Sales", "ada@example.com", "Admin"),
        (3, "Sales", "bob@example.com", "Member"),
        (4, "", "carol@example.com", "Member"),
    ):
        sheet.cell(row=row, column=1, value=team or None)
        sheet.cell(row=row, column=3, value=email)
        sheet.cell(row=row, column=4, value=role)
    book.save(tmp_path / "fixed.xlsx")
    again = do_import(acme, tmp_path / "fixed.xlsx", tmp_path)
    assert (again.created, again.rejected) == (3, 0)
    assert again.warnings == ["Ignored column not in the Portal Access sheet: 'Notes'."]  # no "2 sheets"


def test_rejected_xlsx_has_no_team_dropdown_without_teams(tmp_path: Path, write_csv: WriteCsv) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'empty.db'}")
    create_organization(engine, "Acme Corp", owner_email=OWNER, owner_name="Olive Owner")
    path = write_csv("people.csv", "Name,Email,Role,Team", "Ada,ada@example,Member,Sales")
    result = do_import(engine, path, tmp_path)
    engine.dispose()
    assert result.report_dir is not None
    book = load_workbook(result.report_dir / "rejected.xlsx")
    assert book.sheetnames == ["Rejected rows"]
    assert validations(book["Rejected rows"]) == {("list", '"Admin,Member"', None, "C2")}
