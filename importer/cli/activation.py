"""The activation commands: `send-activations` emails the links, `activate` sets a password."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from importer.cli.answers import INTERRUPTED
from importer.cli.app import Obj, cli, json_option, org_option, pass_obj
from importer.cli.output import say

# activation.mail.SmtpSecurity's values, spelt here so that `--help` loads no mail library
# (tests/test_cli.py keeps the two in step).
SMTP_SECURITY = ("none", "starttls", "tls")
# transports.smtp.MAX_SMTP_CONNECTIONS, spelt here for the same reason (kept in step the same way).
MAX_SMTP_CONNECTIONS = 8

if TYPE_CHECKING:
    from importer.activation.transports.file import FileTransport
    from importer.activation.transports.smtp import SmtpTransport
    from importer.values import SendResult

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class MailOptions:
    """The send options, as `send-activations` and `org create --send` take them."""

    sender: str | None
    base_url: str | None
    transport: str
    outbox: Path
    smtp_host: str
    smtp_port: int | None
    smtp_security: str
    smtp_user: str | None

    def require(self) -> tuple[str, str]:
        """The sender and the base URL, both needed to send."""
        if not self.sender:
            raise click.UsageError("--from ADDRESS (or IMPORTER_FROM) is required.")
        return self.sender, self.require_base_url()

    def require_base_url(self) -> str:
        """The portal's address, which every link starts with."""
        if not self.base_url:
            raise click.UsageError(
                "--base-url URL (or IMPORTER_BASE_URL) is required: the portal's address, "
                "which the activation links start with."
            )
        return self.base_url

    def open_transport(self, *, connections: int = 1) -> FileTransport | SmtpTransport:
        """The transport chosen (its password from IMPORTER_SMTP_PASSWORD, never an argument);
        `connections`: how many SMTP connections may send at once (the file transport: one)."""
        password = os.environ.get("IMPORTER_SMTP_PASSWORD")
        if self.smtp_user and not password and self.transport == "smtp":
            raise click.UsageError("--smtp-user needs the password in IMPORTER_SMTP_PASSWORD.")
        from importer.activation.transports.file import FileTransport
        from importer.activation.transports.smtp import SmtpSecurity, SmtpTransport

        if self.transport == "file":
            return FileTransport(self.outbox)
        return SmtpTransport(
            self.smtp_host,
            port=self.smtp_port,
            security=SmtpSecurity(self.smtp_security),
            user=self.smtp_user,
            password=password,
            connections=connections,
        )

    def where(self) -> str:
        """Where the messages went, in words."""
        return f" to {self.outbox}/" if self.transport == "file" else f" via {self.smtp_host}"


_MAIL_OPTIONS = (
    click.option(
        "--from", "sender", envvar="IMPORTER_FROM", metavar="ADDRESS", help="From address (or IMPORTER_FROM)."
    ),
    click.option(
        "--base-url", envvar="IMPORTER_BASE_URL", metavar="URL", help="Portal URL (or IMPORTER_BASE_URL)."
    ),
    click.option("--transport", type=click.Choice(["file", "smtp"]), default="file", show_default=True),
    click.option(
        "--outbox",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("outbox"),
        show_default=True,
        help="File transport: the folder that gets one .eml per message.",
    ),
    click.option("--smtp-host", default="localhost", show_default=True),
    click.option(
        "--smtp-port", type=click.IntRange(1, 65535), help="Default: 25, 587 (starttls) or 465 (tls)."
    ),
    click.option("--smtp-security", type=click.Choice(SMTP_SECURITY), default="none", show_default=True),
    click.option("--smtp-user", help="Log in as this user; the password comes from IMPORTER_SMTP_PASSWORD."),
)
_MAIL_NAMES = tuple(field.name for field in fields(MailOptions))


def mail_options(f: F) -> F:
    """The send options, declared once, handed to the command as one `mail: MailOptions`."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        mail = MailOptions(**{name: kwargs.pop(name) for name in _MAIL_NAMES})
        return f(*args, mail=mail, **kwargs)

    for option in reversed(_MAIL_OPTIONS):
        wrapper = option(wrapper)
    return cast(F, wrapper)


def say_refused(result: SendResult) -> None:
    """The refused recipients, and where their summary went."""
    say(*(f"  refused: {failure.email}: {failure.error}" for failure in result.failures))
    if result.summary_to:
        say(f"The list of refused addresses was emailed to {result.summary_to}.")


@cli.command("send-activations")
@org_option
@click.option("--batch", "batch_id", metavar="ID", help="Only the members of this import.")
@click.option(
    "--resend", is_flag=True, help="Also those emailed but not yet active (a new link; the old one dies)."
)
@click.option(
    "--as",
    "actor",
    metavar="EMAIL",
    help="The acting Owner or Admin: the audit names them, and they get the list of refused addresses.",
)
@mail_options
@click.option(
    "--smtp-connections",
    type=click.IntRange(1, MAX_SMTP_CONNECTIONS),
    default=1,
    show_default=True,
    help="SMTP: send over this many connections at once (a server may allow a client only a few).",
)
@json_option
@pass_obj
def send_activations_command(
    obj: Obj,
    org_ref: str,
    batch_id: str | None,
    resend: bool,
    actor: str | None,
    mail: MailOptions,
    smtp_connections: int,
    as_json: bool,
) -> None:
    """Email the activation link to pending portal members who have not been emailed.

    An address that already has an account gets an invitation to accept instead. Exit status: 0
    all sent; 3 some recipients refused (recorded on the member, shown by `members`); 1 nothing
    could be sent (server unreachable, login refused).
    """
    # Each member's state is committed as its message goes: an interrupt keeps what was sent.
    click.get_current_context().meta[INTERRUPTED] = (
        "the messages sent before it are recorded; run it again to send the rest."
    )
    sender, base_url = mail.require()
    chosen = mail.open_transport(connections=smtp_connections)
    from importer.accounts.audit import Acting
    from importer.activation.sending import send_activations
    from importer.errors import TransportError

    try:
        with chosen:
            result = send_activations(
                obj.engine(), org_ref, transport=chosen, sender=sender, base_url=base_url,
                batch_id=batch_id, resend=resend, acting=Acting(actor) if actor else None,
            )  # fmt: skip
    except TransportError as exc:
        if as_json and exc.result is not None:
            click.echo(json.dumps(exc.result.to_dict()))
        raise
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        say(
            f"Sent {result.sent}{mail.where()}; {result.failed} failed; "
            f"{result.skipped} already emailed (see --resend)."
        )
        say_refused(result)
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
    """Follow an activation link (or its token): set the password, and the member becomes active.

    An invitation for an address that already has an account is accepted without a password.
    Without TOKEN the link is asked for without echo, or read from the first line of standard
    input when that is not a terminal: it then never shows in the process list. The link is
    checked before the password is asked for.
    """
    terminal = sys.stdin.isatty()
    if token is None:
        token = click.prompt("Activation link", hide_input=True) if terminal else sys.stdin.readline()
        if not token.strip():
            raise click.UsageError("no activation link given: paste the link from the email.")
    from importer.activation.activating import activate, check_token

    link = check_token(obj.engine(), token)
    if link.has_account:
        accepted = activate(obj.engine(), token, None)
        say(
            f"{accepted.email} has joined {accepted.organization}. Sign in with the password you "
            "already have."
        )
        return
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif terminal:
        say(f"Choose the password of {link.email} in {link.organization}. It needs {link.policy.describe()}.")
        password = click.prompt("New password", hide_input=True, confirmation_prompt="Repeat the password")
    else:
        raise click.UsageError(
            "there is no terminal to ask for the password: give it on standard input with --password-stdin."
        )
    member = activate(obj.engine(), token, password)
    say(f"{member.email} is now active in {member.organization}. Sign in with your email and password.")
