"""The sheet commands: `template` writes the sample sheet, `import` reads one."""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from importer.cli.answers import limit_flag, with_remedy
from importer.cli.app import USER_TYPES, F, Obj, cli, json_option, org_option, pass_obj
from importer.cli.output import say
from importer.errors import Limit, Remedy
from importer.settings import DEFAULT_REPORT_DIR, Settings

if TYPE_CHECKING:
    from importer.reports.samples import UploadWords
    from importer.values import ImportResult

# Files smaller than this import too fast to need a progress bar.
PROGRESS_MIN_BYTES = 2 * 1024 * 1024


def template_words() -> UploadWords:
    """How the sample sheet's Instructions say to upload it and to get the team dropdown, in the
    command line's words."""
    from importer.reports.samples import UploadWords

    return UploadWords(
        upload="importer import FILE --type {user_type} --org ORG --as YOU",
        teams_elsewhere="a copy made with --org ORG has a dropdown of them",
    )


@cli.command()
@click.argument("user_type", type=USER_TYPES, metavar="portal|no-portal")
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx"]), default="xlsx", show_default=True)
@click.option("--org", "org_ref", metavar="ORG", help="Add the organization's teams as a dropdown.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Where to write it; - for standard output.",
)
@pass_obj
def template(obj: Obj, user_type: str, fmt: str, org_ref: str | None, output: Path | None) -> None:
    """Write the sample sheet for Portal Access or No Portal Access users."""
    from importer.reports.samples import render_template, template_file_name
    from importer.sheets import load_sheet
    from importer.values import UserType

    spec = load_sheet(UserType(user_type))
    teams: list[str] = []
    if org_ref:
        from sqlalchemy.orm import Session

        from importer.store.orgs import find_organization, list_teams

        with Session(obj.engine()) as session:
            teams = [t.name for t in list_teams(session, find_organization(session, org_ref).id)]
    to_stdout = output is not None and str(output) == "-"
    if to_stdout and fmt == "xlsx" and sys.stdout.isatty():
        raise click.UsageError(
            "an XLSX workbook is binary and would garble the terminal: redirect it "
            "(`-o - > sheet.xlsx`), give -o PATH, or choose --format csv."
        )
    data = render_template(spec, fmt=fmt, teams=teams, words=template_words())
    if to_stdout:
        if fmt == "csv":
            click.echo(data.decode("utf-8"), nl=False)
        else:
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        return
    path = output or Path(template_file_name(spec, fmt))
    path.write_bytes(data)
    say(f"Wrote {path}")


# Each limit of Settings is raised by an option named after it (answers.limit_flag), which is how
# an error that names a Limit is answered.
LIMIT_HELP: dict[Limit, str] = {
    Limit.FILE_BYTES: "Largest file accepted, in bytes.",
    Limit.UNPACKED_BYTES: "Largest unpacked size of a workbook, in bytes.",
    Limit.COMPRESSION_RATIO: "Highest compression ratio of a workbook (zip bombs are refused).",
    Limit.ROWS: "Most data rows accepted.",
    Limit.COLUMNS: "Most columns accepted.",
    Limit.CELL_CHARS: "Most characters in one cell (Excel's own limit by default).",
    Limit.CELLS: "Most cells in a workbook sheet's used range.",
}


def limit_options(f: F) -> F:
    """The --max-* options of `import`, declared once from Settings."""
    defaults = Settings()
    for limit, help_text in reversed(LIMIT_HELP.items()):
        f = click.option(
            limit_flag(limit),
            limit.value,
            type=click.IntRange(min=1),
            default=getattr(defaults, limit.value),
            show_default=True,
            help=help_text,
        )(f)
    return f


@cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@org_option
@click.option("--as", "actor", required=True, metavar="EMAIL", help="The acting Owner or Admin.")
@click.option("--type", "user_type", type=USER_TYPES, required=True, help="Which sheet this is.")
@click.option("--sheet", help="Workbook sheet to read (default: the first).")
@click.option("--dry-run", is_flag=True, help="Validate and report exactly as a real run, write nothing.")
@click.option("--all-or-nothing", is_flag=True, help="Write nothing if any row is rejected.")
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_REPORT_DIR,
    show_default=True,
    help="Where the batch's report folder is written.",
)
@json_option
@limit_options
@pass_obj
def import_(
    obj: Obj,
    /,
    file: Path,
    org_ref: str,
    actor: str,
    user_type: str,
    sheet: str | None,
    dry_run: bool,
    all_or_nothing: bool,
    report_dir: Path,
    as_json: bool,
    **limits: int,
) -> None:
    """Validate a sheet, create its valid rows as pending members, and report every other row.

    Exit status: 0 every row created or skipped; 3 some rows rejected; 1 file-level error or
    refused import (nothing written); 2 usage.
    """
    from importer.cli.process import tuned_for_import
    from importer.pipeline import run_import
    from importer.values import UserType

    settings = replace(Settings(), report_dir=report_dir, **limits)
    show_progress = not as_json and sys.stderr.isatty() and file.stat().st_size >= PROGRESS_MIN_BYTES
    bar_context = (
        click.progressbar(length=0, label="Importing", file=sys.stderr)
        if show_progress
        else contextlib.nullcontext(None)
    )
    # This process is the command's own: it tunes the collector and the csv module for the import.
    with tuned_for_import(max_cell_chars=settings.max_cell_chars), bar_context as bar:

        def advance(rows: int, estimate: int | None) -> None:
            if bar is None:
                return
            if estimate and not bar.length:
                bar.length = estimate  # known once the file is open
            bar.update(rows)

        result = run_import(
            obj.engine(create=True),
            file,
            org_ref=org_ref,
            actor_email=actor,
            user_type=UserType(user_type),
            sheet_name=sheet,
            dry_run=dry_run,
            all_or_nothing=all_or_nothing,
            settings=settings,
            progress=advance,
        )
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        say(*summary_lines(result))
    sys.exit(result.exit_code)


def summary_lines(result: ImportResult) -> list[str]:
    """The human summary of an import."""
    from importer.values import Outcome, WarningCode

    summary = result.to_dict()
    verb = "would be created" if result.dry_run else "created"
    lines = [
        f"{'Dry run of ' if result.dry_run else ''}{result.file_name}: {summary['rows']} rows, "
        f"{summary['created']} {verb}, {summary['skipped']} skipped (already members), "
        f"{summary['rejected']} rejected.",
    ]
    if result.outcome is Outcome.REFUSED:
        lines.append("All-or-nothing: rows were rejected, so nothing was written.")
    for code, count in result.errors_by_code.items():
        lines.append(f"  {code}: {count}")
    for warning in result.warnings:
        remedy = getattr(warning, "remedy", None)
        arg = getattr(warning, "remedy_arg", None)
        if remedy is None and warning.code is WarningCode.EMAIL_PROVIDER_TYPO and result.batch_id:
            # An address accepted at a mistyped provider is put right by undoing this batch.
            remedy, arg = Remedy.UNDO_BATCH, result.batch_id
        lines.append(f"Warning: {with_remedy(warning, remedy, arg)}")
    lines.append(f"Batch {result.batch_id}; report: {result.report_dir}/report.html")
    if result.generated_pins and result.report_dir is not None:
        lines.append(
            f"Generated PINs of {len(result.generated_pins)} member(s): {result.report_dir}/pins.csv "
            "(mode 0600). It is the only copy, shown nowhere else: hand them out, then delete it."
        )
    return lines
