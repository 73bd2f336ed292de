"""The command group, its per-invocation state and the options several commands share.

Start-up stays quick: this module and the command modules import only click and the light base
modules at their top; each command imports the library it calls (pandas, SQLAlchemy, jinja2 ...)
when it runs, so `importer --help` and `importer X --help` load none of them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from importer import __version__
from importer.cli.answers import INTERRUPTED, NOTHING_WRITTEN, ExitCode, answer
from importer.cli.output import say
from importer.settings import DEFAULT_DATABASE_URL
from importer.values import UserType

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["ExitCode", "Obj", "cli", "json_option", "main", "org_option", "pass_obj", "say"]

F = TypeVar("F", bound=Callable[..., Any])
USER_TYPES = click.Choice([t.value for t in UserType])


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
            from importer.store.engine import open_database

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


def main(*, interrupted: bool = False) -> None:
    """Run the command line; `interrupted`: Ctrl-C was pressed while it loaded (importer/__main__.py)."""
    if interrupted:
        sys.exit(answer(KeyboardInterrupt()))
    cli(prog_name="importer")
