"""Composing the activation message: the templates rendered once per run, each message joined
around a skeleton built once (see Composer), so composing costs microseconds.

The transports that deliver the finished bytes live in transports/ (one module each).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import functools
import re
import secrets
import unicodedata
from collections.abc import Sequence
from email import errors as email_errors
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import jinja2
import markupsafe
from email_validator import EmailNotValidError, validate_email

from importer.activation.transports.base import OutgoingMessage
from importer.addresses import check_email
from importer.errors import ImporterError, UnsendableAddress
from importer.values import SendFailure

SUBJECT = "Your account has been created!"
INVITATION_SUBJECT = "You have been added to {organization}"


class MailKind(enum.Enum):
    """Which email a pending portal member gets: an activation (the address's first account) or an
    invitation (the address already has an account: accept, no password)."""

    ACTIVATION = "activation"
    INVITATION = "invitation"

    def subject(self, organization: str) -> str:
        """The subject line, exactly as PRODUCT.md states it."""
        if self is MailKind.ACTIVATION:
            return SUBJECT
        return INVITATION_SUBJECT.format(organization=_clean_display_name(organization))


@functools.cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("importer", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # The templates use no globals; without them each render skips merging jinja's defaults.
    environment.globals.clear()
    return environment


@functools.cache
def _templates(kind: MailKind = MailKind.ACTIVATION) -> tuple[jinja2.Template, jinja2.Template]:
    """The compiled text and HTML templates of a kind of email, loaded once per process."""
    environment = _environment()
    return (
        environment.get_template(f"email/{kind.value}.txt.j2"),
        environment.get_template(f"email/{kind.value}.html.j2"),
    )


def _clean_display_name(name: str) -> str:
    """A name fit for a header and a greeting: no control or format characters, one line."""
    if not name.isprintable():
        name = "".join(
            " " if unicodedata.category(ch)[0] == "C" or ch in "\u2028\u2029" else ch for ch in name
        )
    return " ".join(name.split())


class _Prerendered:
    """A template rendered once per run, with a marker where each member's values go.

    Rendering it again per member is then a join of fixed parts and that member's values, escaped
    as the template's autoescape would (a third of the time jinja took per message). The
    activation templates only print these values; a template that branched on one would not be
    cut the same way, which the constructor notices and refuses.
    """

    def __init__(self, template: jinja2.Template, *, organization: str, html: bool) -> None:
        tag = secrets.token_hex(8)
        markers = {f"\x00{tag}{key}\x00": key for key in _MEMBER_VALUES}
        by_key = {key: marker for marker, key in markers.items()}
        rendered = template.render(organization=organization, **by_key)
        pieces = re.split(f"(\x00{tag}[a-z_]+\x00)", rendered)
        self.parts = pieces[0::2]
        self.slots = [markers[marker] for marker in pieces[1::2]]
        self.html = html
        check = {"name": "A & <b>", "link": "https://x.example/?a=1&b='2'", "expires_on": "1 May"}
        if self.render(**check) != template.render(organization=organization, **check):
            raise ImporterError(
                f"the email template {template.name} cannot be used: it does more than print the "
                f"member's values ({', '.join(_MEMBER_VALUES)})."
            )

    def render(self, **values: str) -> str:
        """The template rendered for one member's values."""
        if self.html:
            values = {key: str(markupsafe.escape(value)) for key, value in values.items()}
        out = [self.parts[0]]
        for slot, part in zip(self.slots, self.parts[1:], strict=True):
            out.append(values[slot])
            out.append(part)
        return "".join(out)


_MEMBER_VALUES = ("name", "link", "expires_on")


_TEXT_MARK = b"@@activation-text@@\n"
_HTML_MARK = b"@@activation-html@@\n"


# A plain ASCII addr-spec: nothing in it can end a header or need encoding.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
)
# Bytes of UTF-8 per RFC 2047 encoded-word: base64 of 45 bytes plus "=?utf-8?b??=" is 72 <= 75.
_ENCODED_WORD_BYTES = 45


def _envelope_address(address: str) -> str:
    """The addr-spec to send to: ASCII, with an international domain as IDNA, where it can be.

    Non-ASCII characters before the @ have no ASCII form: such an address goes as email-validator
    normalizes it, in UTF-8, and its message needs SMTPUTF8 (see OutgoingMessage.smtputf8).
    """
    address = address.strip()
    if _PLAIN_ADDRESS.fullmatch(address):
        return address
    try:
        valid = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise UnsendableAddress(f"cannot send to {address!r}: {exc}") from exc
    return valid.ascii_email or valid.normalized


def _encoded_words(text: str) -> str:
    """RFC 2047 encoded-words (UTF-8, base64), each within the 75-character limit, folded."""
    chunks: list[bytes] = []
    chunk = b""
    for ch in text:
        piece = ch.encode("utf-8", "replace")
        if len(chunk) + len(piece) > _ENCODED_WORD_BYTES:
            chunks.append(chunk)
            chunk = b""
        chunk += piece
    chunks.append(chunk)
    return "\n ".join(f"=?utf-8?b?{base64.b64encode(c).decode('ascii')}?=" for c in chunks)


# As email.utils.formataddr: a display name with one of these is quoted, and these escaped in it.
_NAME_SPECIALS = re.compile(r'[][\\()<>@,:;".]')
_NAME_ESCAPES = re.compile(r'[\\"]')


def _display_phrase(name: str) -> str:
    """The name as a header phrase: quoted as formataddr would, or encoded-words when not ASCII."""
    if not name.isascii():
        return _encoded_words(name)
    if _NAME_SPECIALS.search(name):
        return '"' + _NAME_ESCAPES.sub(r"\\\g<0>", name) + '"'
    return name


def _to_header(name: str, address: str) -> bytes:
    """The To header's value; the name cannot start a new line; a non-ASCII address is UTF-8 (RFC 6532)."""
    value = f"{_display_phrase(name)} <{address}>" if name else address
    return value.encode("utf-8")


@functools.lru_cache(maxsize=8)
def _date_header(moment: dt.datetime) -> bytes:
    return format_datetime(moment.replace(tzinfo=dt.UTC)).encode("ascii")


def _quoted_printable(text: str) -> bytes:
    # QP encodes every "=", so no body line can ever read as the "--==...==" boundary.
    body = binascii.b2a_qp(text.replace("\r\n", "\n").encode("utf-8"), istext=True)
    return body if body.endswith(b"\n") else body + b"\n"


def _base64_lines(text: str) -> bytes:
    """base64.encodebytes' output (76-character lines), encoded in one C call, not one per line."""
    # Base64 has no "-": no body line can read as the boundary either. Faster than QP for HTML.
    encoded = binascii.b2a_base64(text.encode("utf-8"), newline=False)
    return b"".join([encoded[i : i + 76] + b"\n" for i in range(0, len(encoded), 76)])


def _sender_addresses(message: EmailMessage, sender: str) -> tuple[Address, ...]:
    """Set the message's From; refused unless it is one valid ASCII address."""
    try:
        message["From"] = sender.strip()
        addresses: tuple[Address, ...] = message["From"].addresses
    except (ValueError, email_errors.MessageError) as exc:
        raise ImporterError(f"the sender {sender!r} is not an email address: {exc}.") from exc
    from_address = addresses[0].addr_spec if len(addresses) == 1 else ""
    if not from_address.isascii() or check_email(from_address) is not None:
        raise ImporterError(
            f"the sender {sender!r} is not one valid ASCII email address; "
            "give one such as 'Acme <no-reply@acme.example>'."
        )
    return addresses


def check_sender(sender: str) -> str:
    """The sender's address, checked as a send run would check it (before anything is written)."""
    return _sender_addresses(EmailMessage(policy=email_policy.default), sender)[0].addr_spec


class Composer:
    """Composes each message around a skeleton built once per run with EmailMessage.

    Building and serializing an EmailMessage with the default policy costs milliseconds per
    message (header parsing and refolding); the skeleton carries every constant header and the
    MIME structure; only To, Date, Message-ID and the two bodies (text as quoted-printable, HTML as
    base64) change.
    """

    def __init__(self, *, sender: str, organization: str, kind: MailKind = MailKind.ACTIVATION) -> None:
        skeleton = EmailMessage(policy=email_policy.default)
        addresses = _sender_addresses(skeleton, sender)
        from_address = addresses[0].addr_spec
        skeleton["Subject"] = kind.subject(organization)
        skeleton["Auto-Submitted"] = "auto-generated"
        skeleton.set_content(_TEXT_MARK.decode(), cte="quoted-printable")
        skeleton.add_alternative(_HTML_MARK.decode(), subtype="html", cte="base64")
        skeleton.set_boundary(f"=={secrets.token_hex(16)}==")
        head, rest = skeleton.as_bytes().split(_TEXT_MARK)
        middle, tail = rest.split(base64.encodebytes(_HTML_MARK))
        self.sender = from_address
        self.organization = organization
        self._domain = addresses[0].domain
        self._head = head
        self._middle = middle
        self._tail = tail
        self.kind = kind
        text_template, html_template = _templates(kind)
        self._text = _Prerendered(text_template, organization=organization, html=False)
        self._html = _Prerendered(html_template, organization=organization, html=True)

    def compose(
        self,
        member_id: int,
        *,
        name: str,
        email: str,
        link: str,
        token_hash: str,
        expires_on: str,
        sent_at: dt.datetime,
    ) -> OutgoingMessage:
        """The activation message for one member; `expires_on` is the link's expiry in words."""
        recipient = _envelope_address(email)
        display = _clean_display_name(name)
        text = self._text.render(name=display, link=link, expires_on=expires_on)
        html = self._html.render(name=display, link=link, expires_on=expires_on)
        message_id = f"{member_id}-{token_hash[:12]}@{self._domain}"
        data = b"".join(
            (
                b"To: ",
                _to_header(display, recipient),
                b"\nDate: ",
                _date_header(sent_at.replace(microsecond=0)),
                b"\nMessage-ID: <",
                message_id.encode("ascii"),
                b">\n",
                self._head,
                _quoted_printable(text),
                self._middle,
                _base64_lines(html),
                self._tail,
            )
        )
        return OutgoingMessage(
            sender=self.sender,
            recipient=recipient,
            message_id=message_id,
            data=data,
            smtputf8=not recipient.isascii(),
        )


SUMMARY_SUBJECT = "Activation emails for {organization}: {count} refused"


def compose_summary(
    *,
    sender: str,
    recipient: str,
    organization: str,
    sent: int,
    refused: Sequence[SendFailure],
    sent_at: dt.datetime,
) -> OutgoingMessage:
    """The one email that tells the admin who ran a send which addresses the server refused."""
    environment = _environment()
    values = {"organization": organization, "sent": sent, "refused": list(refused)}
    text = environment.get_template("email/refused-summary.txt.j2").render(values)
    html = environment.get_template("email/refused-summary.html.j2").render(values)
    address = _envelope_address(recipient)
    message = EmailMessage(policy=email_policy.default)
    from_address = _sender_addresses(message, sender)[0].addr_spec
    message["To"] = address
    message["Subject"] = SUMMARY_SUBJECT.format(
        organization=_clean_display_name(organization), count=len(refused)
    )
    message["Date"] = format_datetime(sent_at.replace(microsecond=0, tzinfo=dt.UTC))
    message_id = make_msgid(domain=from_address.rpartition("@")[2] or None)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return OutgoingMessage(
        sender=from_address,
        recipient=address,
        message_id=message_id.strip("<>"),
        data=message.as_bytes(policy=email_policy.default.clone(linesep="\n")),
        smtputf8=not address.isascii(),
    )
