"""`importer member ...`: one member at a time, with the sheet's rules and messages.

A member refused by the sheet's rules exits 3 with the row's errors, as an import with rejected
rows does; anything else that stops a command (no such member, not allowed, the last Owner) is one
line and exit 1 (answers.py).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from importer.cli.activation import send_activations_command
from importer.cli.answers import INTERRUPTED
from importer.cli.app import F, Obj, cli, json_option, org_option, pass_obj
from importer.cli.output import say

if TYPE_CHECKING:
    from importer.accounts.audit import Acting
    from importer.accounts.members import MemberChange
    from importer.records import MemberRecord

# The options of send-activations that say how and where mail goes: `member resend` takes the
# same ones (the same Option objects, so they cannot drift apart).
SEND_OPTIONS = (
    "sender",
    "base_url",
    "transport",
    "outbox",
    "smtp_host",
    "smtp_port",
    "smtp_security",
    "smtp_user",
)


def as_option(f: F) -> F:
    """The --as option of the member commands."""
    return click.option("--as", "actor", required=True, metavar="EMAIL", help="The acting Owner or Admin.")(f)


def member_id_argument(f: F) -> F:
    """The ID argument: a member's id, as `importer members` shows it."""
    return click.argument("member_id", metavar="ID", type=click.IntRange(min=1))(f)


def send_options(f: F) -> F:
    """send-activations' transport options, on another command."""
    by_name = {param.name: param for param in send_activations_command.params}
    # What click.option does: params gathered on the function, bottom decorator first.
    params: list[click.Parameter] = getattr(f, "__click_params__", [])
    params.extend(by_name[name] for name in reversed(SEND_OPTIONS))
    f.__click_params__ = params  # type: ignore[attr-defined]
    return f


def _acting(actor: str) -> Acting:
    from importer.accounts.audit import Acting

    return Acting(actor)


def _describe(member: MemberRecord) -> str:
    who = f"{member.name} <{member.email}>" if member.email else member.name
    team = f", team {member.team}" if member.team else ""
    return f"member {member.id}: {who}, {member.role.value}{team} ({member.status.value})"


def _refused(change: MemberChange, verb: str) -> None:
    """The row's errors, as the import reports them (column, message, code); exit 3."""
    say(f"Not {verb}: the sheet's rules refuse it ({len(change.errors)} problem(s)):", err=True)
    for error in change.errors:  # each message quotes its cell already
        say(f"  {error.column}: {error.message} [{error.code.value}]", err=True)


def _finish(change: MemberChange, as_json: bool, verb: str, extra: dict[str, Any] | None = None) -> None:
    if as_json:
        click.echo(json.dumps(change.to_dict() | (extra or {})))
    elif change.refused:
        _refused(change, verb)
    sys.exit(change.exit_code)


@cli.group()
def member() -> None:
    """Manage one member: add, edit, deactivate, reactivate, remove, resend, pin."""


@member.command("add")
@org_option
@as_option
@click.option("--name", required=True, help="The member's name.")
@click.option("--email", help="Portal Access: the member's address.")
@click.option("--role", help="Portal Access: Admin or Member.")
@click.option("--team", help="An existing team of the organization (optional).")
@click.option("--no-portal", is_flag=True, help="A No Portal Access member (no email, no password).")
@click.option("--pin", help="No Portal Access: 4-8 digits; generated when not given.")
@json_option
@pass_obj
def member_add(
    obj: Obj,
    org_ref: str,
    actor: str,
    name: str,
    email: str | None,
    role: str | None,
    team: str | None,
    no_portal: bool,
    pin: str | None,
    as_json: bool,
) -> None:
    """Add one member, checked by the same rules as a sheet's row.

    Exit status: 0 added; 3 refused by the sheet's rules (the row's errors are printed); 1 not
    allowed (privileges, unknown organization). A generated PIN is printed this once.
    """
    if no_portal and (email is not None or role is not None):
        raise click.UsageError("--email and --role are for Portal Access members; --no-portal has neither.")
    if pin is not None and not no_portal:
        raise click.UsageError("--pin is for No Portal Access members: add --no-portal.")
    from importer.accounts.members import NewMember, add_member

    change = add_member(
        obj.engine(),
        org_ref,
        acting=_acting(actor),
        member=NewMember(name=name, email=email, role=role, team=team, portal=not no_portal, pin=pin),
    )
    generated = change.pin if change.pin is not None and not (pin or "").strip() else None
    if not as_json and change.member is not None:
        say(f"Added {_describe(change.member)}.")
        if change.invitation:
            say(f"{change.member.email} already has an account: the email will be an invitation to accept.")
        if change.member.email:
            say("`importer send-activations --org ORG` emails the link.")
        if generated:
            say(f"PIN: {generated} (shown this once and stored only hashed: hand it over now).")
    _finish(change, as_json, "added", {"pin": generated} if generated else None)


@member.command("edit")
@member_id_argument
@org_option
@as_option
@click.option("--name", help="A new name.")
@click.option("--email", help="A new address (a pending member only; the old link stops working).")
@click.option("--role", help="Admin or Member (the privilege rules apply).")
@click.option("--team", help="A team of the organization; an empty value for no team.")
@json_option
@pass_obj
def member_edit(
    obj: Obj,
    member_id: int,
    org_ref: str,
    actor: str,
    name: str | None,
    email: str | None,
    role: str | None,
    team: str | None,
    as_json: bool,
) -> None:
    """Edit a member's name, email, role or team, checked by the sheet's rules.

    Exit status: 0 changed (or nothing to change); 3 refused by the sheet's rules; 1 not allowed
    (privileges, the last active Owner, an active member's address).
    """
    if name is None and email is None and role is None and team is None:
        raise click.UsageError("nothing to change: give --name, --email, --role or --team.")
    from importer.accounts.members import MemberEdit, edit_member

    change = edit_member(
        obj.engine(),
        org_ref,
        member_id,
        acting=_acting(actor),
        edit=MemberEdit(name=name, email=email, role=role, team=team),
    )
    if not as_json and change.member is not None:
        what = ", ".join(change.changed)
        shown = _describe(change.member)
        say(f"Changed {what} of {shown}." if what else f"Nothing to change: {shown}.")
        if "email" in change.changed:
            say("The old link no longer works; `importer member resend` sends one to the new address.")
    _finish(change, as_json, "changed")


def _state_command(name: str, help_text: str, done: str) -> None:
    """deactivate, reactivate, remove: the same shape, one library call each."""

    @member.command(name, help=help_text)
    @member_id_argument
    @org_option
    @as_option
    @json_option
    @pass_obj
    def command(obj: Obj, member_id: int, org_ref: str, actor: str, as_json: bool) -> None:
        from importer.accounts import members

        call: Callable[..., MemberRecord] = getattr(members, f"{name}_member")
        view = call(obj.engine(), org_ref, member_id, acting=_acting(actor))
        if as_json:
            click.echo(json.dumps(view.to_dict()))
        else:
            say(f"{done} {_describe(view)}.")


_state_command(
    "deactivate",
    "Deactivate a member: they can no longer sign in to this organization (kept, listed as deactivated).",
    "Deactivated",
)
_state_command(
    "reactivate",
    "Reactivate a deactivated member: active again if they had activated, else pending.",
    "Reactivated",
)
_state_command(
    "remove",
    "Remove a pending member (their links die with them); deactivate an active member instead.",
    "Removed",
)


@member.command("pin")
@member_id_argument
@org_option
@as_option
@json_option
@pass_obj
def member_pin(obj: Obj, member_id: int, org_ref: str, actor: str, as_json: bool) -> None:
    """Give a No Portal Access member a new PIN, printed this once (stored only hashed)."""
    from importer.accounts.members import regenerate_pin

    new = regenerate_pin(obj.engine(), org_ref, member_id, acting=_acting(actor))
    if as_json:
        click.echo(json.dumps({"member": new.member.to_dict(), "pin": new.pin}))
    else:
        say(
            f"New PIN of {_describe(new.member)}: {new.pin}",
            "Shown this once and stored only hashed: hand it over now. The old PIN no longer works.",
        )


@member.command("resend")
@member_id_argument
@org_option
@as_option
@send_options
@json_option
@pass_obj
def member_resend(
    obj: Obj,
    member_id: int,
    org_ref: str,
    actor: str,
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
    """Send one pending member's invitation again: a new link; the old one stops working.

    Exit status: 0 sent; 3 the mail server refused the recipient (recorded, shown by `members`);
    1 not allowed, not pending, or no mail could go.
    """
    if not sender:
        raise click.UsageError("--from ADDRESS (or IMPORTER_FROM) is required.")
    if not base_url:
        raise click.UsageError("--base-url URL (or IMPORTER_BASE_URL) is required.")
    password = os.environ.get("IMPORTER_SMTP_PASSWORD")
    if smtp_user and not password and transport == "smtp":
        raise click.UsageError("--smtp-user needs the password in IMPORTER_SMTP_PASSWORD.")
    from importer.accounts.invitations import resend_target
    from importer.activation.sending import send_activations
    from importer.activation.transports.file import FileTransport
    from importer.activation.transports.smtp import SmtpSecurity, SmtpTransport
    from importer.errors import ConflictError

    acting = _acting(actor)
    engine = obj.engine()
    target = resend_target(engine, org_ref, member_id, acting=acting)
    chosen: FileTransport | SmtpTransport = (
        FileTransport(outbox)
        if transport == "file"
        else SmtpTransport(
            smtp_host, port=smtp_port, security=SmtpSecurity(smtp_security), user=smtp_user, password=password
        )
    )
    click.get_current_context().meta[INTERRUPTED] = "the invitation may or may not have gone."
    with chosen:
        result = send_activations(
            engine, org_ref, transport=chosen, sender=sender, base_url=base_url,
            resend=True, member_ids=(target.id,), acting=acting,
        )  # fmt: skip
    if result.sent + result.failed == 0:  # activated or removed between the check and the send
        raise ConflictError(f"{target.shown} is no longer pending: nothing was sent.")
    refused = result.failures[0].error if result.failures else None
    # The send audited the message itself (invitation.resent or .refused), with this actor.
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    elif refused is not None:
        say(f"The mail server refused {target.shown}: {refused}", err=True)
    else:
        where = f" to {outbox}/" if transport == "file" else f" via {smtp_host}"
        say(f"Sent a new invitation to {target.shown}{where}; the old link no longer works.")
    sys.exit(result.exit_code)
