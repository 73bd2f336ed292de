"""The README and the sample files stay true to schemas/ and to the CLI."""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from importer.cli import cli
from importer.cli.imports import template_words
from importer.docs import generated_sections
from importer.reports.samples import template_file_name, write_template
from importer.sheets import load_sheet
from importer.values import UserType

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_holds_the_tables_generated_from_schemas() -> None:
    assert generated_sections() in README, "run `python -m importer.docs` and paste it into README.md"


def _commands(group: object, prefix: str = "") -> list[tuple[str, object]]:
    found = []
    for name, command in getattr(group, "commands", {}).items():
        path = f"{prefix}{name}"
        if hasattr(command, "commands"):
            found += _commands(command, path + " ")
        else:
            found.append((path, command))
    return found


@pytest.mark.parametrize(("path", "command"), _commands(cli))
def test_every_command_has_help_and_is_in_the_readme(path: str, command: object) -> None:
    assert f"importer {path}" in README
    result = CliRunner().invoke(cli, [*path.split(), "--help"])
    assert result.exit_code == 0
    assert getattr(command, "help", None), f"{path} has no help text"


def test_every_option_of_send_activations_and_its_worker_setting_is_in_the_readme() -> None:
    command = cli.commands["send-activations"]  # type: ignore[attr-defined]
    options = [opt for param in command.params for opt in param.opts if opt.startswith("--")]
    assert "--smtp-connections" in options
    assert [opt for opt in options if f"`{opt}" not in README and f" {opt} " not in README] == []
    assert "IMPORTER_SMTP_CONNECTIONS" in README


@pytest.mark.parametrize("user_type", list(UserType))
@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_sample_files_equal_what_template_writes_today(tmp_path: Path, user_type: UserType, fmt: str) -> None:
    spec = load_sheet(user_type)
    fresh = write_template(spec, tmp_path / template_file_name(spec, fmt), fmt=fmt, words=template_words())
    committed = ROOT / "sample_files" / fresh.name
    if fmt == "csv":
        assert committed.read_bytes() == fresh.read_bytes()
        return
    old, new = load_workbook(committed), load_workbook(fresh)
    assert old.sheetnames == new.sheetnames
    assert old.properties.keywords == new.properties.keywords
    for name in new.sheetnames:
        old_cells = [[c.value for c in row] for row in old[name].iter_rows()]
        new_cells = [[c.value for c in row] for row in new[name].iter_rows()]
        assert old_cells == new_cells, name
        old_rules = [(v.type, v.formula1, str(v.sqref)) for v in old[name].data_validations.dataValidation]
        new_rules = [(v.type, v.formula1, str(v.sqref)) for v in new[name].data_validations.dataValidation]
        assert old_rules == new_rules, name


def test_readme_error_codes_match_product_codes() -> None:
    documented = set(re.findall(r"`([a-z]+\.[a-z_]+)`", README))
    from importer.values import ErrorCode

    assert {c.value for c in ErrorCode} <= documented


def _tour() -> str:
    section = README.split("## A short tour\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_tour_says_where_importer_comes_from() -> None:
    tour = _tour()
    first = tour.splitlines()[0]
    assert first == "make venv && . .venv/bin/activate"
    assert "`.venv/bin/`" in README and "pip install ." in README


def test_the_tour_is_true_when_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every `importer` line of the tour, run in order: each succeeds as shown, and the import prints
    what the tour says it prints (batch ids aside)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sample_files").symlink_to(ROOT / "sample_files")
    lines = _tour().replace("\\\n", " ").splitlines()
    runner = CliRunner()
    db = f"sqlite:///{tmp_path / 'tour.db'}"
    ran = []
    links: list[str] = []
    for index, line in enumerate(lines):
        if not line.startswith("importer "):
            continue
        command = line.split("  #")[0].split(" # ")[0]
        if command.strip().startswith("importer activate"):
            if not links:
                continue  # the token is in the emails (tests/activation/test_activation.py follows one)
            # The Owner follows the link `org create` printed, as a person pastes it.
            done = runner.invoke(
                cli, ["--db", db, "activate", "--password-stdin"], input=f"{links.pop()}\nowner pass 2026\n"
            )
            assert done.exit_code == 0, done.output
            continue
        args = shlex.split(command)[1:]
        result = runner.invoke(cli, ["--db", db, *args], catch_exceptions=False)
        links += re.findall(r"^https://\S+/activate\?token=\S+$", result.output, re.MULTILINE)
        ran.append(args[0])
        shown = [
            text.removeprefix("#   ")
            for text in itertools.takewhile(lambda t: t.startswith("#   "), lines[index + 1 :])
        ]
        if args[0] == "import":
            assert result.exit_code == 3  # some rows rejected, as the tour shows
            batch = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")
            assert batch.sub("ID", result.output).splitlines() == [batch.sub("ID", t) for t in shown]
        else:
            assert result.exit_code == 0, (line, result.output)
    assert ran == ["org", "team", "template", "import", "members", "batches", "send-activations"]
    assert (tmp_path / "portal-users.xlsx").is_file()
    assert any("/activate?token=" in p.read_text() for p in (tmp_path / "outbox").glob("*.eml"))


def _library_section() -> tuple[str, str]:
    section = README.split("## As a library\n", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    printed = section.split("```text\n", 1)[1].split("```", 1)[0]
    return code, printed


def test_the_library_example_runs_and_prints_what_the_readme_says(tmp_path: Path) -> None:
    code, printed = _library_section()
    (tmp_path / "example.py").write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == printed
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1


def test_the_public_api_is_complete_and_light() -> None:
    import importer

    for name in importer.__all__:
        assert getattr(importer, name) is not None, name
    errors = __import__("importer.errors", fromlist=["ImporterError"])
    tree = {n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, errors.ImporterError)}
    assert tree <= set(importer.__all__)
    probe = "import sys, importer; print(sorted(m for m in ('pandas', 'sqlalchemy') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]"


def test_running_on_several_machines_names_every_setting_and_option() -> None:
    from importer.jobs.settings import _NUMBERS, DEFAULT_LEASE_SECONDS, DEFAULT_REPORT_DAYS

    section = README.split("## Running on several machines\n", 1)[1].split("\n## ", 1)[0]
    for name in [*_NUMBERS, "IMPORTER_DATABASE_URL", "IMPORTER_QUEUE_URL", "IMPORTER_SECRET_KEY"]:
        assert f"`{name}`" in section, name
    assert f"`IMPORTER_JOB_LEASE_SECONDS`, {DEFAULT_LEASE_SECONDS:g} s" in section
    assert f"`IMPORTER_REPORT_DAYS`\n  ({DEFAULT_REPORT_DAYS:g})" in section
    runner = CliRunner()
    assert "--no-worker" in runner.invoke(cli, ["serve", "--help"]).output
    assert "--threads" in runner.invoke(cli, ["worker", "--help"]).output
    for line in ("importer serve --no-worker --host 0.0.0.0", "importer worker"):
        assert line in section
