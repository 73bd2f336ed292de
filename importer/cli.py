"""The command line: parse options -> call the library -> render -> exit code. Click only."""

from __future__ import annotations

import contextlib
import csv
import enum
import io
import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from importer import __version__
from importer.accounts.passwords import get_password_policy, set_password_policy
from importer.activation.activating import activate, check_token
from importer.activation.sending import send_activations
from importer.activation.transports.file import FileTransport
from importer.activation.transports.smtp import SmtpSecurity, SmtpTransport
from importer.cells import neutralize, visible
from importer.errors import ImporterError, NoDatabaseError, TransportError
from importer.pipeline import run_import
from importer.reports.samples import render_template, template_file_name
from importer.settings import DEFAULT_DATABASE_URL, DEFAULT_REPORT_DIR, Settings
from importer.sheets import load_sheet
from importer.store.engine import current_revision, open_database
from importer.store.orgs import (
    create_organization,
    create_teams,
    find_organization,
    list_batches,
    list_members,
    list_teams,
    show_batch,
    undo_batch,
)
from importer.values import ImportResult, Status, UserType

F = TypeVar("F", bound=Callable[..., Any])
USER_TYPES = click.Choice([t.value for t in UserType])
# Files with fewer rows than this import too fast to need a progress bar.
PROGRESS_MIN_BYTES = 2 * 1024 * 1024


class ExitCode(enum.IntEnum):
    """The exit status of every command (an import's 0 and 3 come from its result)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for a program stopped by Ctrl-C


# What an interrupt leaves behind, unless the command says otherwise (ctx.meta[INTERRUPTED]):
# every other command writes in one transaction, which an interrupt rolls back.
INTERRUPTED = "importer.interrupted"
NOTHING_WRITTEN = "nothing was written."


def say(*lines: str, err: bool = False) -> None:
    """Print lines; whatever a user supplied in them (file names, cells, team names) is shown, not
    obeyed: control characters, line breaks included, are printed as ⟨U+XXXX⟩, so a file name
    cannot clear the screen or forge a line of output."""
    for line in lines:
        click.echo(visible(line, one_line=True), err=err)


def answer(exc: BaseException, *, interrupted: str = NOTHING_WRITTEN) -> int:
    """The one mapping of everything that stops a command to one line on stderr and an exit code."""
    if isinstance(exc, KeyboardInterrupt | click.exceptions.Abort):  # Ctrl-C, also at a prompt
        if sys.stderr.isatty():
            click.echo(err=True)  # past the terminal's "^C"
        say(f"Interrupted; {interrupted}", err=True)
        return ExitCode.INTERRUPTED
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        exc.show()  # a group without its command: its help
        return exc.exit_code
    if isinstance(exc, click.UsageError):
        command = exc.ctx.command_path if exc.ctx else "importer"
        say(f"Error: {exc.format_message()} (see `{command} --help`)", err=True)
        return exc.exit_code
    if isinstance(exc, click.ClickException):
        say(f"Error: {exc.format_message()}", err=True)
        return exc.exit_code
    if isinstance(exc, NoDatabaseError):
        say(
            f"Error: {exc}: give the database with --db URL (or IMPORTER_DATABASE_URL), or create "
            "one with `importer org create` or `importer db upgrade`.",
            err=True,
        )
    elif isinstance(exc, ImporterError):
        say(f"Error: {exc}", err=True)
    elif isinstance(exc, SQLAlchemyError):
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        say(f"Error: database error: {first}", err=True)
    elif isinstance(exc, OSError):
        say(f"Error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
    else:
        say(
            f"Error: unexpected internal error ({type(exc).__name__}: {exc}). Nothing was "
            "written; please report this with the file that caused it.",
            err=True,
        )
    return ExitCode.FAILED


class ImporterGroup(click.Group):
    """A group whose commands end in one clear line and an exit code (see answer), never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except (Exception, KeyboardInterrupt) as exc:  # SystemExit (a command's exit code) passes
            code = answer(exc, interrupted=ctx.meta.get(INTERRUPTED, NOTHING_WRITTEN))
            raise click.exceptions.Exit(code) from None


class Obj:
    """Per-invocation state: the database URL, the engine opened on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None

    def engine(self, *, create: bool = False) -> Engine:
        """The engine; only a command that creates data (`create`) may create the database."""
        if self._engine is None:
            self._engine = open_database(self.url, create=create)
        return self._engine


pass_obj = click.make_pass_decorator(Obj)


def org_option(f: F) -> F:
    """The --org option shared by most commands."""
    return click.option("--org", "org_ref", required=True, metavar="ORG", help="Organization name or id.")(f)


def json_option(f: F) -> F:
    """The --json option shared by several commands."""
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")(f)


@click.group(cls=ImporterGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "db_url",
    envvar="IMPORTER_DATABASE_URL",
    default=DEFAULT_DATABASE_URL,
    show_default=True,
    metavar="URL",
    help="SQLAlchemy database URL (or IMPORTER_DATABASE_URL).",
)
@click.version_option(__version__, prog_name="importer")
@click.pass_context
def cli(ctx: click.Context, db_url: str) -> None:
    """Bulk-import organization members from spreadsheets."""
    ctx.obj = Obj(db_url)


@cli.group()
def org() -> None:
    """Manage organizations."""


@org.command("create")
@click.argument("name")
@click.option("--owner-email", required=True, help="Email of the organization's Owner.")
@click.option("--owner-name", required=True, help="Name of the organization's Owner.")
@pass_obj
def org_create(obj: Obj, name: str, owner_email: str, owner_name: str) -> None:
    """Create an organization and its active Owner."""
    org_id = create_organization(
        obj.engine(create=True), name, owner_email=owner_email, owner_name=owner_name
    )
    say(f"Created organization {name!r} (id {org_id}) with Owner {owner_email}.")


@cli.group()
def team() -> None:
    """Manage teams."""


@team.command("create")
@org_option
@click.argument("names", nargs=-1, required=True)
@pass_obj
def team_create(obj: Obj, org_ref: str, names: tuple[str, ...]) -> None:
    """Create one or more teams in an organization (existing ones are left alone)."""
    created = create_teams(obj.engine(create=True), org_ref, names)
    existing = len(names) - len(created)
    say(
        f"Created {len(created)} team{'s' if len(created) != 1 else ''}"
        + (f": {', '.join(created)}" if created else "")
        + (f" ({existing} already existed)" if existing else "")
        + "."
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
    spec = load_sheet(UserType(user_type))
    teams: list[str] = []
    if org_ref:
        with Session(obj.engine()) as session:
            teams = [t.name for t in list_teams(session, find_organization(session, org_ref).id)]
    to_stdout = output is not None and str(output) == "-"
    if to_stdout and fmt == "xlsx" and sys.stdout.isatty():
        raise click.UsageError(
            "an XLSX workbook is binary and would garble the terminal: redirect it "
            "(`-o - > sheet.xlsx`), give -o PATH, or choose --format csv."
        )
    data = render_template(spec, fmt=fmt, teams=teams)
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


# Each limit of Settings is raised by an option of the same name; the error that names a limit
# names its option.
LIMIT_OPTIONS: tuple[tuple[str, str], ...] = (
    ("max_file_bytes", "Largest file accepted, in bytes."),
    ("max_unpacked_bytes", "Largest unpacked size of a workbook, in bytes."),
    ("max_compression_ratio", "Highest compression ratio of a workbook (zip bombs are refused)."),
    ("max_rows", "Most data rows accepted."),
    ("max_columns", "Most columns accepted."),
    ("max_cell_chars", "Most characters in one cell (Excel's own limit by default)."),
    ("max_cells", "Most cells in a workbook sheet's used range."),
)


def limit_options(f: F) -> F:
    """The --max-* options of `import`, declared once from Settings."""
    defaults = Settings()
    for field_name, help_text in reversed(LIMIT_OPTIONS):
        f = click.option(
            "--" + field_name.replace("_", "-"),
            field_name,
            type=click.IntRange(min=1),
            default=getattr(defaults, field_name),
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
    settings = replace(Settings(), report_dir=report_dir, **limits)
    # The csv module's own cap on a cell is process-wide state, this entry point's to set.
    csv.field_size_limit(max(csv.field_size_limit(), settings.max_cell_chars + 1))
    show_progress = not as_json and sys.stderr.isatty() and file.stat().st_size >= PROGRESS_MIN_BYTES
    bar_context = (
        click.progressbar(length=0, label="Importing", file=sys.stderr)
        if show_progress
        else contextlib.nullcontext(None)
    )
    with bar_context as bar:

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
    summary = result.to_dict()
    verb = "would be created" if result.dry_run else "created"
    lines = [
        f"{'Dry run of ' if result.dry_run else ''}{result.file_name}: {summary['rows']} rows, "
        f"{summary['created']} {verb}, {summary['skipped']} skipped (already members), "
        f"{summary['rejected']} rejected.",
    ]
    if result.outcome == "refused":
        lines.append("All-or-nothing: rows were rejected, so nothing was written.")
    for code, count in result.errors_by_code.items():
        lines.append(f"  {code}: {count}")
    for warning in result.warnings:
        lines.append(f"Warning: {warning}")
    lines.append(f"Batch {result.batch_id}; report: {result.report_dir}/report.html")
    if result.generated_pins and result.report_dir is not None:
        lines.append(
            f"Generated PINs of {len(result.generated_pins)} member(s): {result.report_dir}/pins.csv "
            "(mode 0600). It is the only copy, shown nowhere else: hand them out, then delete it."
        )
    return lines


@cli.command()
@org_option
@click.option("--status", type=click.Choice([s.value for s in Status]), help="Only members with this status.")
@click.option("--type", "user_type", type=USER_TYPES, help="Only members of this type.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@pass_obj
def members(obj: Obj, org_ref: str, status: str | None, user_type: str | None, fmt: str) -> None:
    """List an organization's members (PINs and passwords are never shown)."""
    rows = list_members(
        obj.engine(),
        org_ref,
        status=Status(status) if status else None,
        user_type=UserType(user_type) if user_type else None,
    )
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "csv":
        click.echo(_csv_text(rows), nl=False)
    else:
        keys: tuple[str, ...] = ("id", "name", "email", "type", "role", "team", "status", "batch_id")
        # A refused activation email shows where the admin looks first.
        if any(row["invite_error"] for row in rows):
            keys = (*keys, "invite_error")
        say(*_table(rows, keys))


@cli.command()
@org_option
@json_option
@pass_obj
def batches(obj: Obj, org_ref: str, as_json: bool) -> None:
    """List an organization's past imports, newest first."""
    rows = list_batches(obj.engine(), org_ref)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        say(
            *_table(
                rows,
                (
                    "id",
                    "type",
                    "file_name",
                    "actor",
                    "outcome",
                    "rows",
                    "created",
                    "skipped",
                    "rejected",
                    "started_at",
                ),
            )
        )


@cli.command("send-activations")
@org_option
@click.option("--batch", "batch_id", metavar="ID", help="Only the members of this import.")
@click.option(
    "--resend", is_flag=True, help="Also those emailed but not yet active (a new link; the old one dies)."
)
@click.option(
    "--from", "sender", envvar="IMPORTER_FROM", metavar="ADDRESS", help="From address (or IMPORTER_FROM)."
)
@click.option(
    "--base-url", envvar="IMPORTER_BASE_URL", metavar="URL", help="Portal URL (or IMPORTER_BASE_URL)."
)
@click.option("--transport", type=click.Choice(["file", "smtp"]), default="file", show_default=True)
@click.option(
    "--outbox",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("outbox"),
    show_default=True,
    help="File transport: the folder that gets one .eml per message.",
)
@click.option("--smtp-host", default="localhost", show_default=True)
@click.option("--smtp-port", type=click.IntRange(1, 65535), help="Default: 25, 587 (starttls) or 465 (tls).")
@click.option(
    "--smtp-security", type=click.Choice([s.value for s in SmtpSecurity]), default="none", show_default=True
)
@click.option("--smtp-user", help="Log in as this user; the password comes from IMPORTER_SMTP_PASSWORD.")
@json_option
@pass_obj
def send_activations_command(
    obj: Obj,
    org_ref: str,
    batch_id: str | None,
    resend: bool,
    sender: str | None,
    base_url: str | None,
    transport: str,
    outbox: Path,
    smtp_host: str,
    smtp_port: int | None,
    smtp_security: str,
    smtp_user: str | None,
    as_json: bool,
) -> None:
    """Email the activation link to pending portal members who have not been emailed.

    Exit status: 0 all sent; 3 some recipients refused (recorded on the member, shown by
    `members`); 1 nothing could be sent (server unreachable, login refused).
    """
    # Each member's state is committed as its message goes: an interrupt keeps what was sent.
    click.get_current_context().meta[INTERRUPTED] = (
        "the messages sent before it are recorded; run it again to send the rest."
    )
    if not sender:
        raise click.UsageError("--from ADDRESS (or IMPORTER_FROM) is required.")
    if not base_url:
        raise click.UsageError("--base-url URL (or IMPORTER_BASE_URL) is required.")
    password = os.environ.get("IMPORTER_SMTP_PASSWORD")
    if smtp_user and not password and transport == "smtp":
        raise click.UsageError("--smtp-user needs the password in IMPORTER_SMTP_PASSWORD.")
    chosen: FileTransport | SmtpTransport = (
        FileTransport(outbox)
        if transport == "file"
        else SmtpTransport(
            smtp_host, port=smtp_port, security=SmtpSecurity(smtp_security), user=smtp_user, password=password
        )
    )
    try:
        with chosen:
            result = send_activations(
                obj.engine(), org_ref, transport=chosen, sender=sender, base_url=base_url,
                batch_id=batch_id, resend=resend,
            )  # fmt: skip
    except TransportError as exc:
        if as_json and exc.result is not None:
            click.echo(json.dumps(exc.result.to_dict()))
        raise
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        where = f" to {outbox}/" if transport == "file" else f" via {smtp_host}"
        say(
            f"Sent {result.sent}{where}; {result.failed} failed; "
            f"{result.skipped} already emailed (see --resend).",
            *(f"  refused: {failure.email}: {failure.error}" for failure in result.failures),
        )
    sys.exit(result.exit_code)


class LiteralArguments(click.Command):
    """A command whose arguments are taken as given, even when they start with `-` (as older
    activation tokens may): only the command's own flags, spelt exactly, are options, and `--`
    ends them as usual. For commands whose options are all flags."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        flags = {
            name
            for param in self.get_params(ctx)
            if isinstance(param, click.Option)
            for name in (*param.opts, *param.secondary_opts)
        }
        own: list[str] = []
        given: list[str] = []
        for position, arg in enumerate(args):
            if arg == "--":
                given += args[position + 1 :]
                break
            (own if arg in flags else given).append(arg)
        return super().parse_args(ctx, [*own, "--", *given])


@cli.command("activate", cls=LiteralArguments)
@click.argument("token", required=False)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (its next line).")
@pass_obj
def activate_command(obj: Obj, token: str | None, password_stdin: bool) -> None:
    """Set the password from an activation link (or its token); the member becomes active.

    Without TOKEN the link is asked for without echo, or read from the first line of standard
    input when that is not a terminal: it then never shows in the process list. The link is
    checked before the password is asked for.
    """
    terminal = sys.stdin.isatty()
    if not (terminal or password_stdin):
        raise click.UsageError(
            "there is no terminal to ask for the password: give it on standard input with --password-stdin."
        )
    if token is None:
        token = click.prompt("Activation link", hide_input=True) if terminal else sys.stdin.readline()
        if not token.strip():
            raise click.UsageError("no activation link given: paste the link from the email.")
    member = check_token(obj.engine(), token)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        say(f"Choose the password of {member.email} in {member.organization}.")
        password = click.prompt("New password", hide_input=True, confirmation_prompt="Repeat the password")
    member = activate(obj.engine(), token, password)
    say(f"{member.email} is now active in {member.organization}. Sign in with your email and password.")


@org.command("password-policy")
@org_option
@click.option("--as", "actor", required=True, metavar="EMAIL", help="The organization's Owner.")
@click.option("--min-length", type=click.IntRange(8, 128), help="Minimum password length (8-128).")
@click.option("--require-symbol/--no-require-symbol", default=None, help="Require a symbol.")
@pass_obj
def org_password_policy(
    obj: Obj, org_ref: str, actor: str, min_length: int | None, require_symbol: bool | None
) -> None:
    """Show or change the organization's password policy (only its Owner may change it)."""
    if min_length is None and require_symbol is None:
        policy = get_password_policy(obj.engine(), org_ref)
    else:
        policy = set_password_policy(
            obj.engine(), org_ref, actor_email=actor, min_length=min_length, require_symbol=require_symbol
        )
    say(f"Password policy: {policy.describe()}.")


@cli.group()
def batch() -> None:
    """Inspect or undo one import."""


@batch.command("show")
@click.argument("batch_id", metavar="ID")
@json_option
@pass_obj
def batch_show(obj: Obj, batch_id: str, as_json: bool) -> None:
    """Who imported what and when: file name and hash, counts, report path."""
    info = show_batch(obj.engine(), batch_id)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    say(*(f"{key + ':':<17} {'' if value is None else value}" for key, value in info.items()))


@batch.command("undo")
@click.argument("batch_id", metavar="ID")
@json_option
@pass_obj
def batch_undo(obj: Obj, batch_id: str, as_json: bool) -> None:
    """Remove a batch's members that are still pending and revoke their links; active ones stay."""
    result = undo_batch(obj.engine(), batch_id)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
        return
    say(f"Batch {result.batch_id}: removed {result.removed} pending member(s).")
    if result.kept_active:
        say(f"Kept {len(result.kept_active)} already active: {', '.join(result.kept_active)}")


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_obj
def db_upgrade(obj: Obj) -> None:
    """Create or upgrade the database schema to the newest revision (also done on first use)."""
    say(f"Database schema at revision {current_revision(obj.engine(create=True))}.")


def _csv_text(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.writer(out)
        writer.writerow(list(rows[0]))
        for row in rows:
            # A cell may hold a line break (quoted); nothing that would act on a terminal.
            writer.writerow([visible(neutralize("" if v is None else str(v))) for v in row.values()])
    return out.getvalue()


def _table(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[str]:
    if not rows:
        return ["(none)"]
    # Made visible before measuring, so the columns line up as printed.
    cells = [[visible("" if row[k] is None else str(row[k]), one_line=True) for k in keys] for row in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return [line.rstrip() for line in lines]


def main(*, interrupted: bool = False) -> None:
    """Run the command line; `interrupted`: Ctrl-C was pressed while it loaded (importer/__main__.py)."""
    if interrupted:
        sys.exit(answer(KeyboardInterrupt()))
    cli(prog_name="importer")
