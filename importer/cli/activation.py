"""The activation commands: `send-activations` emails the links, `activate` sets a password."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from importer.cli.answers import INTERRUPTED
from importer.cli.app import Obj, cli, json_option, org_option, pass_obj
from importer.cli.output import say

# activation.mail.SmtpSecurity's values, spelt here so that `--help` loads no mail library
# (tests/test_cli.py keeps the two in step).
SMTP_SECURITY = ("none", "starttls", "tls")


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
@click.option("--smtp-security", type=click.Choice(SMTP_SECURITY), default="none", show_default=True)
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
    from importer.activation.sending import send_activations
    from importer.activation.transports.file import FileTransport
    from importer.activation.transports.smtp import SmtpSecurity, SmtpTransport
    from importer.errors import TransportError

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
    from importer.activation.activating import activate, check_token

    member = check_token(obj.engine(), token)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        say(f"Choose the password of {member.email} in {member.organization}.")
        password = click.prompt("New password", hide_input=True, confirmation_prompt="Repeat the password")
    member = activate(obj.engine(), token, password)
    say(f"{member.email} is now active in {member.organization}. Sign in with your email and password.")
