"""`importer audit`: who did what to whom, when, newest first."""

from __future__ import annotations

import datetime as dt
import json

import click

from importer.cli.app import Obj, cli, json_option, org_option, pass_obj
from importer.cli.output import say, table

AUDIT_COLUMNS = ("at", "actor", "action", "subject", "detail")


def parse_moment(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.datetime | None:
    """An ISO 8601 date or time; without a zone it is UTC (as the events are)."""
    if value is None:
        return None
    text = value.strip()
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO date or time such as 2025-01-31 or 2025-01-31T09:30Z."
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@cli.command()
@org_option
@click.option(
    "--since",
    metavar="ISO",
    callback=parse_moment,
    help="Only events at or after this ISO date or time (default UTC).",
)
@click.option("--actor", metavar="EMAIL", help="Only events by this address (with or without `cli:`).")
@json_option
@pass_obj
def audit(obj: Obj, org_ref: str, since: dt.datetime | None, actor: str | None, as_json: bool) -> None:
    """List an organization's audit events, newest first (never a password, token or PIN)."""
    from importer.accounts.audit import list_events

    rows = [event.to_dict() for event in list_events(obj.engine(), org_ref, since=since, actor=actor)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        say(*table(rows, AUDIT_COLUMNS))
