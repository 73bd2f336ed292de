"""The one place where whatever stops a command becomes one line on stderr and an exit code.

Library errors say what is wrong without naming a flag or a command; what the user can do about
it comes as a fact (`ImporterError.remedy`, errors.Remedy), which this module puts in the command
line's own words: `Remedy.RAISE_LIMIT` with `Limit.ROWS` is "raise it with --max-rows".
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable

import click

from importer.cli.output import say
from importer.errors import ImporterError, Limit, NoDatabaseError, Remedy

# What an interrupt leaves behind, unless the command says otherwise (ctx.meta[INTERRUPTED]):
# every other command writes in one transaction, which an interrupt rolls back.
INTERRUPTED = "importer.interrupted"
NOTHING_WRITTEN = "nothing was written."


class ExitCode(enum.IntEnum):
    """The exit status of every command (an import's 0 and 3 come from its result)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for a program stopped by Ctrl-C


def limit_flag(limit: Limit | str) -> str:
    """The `import` option that raises a limit: each is named after its Settings field."""
    return "--" + str(limit).replace("_", "-")


# Each remedy in the command line's words, given the error's remedy_arg (tests/test_cli.py checks
# that every member of Remedy has one).
REMEDY_WORDS: dict[Remedy, Callable[[str | None], str]] = {
    Remedy.RAISE_LIMIT: lambda limit: f"raise it with {limit_flag(limit or '')}",
    Remedy.CREATE_ORGANIZATION: lambda _: "create it with `importer org create`",
    Remedy.LIST_BATCHES: lambda _: "`importer batches --org ORG` lists them",
    Remedy.UNDO_BATCH: lambda batch_id: f"`importer batch undo {batch_id or 'ID'}`",
    Remedy.CHOOSE_SHEET: lambda _: "choose another with --sheet",
    Remedy.START_FROM_TEMPLATE: lambda user_type: f"`importer template {user_type or 'portal'}`",
    Remedy.IMPORT_AS_TYPE: lambda user_type: f"import it with --type {user_type or 'portal'}",
    Remedy.RESEND_INVITATION: (
        lambda _: "ask your admin to send a new one with `importer send-activations --resend`"
    ),
    Remedy.ENCRYPT_SMTP: lambda _: "use --smtp-security starttls or tls",
    Remedy.GIVE_PASSWORD_ON_STDIN: lambda _: "give it on standard input with --password-stdin",
    Remedy.CHOOSE_DATABASE: lambda _: "give the database with --db URL or IMPORTER_DATABASE_URL",
    Remedy.LIST_MEMBERS: lambda _: "`importer members --org ORG` lists them",
    Remedy.LIST_TEAMS: lambda _: "`importer team list --org ORG` lists them",
}
NO_DATABASE_WORDS = (
    "give the database with --db URL (or IMPORTER_DATABASE_URL), or create one with "
    "`importer org create` or `importer db upgrade`."
)


def with_remedy(message: str, remedy: Remedy | None, arg: str | None) -> str:
    """A library message with its remedy, if any, in the command line's words after it:
    "… over 10 rows." + RAISE_LIMIT/max_rows -> "… over 10 rows (raise it with --max-rows)."."""
    words = REMEDY_WORDS.get(remedy) if remedy is not None else None
    if words is None:
        return message
    body = message.rstrip()
    end = "." if body.endswith(".") else ""
    return f"{body.removesuffix('.')} ({words(arg)}){end}"


def error_line(exc: ImporterError) -> str:
    """The line an ImporterError gets, without the "Error: " in front."""
    if isinstance(exc, NoDatabaseError) and exc.remedy is None:
        return f"{exc}: {NO_DATABASE_WORDS}"
    return with_remedy(str(exc), exc.remedy, exc.remedy_arg)


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
    # SQLAlchemy is loaded only by commands that use a database: no other can raise its errors.
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if isinstance(exc, ImporterError):
        say(f"Error: {error_line(exc)}", err=True)
    elif sqlalchemy_exc is not None and isinstance(exc, sqlalchemy_exc.SQLAlchemyError):
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
