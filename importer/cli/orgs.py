"""Commands around the organization: org, team, members, batches, batch, db."""

from __future__ import annotations

import json
import sys

import click

from importer.cells import visible
from importer.cli.activation import MailOptions, mail_options, say_refused
from importer.cli.app import USER_TYPES, ExitCode, Obj, cli, json_option, org_option, pass_obj
from importer.cli.output import csv_text, say, table

# A member's status, as `members --status` takes it: the values of store.models.Status, spelt here
# so that `--help` needs no SQLAlchemy (tests/test_cli.py keeps the two in step).
MEMBER_STATUSES = ("pending", "active", "deactivated")
MEMBER_COLUMNS = ("id", "name", "email", "type", "role", "team", "status", "batch_id")
# A member's keys in the whole list (no --limit), as PRODUCT.md first listed them.
WHOLE_LIST_KEYS = (*MEMBER_COLUMNS, "invited_at", "invite_error")
# accounts.listing.MAX_PAGE, spelt here so that `--help` needs no SQLAlchemy (tests keep them in step).
MAX_PAGE = 10_000
BATCH_COLUMNS = (
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
)


@cli.group()
def org() -> None:
    """Manage organizations."""


@org.command("create")
@click.argument("name")
@click.option("--owner-email", required=True, help="Email of the organization's Owner.")
@click.option("--owner-name", required=True, help="Name of the organization's Owner.")
@click.option("--send", is_flag=True, help="Email the Owner's activation link instead of printing it.")
@mail_options
@pass_obj
def org_create(obj: Obj, name: str, owner_email: str, owner_name: str, send: bool, mail: MailOptions) -> None:
    """Create an organization and its Owner, pending until they set a password.

    The Owner's activation link (BASE_URL/activate?token=..., 30 days) is printed once, or
    emailed with --send; either way it needs --base-url (or IMPORTER_BASE_URL).
    """
    from importer.activation.tokens import check_base_url

    if send:
        from importer.activation.compose import check_sender

        sender, base_url = mail.require()
        check_sender(sender)
    else:
        base_url = mail.require_base_url()
    check_base_url(base_url)
    transport = mail.open_transport() if send else None
    from importer.store.orgs import create_organization

    engine = obj.engine(create=True)
    org_id = create_organization(
        engine, name, owner_email=owner_email, owner_name=owner_name, pending_owner=True
    )
    say(
        f"Created organization {name!r} (id {org_id}) with Owner {owner_email}, "
        "pending until they follow their activation link."
    )
    if transport is None:
        from importer.activation.links import issue_owner_link

        link = issue_owner_link(engine, str(org_id), base_url=base_url)
        say(
            f"The Owner's activation link (shown only this once; it expires on {link.expires_on}):",
            link.link,
        )
        return
    from importer.activation.sending import send_activations

    with transport:
        result = send_activations(engine, str(org_id), transport=transport, sender=sender, base_url=base_url)
    if result.sent:
        say(f"The Owner's activation link was emailed{mail.where()}.")
    else:
        say_refused(result)
        sys.exit(result.exit_code)


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
    from importer.accounts.passwords import get_password_policy, set_password_policy

    if min_length is None and require_symbol is None:
        policy = get_password_policy(obj.engine(), org_ref)
    else:
        policy = set_password_policy(
            obj.engine(), org_ref, actor_email=actor, min_length=min_length, require_symbol=require_symbol
        )
    say(f"Password policy: {policy.describe()}.")


@cli.group()
def team() -> None:
    """Manage teams."""


@team.command("create")
@org_option
@click.argument("names", nargs=-1, required=True)
@pass_obj
def team_create(obj: Obj, org_ref: str, names: tuple[str, ...]) -> None:
    """Create one or more teams in an organization (existing ones are left alone)."""
    from importer.store.orgs import create_teams

    created = create_teams(obj.engine(create=True), org_ref, names)
    existing = len(names) - len(created)
    say(
        f"Created {len(created)} team{'s' if len(created) != 1 else ''}"
        + (f": {', '.join(created)}" if created else "")
        + (f" ({existing} already existed)" if existing else "")
        + "."
    )


@cli.command()
@org_option
@click.option("--status", type=click.Choice(MEMBER_STATUSES), help="Only members with this status.")
@click.option("--type", "user_type", type=USER_TYPES, help="Only members of this type.")
@click.option("--team", help="Only the members of this team.")
@click.option("--batch", "batch_id", metavar="ID", help="Only the members this import created.")
@click.option("--search", metavar="TEXT", help="Only members whose name or email contains TEXT (any case).")
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_PAGE),
    help="One page of at most N members, and the cursor of the next (see --after).",
)
@click.option("--after", metavar="CURSOR", help="The page after this cursor (the previous page's `next`).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@pass_obj
def members(
    obj: Obj,
    org_ref: str,
    status: str | None,
    user_type: str | None,
    team: str | None,
    batch_id: str | None,
    search: str | None,
    limit: int | None,
    after: str | None,
    fmt: str,
) -> None:
    """List an organization's members by id, filtered, whole or a page at a time (PINs and passwords
    are never shown).

    With --limit, `--format json` prints {"members": [...], "next": CURSOR or null}, each member with
    activated_at and deactivated_at too; pass `next` to --after for the next page. A table or CSV
    page gives the next cursor on standard error.
    """
    if after is not None and limit is None:
        raise click.UsageError("--after continues a page: give --limit too.")
    from importer.accounts.listing import list_members
    from importer.store.models import Status
    from importer.values import UserType

    page = list_members(
        obj.engine(),
        org_ref,
        status=Status(status) if status else None,
        user_type=UserType(user_type) if user_type else None,
        team=team,
        batch=batch_id,
        search=search,
        limit=limit,
        after=after,
    )
    if limit is not None:
        rows = [view.to_dict() for view in page.members]
        if fmt == "json":
            click.echo(json.dumps(page.to_dict(), indent=2))
            return
    else:  # the whole list, keyed as before paging came (scripts rely on it)
        rows = [{key: view.to_dict()[key] for key in WHOLE_LIST_KEYS} for view in page.members]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "csv":
        click.echo(csv_text(rows), nl=False)
    else:
        # A refused activation email shows where the admin looks first.
        refused = any(view.invite_error for view in page.members)
        columns = (*MEMBER_COLUMNS, "activated_at") if limit is not None else MEMBER_COLUMNS
        say(*table(rows, (*columns, "invite_error") if refused else columns))
    if page.next is not None:
        say(f"More: --after {page.next}", err=True)


@cli.command()
@org_option
@json_option
@pass_obj
def batches(obj: Obj, org_ref: str, as_json: bool) -> None:
    """List an organization's past imports, newest first."""
    from importer.store.orgs import list_batches

    rows = [batch.to_dict() for batch in list_batches(obj.engine(), org_ref)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        say(*table(rows, BATCH_COLUMNS))


@cli.group()
def batch() -> None:
    """Inspect or undo one import."""


@batch.command("show")
@click.argument("batch_id", metavar="ID")
@json_option
@pass_obj
def batch_show(obj: Obj, batch_id: str, as_json: bool) -> None:
    """Who imported what and when: file name and hash, counts, report path."""
    from importer.store.orgs import show_batch

    info = show_batch(obj.engine(), batch_id).to_dict()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    say(*(f"{key + ':':<17} {'' if value is None else value}" for key, value in info.items()))


@batch.command("undo")
@click.argument("batch_id", metavar="ID")
@click.option("--as", "actor", required=True, metavar="EMAIL", help="The acting Owner or Admin.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
@json_option
@pass_obj
def batch_undo(obj: Obj, batch_id: str, actor: str, yes: bool, as_json: bool) -> None:
    """Remove a batch's members that are still pending and revoke their links; active ones stay.

    Asks for confirmation on a terminal; without one, --yes is required. Recorded in the audit
    trail with the actor.
    """
    if not yes and not sys.stdin.isatty():
        raise click.UsageError("undoing a batch asks for confirmation and there is no terminal: add --yes.")
    from importer.accounts.audit import Acting
    from importer.accounts.batches import undo_batch
    from importer.store.orgs import show_batch

    if not yes:
        detail = show_batch(obj.engine(), batch_id)
        shown = detail.batch
        question = (
            f"Remove the {detail.members_pending} pending member(s) of batch {shown.id} ({shown.file_name}, "
            f"{detail.organization}) and revoke their links? {detail.members_active} active member(s) stay."
        )
        if not click.confirm(visible(question, one_line=True), default=False, err=True):
            say("Nothing was undone.", err=True)
            sys.exit(ExitCode.FAILED)
    result = undo_batch(obj.engine(), batch_id, acting=Acting(actor))
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
    from importer.store.engine import current_revision

    say(f"Database schema at revision {current_revision(obj.engine(create=True))}.")
