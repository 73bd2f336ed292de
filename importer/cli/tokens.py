"""`importer api-token create|revoke`: personal API tokens for scripts (shown once, stored hashed)."""

from __future__ import annotations

import click

from importer.cli.app import Obj, cli, org_option, pass_obj
from importer.cli.output import say


@cli.group("api-token")
def api_token() -> None:
    """Create and revoke personal API tokens (`Authorization: Bearer TOKEN`)."""


@api_token.command("create")
@org_option
@click.option("--as", "actor", required=True, metavar="EMAIL", help="The Owner or Admin the token acts as.")
@click.option("--name", default="", help="A name to recognise the token by.")
@pass_obj
def api_token_create(obj: Obj, org_ref: str, actor: str, name: str) -> None:
    """Create an API token for an active Owner or Admin; it is printed once."""
    from importer.accounts.api_tokens import create_token

    made = create_token(obj.engine(), org_ref, email=actor, name=name)
    say(f"API token {made.view.id} for {made.view.account} (shown once; keep it secret):")
    say(made.token)


@api_token.command("revoke")
@org_option
@click.option("--as", "actor", required=True, metavar="EMAIL", help="An Owner or Admin of the organization.")
@click.argument("token_id", type=int)
@pass_obj
def api_token_revoke(obj: Obj, org_ref: str, actor: str, token_id: int) -> None:
    """Revoke an API token by its id; it stops working at once."""
    from importer.accounts.api_tokens import revoke_token

    view = revoke_token(obj.engine(), org_ref, token_id, email=actor)
    say(f"API token {view.id} of {view.account} is revoked.")
