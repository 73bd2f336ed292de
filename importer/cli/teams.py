"""`importer team list|rename|delete` (`team create` is in orgs.py, with the group)."""

from __future__ import annotations

import json

import click

from importer.cli.app import Obj, json_option, org_option, pass_obj
from importer.cli.members import as_option
from importer.cli.orgs import team
from importer.cli.output import say, table


@team.command("list")
@org_option
@json_option
@pass_obj
def team_list(obj: Obj, org_ref: str, as_json: bool) -> None:
    """List an organization's teams by name, with how many members each has."""
    from importer.accounts.teams import list_teams

    rows = [view.to_dict() for view in list_teams(obj.engine(), org_ref)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        say(*table(rows, ("id", "name", "members")))


@team.command("rename")
@org_option
@as_option
@click.argument("name")
@click.argument("new_name", metavar="NEW_NAME")
@pass_obj
def team_rename(obj: Obj, org_ref: str, actor: str, name: str, new_name: str) -> None:
    """Rename a team (names compare case-insensitively; its members stay in it)."""
    from importer.accounts.audit import Acting
    from importer.accounts.teams import rename_team

    view = rename_team(obj.engine(), org_ref, acting=Acting(actor), team=name, new_name=new_name)
    say(f"Renamed team {name.strip()!r} to {view.name!r} ({view.members} member(s)).")


@team.command("delete")
@org_option
@as_option
@click.argument("name")
@pass_obj
def team_delete(obj: Obj, org_ref: str, actor: str, name: str) -> None:
    """Delete a team; its members stay, with no team."""
    from importer.accounts.audit import Acting
    from importer.accounts.teams import delete_team

    moved = delete_team(obj.engine(), org_ref, acting=Acting(actor), team=name)
    say(f"Deleted team {name.strip()!r}; {moved} member(s) now have no team.")
