"""Mail: composing the activation message, and the transports that deliver it (file, SMTP).

A message is built around a skeleton made once per run (see Composer), so composing costs
microseconds; a transport takes the finished RFC 5322 bytes and raises RecipientRefused for one
refused recipient (the run records it and goes on) or TransportError when nothing can go.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import enum
import functools
import ipaddress
import os
import re
import secrets
import smtplib
import socket
import ssl
import threading
import time
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email import errors as email_errors
from email import policy as email_policy
from email.message import EmailMessage
from email.parser import Parser
from email.utils import format_datetime
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import jinja2
import markupsafe
from email_validator import EmailNotValidError, validate_email

from importer.checks.emails import check_email
from importer.errors import ImporterError, RecipientRefused, TransportError

SUBJECT = "Your account has been created!"
# Each read from the SMTP server must come within the timeout; each message, and each connection's
# set-up (greeting, EHLO, STARTTLS, login), must be done within the deadline.
DEFAULT_SMTP_TIMEOUT = 30.0
DEFAULT_SMTP_DEADLINE = 120.0


class UnsendableAddress(Exception):
    """A stored address that cannot be put on an envelope (reported against the member)."""


# --- rendering and composing -------------------------------------------------------------------


@functools.cache
def _templates() -> tuple[jinja2.Template, jinja2.Template]:
    """The compiled text and HTML templates, loaded once per process."""
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
    return (
        environment.get_template("email/activation.txt.j2"),
        environment.get_template("email/activation.html.j2"),
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
            raise RuntimeError(f"{template.name} cannot be prerendered: it does more than print values")

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


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One composed email: envelope sender and recipient, Message-ID, RFC 5322 bytes (LF ends).

    `smtputf8`: the recipient has non-ASCII characters before the @, so the envelope and the To
    header carry it in UTF-8 (RFC 6531, RFC 6532) and only a server offering SMTPUTF8 can take it.
    """

    sender: str
    recipient: str
    message_id: str
    data: bytes
    smtputf8: bool = False

    def to_email(self) -> EmailMessage:
        """The message parsed back with the default policy, for inspection and previews."""
        # The bytes parser would read a UTF-8 header (RFC 6532) as undecodable bytes.
        parsed = Parser(_class=EmailMessage, policy=email_policy.default).parsestr(self.data.decode("utf-8"))
        assert isinstance(parsed, EmailMessage)
        return parsed


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


class Composer:
    """Composes each message around a skeleton built once per run with EmailMessage.

    Building and serializing an EmailMessage with the default policy costs milliseconds per
    message (header parsing and refolding); the skeleton carries every constant header and the
    MIME structure; only To, Date, Message-ID and the two bodies (text as quoted-printable, HTML as
    base64) change.
    """

    def __init__(self, *, sender: str, organization: str) -> None:
        skeleton = EmailMessage(policy=email_policy.default)
        try:
            skeleton["From"] = sender.strip()
            addresses = skeleton["From"].addresses
        except (ValueError, email_errors.MessageError) as exc:
            raise ImporterError(f"the sender {sender!r} is not an email address: {exc}.") from exc
        from_address = addresses[0].addr_spec if len(addresses) == 1 else ""
        if not from_address.isascii() or check_email(from_address) is not None:
            raise ImporterError(
                f"the sender {sender!r} is not one valid ASCII email address; "
                "give one such as 'Acme <no-reply@acme.example>'."
            )
        skeleton["Subject"] = SUBJECT
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
        text_template, html_template = _templates()
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


# --- transports --------------------------------------------------------------------------------


class Transport(Protocol):
    """Delivers messages; raises RecipientRefused for one refused recipient, TransportError else."""

    def send(self, message: OutgoingMessage, /) -> None:
        """Deliver one message."""


_SAFE_STEM = re.compile(r"[A-Za-z0-9_-]+")
# A message being written: `.<stem>.eml.<host>-<pid>.tmp`, renamed to `<stem>.eml` once complete.
# The owner in the name lets a later run remove what a killed one left (older versions wrote
# `.<stem>.eml.tmp`, without an owner).
_TEMPORARY = re.compile(r"\.[A-Za-z0-9_-]+\.eml(?:\.(?P<host>[A-Za-z0-9-]*)-(?P<pid>[0-9]+))?\.tmp")


@functools.cache
def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:64]


def _is_abandoned(temporary: re.Match[str]) -> bool:
    """Whether a temporary file's writer is gone (a process of this host that no longer runs)."""
    if temporary["pid"] is None:
        return True
    pid = int(temporary["pid"])
    if temporary["host"] != _host_tag() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


class _ClosedOnExit:
    """`with transport:` closes it, whatever happens inside."""

    def close(self) -> None:
        """Release what the transport holds."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class FileTransport(_ClosedOnExit):
    """Writes one `<member id>-<token hash prefix>.eml` per message to an outbox folder (mode 0600).

    Each file is written under a temporary name and renamed into place, so an .eml is always
    complete; a run killed mid-write leaves a hidden temporary file, which the next run removes.
    """

    def __init__(self, outbox: Path) -> None:
        self.outbox = Path(outbox)
        self._folder = os.fspath(self.outbox)
        self._ready = False
        self._swept = False
        self._temporary_suffix = f".eml.{_host_tag()}-{os.getpid()}.tmp"

    def send(self, message: OutgoingMessage, /) -> None:
        """Write the message atomically: a temporary file renamed into place."""
        stem = message.message_id.partition("@")[0]
        if not _SAFE_STEM.fullmatch(stem):
            stem = re.sub(r"[^A-Za-z0-9_-]", "_", stem) or uuid.uuid4().hex
        final = os.path.join(self._folder, f"{stem}.eml")
        temporary = os.path.join(self._folder, f".{stem}{self._temporary_suffix}")
        try:
            if not self._ready:
                self.outbox.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._sweep()
                self._ready = True
            # The file holds a live token: readable by its owner only.
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                remaining = memoryview(message.data)
                while remaining:
                    remaining = remaining[os.write(descriptor, remaining) :]
            finally:
                os.close(descriptor)
            os.replace(temporary, final)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            if isinstance(exc, OSError):
                raise TransportError(
                    f"cannot write to the outbox {self.outbox}: {exc.strerror or exc}"
                ) from exc
            raise

    def _sweep(self) -> None:
        """Remove the temporary files of runs that were killed mid-write (once per transport)."""
        if self._swept:
            return
        self._swept = True
        with contextlib.suppress(OSError), os.scandir(self._folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    found = _TEMPORARY.fullmatch(entry.name)
                    if found is not None and _is_abandoned(found):
                        with contextlib.suppress(OSError):
                            os.unlink(entry.path)

    def close(self) -> None:
        """Remove what killed runs left in the outbox, if this run did not already."""
        self._sweep()


class SmtpSecurity(enum.StrEnum):
    """How the SMTP connection is protected."""

    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


DEFAULT_SMTP_PORTS: dict[SmtpSecurity, int] = {
    SmtpSecurity.NONE: 25,
    SmtpSecurity.STARTTLS: 587,
    SmtpSecurity.TLS: 465,
}


class _Disconnected(Exception):
    """The server dropped the connection (or said 421); worth one reconnection."""


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return f"{code} {' '.join(text.split())}"


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Watch:
    """Shuts the SMTP connection down when an exchange outlives its deadline.

    smtplib's timeout bounds each read, so a server that sends a line (or a byte) just inside it
    keeps one command going for ever. A thread, started at first use, waits for the armed deadline
    and then shuts the socket down: a blocked read or write returns at once, whatever smtplib or
    TLS was doing. It shuts a duplicate of the socket's descriptor, so STARTTLS replacing the socket
    object changes nothing. Arming is a lock and a notify: nothing per message worth measuring.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._due: float | None = None
        self._depth = 0
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.expired = False

    def arm(self, seconds: float) -> None:
        """Start the deadline (an exchange inside an armed one keeps the outer deadline)."""
        with self._changed:
            self._depth += 1
            if self._depth > 1:
                return
            self._due = time.monotonic() + seconds
            self.expired = False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="smtp-deadline", daemon=True)
                self._thread.start()
            self._changed.notify()

    def disarm(self) -> bool:
        """End the exchange; whether its deadline passed (the connection is then shut down)."""
        with self._changed:
            self._depth -= 1
            if self._depth == 0:
                self._due = None
            return self.expired

    def attach(self, connection: socket.socket) -> None:
        """Watch this connection's socket from now on."""
        duplicate = socket.fromfd(connection.fileno(), connection.family, connection.type)
        with self._changed:
            self._release()
            self._socket = duplicate
            if self.expired:
                self._shut()

    def detach(self) -> None:
        """Forget the connection (it is closed)."""
        with self._changed:
            self._release()

    def stop(self) -> None:
        """End the thread."""
        with self._changed:
            self._release()
            self._stopping = True
            self._changed.notify()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        self._stopping = False

    def _run(self) -> None:
        with self._changed:
            while not self._stopping:
                if self._due is None:
                    self._changed.wait()
                    continue
                left = self._due - time.monotonic()
                if left > 0:
                    self._changed.wait(left)
                    continue
                self._due = None
                self.expired = True
                self._shut()

    def _shut(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)

    def _release(self) -> None:
        watched, self._socket = self._socket, None
        if watched is not None:
            watched.close()


class _WatchedSmtp(smtplib.SMTP):
    """smtplib.SMTP whose socket the deadline watch can shut down from the moment it connects."""

    def __init__(self, host: str, port: int, *, timeout: float, watch: _Watch) -> None:
        self._watch = watch
        super().__init__(host, port, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        # smtplib's one hook between creating the socket and reading the greeting (SMTP_SSL's
        # handshake comes after it); typeshed does not declare it.
        connection: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        self._watch.attach(connection)
        return connection


class _WatchedSmtpSsl(smtplib.SMTP_SSL, _WatchedSmtp):
    """smtplib.SMTP_SSL, watched from before its TLS handshake (see the class order)."""

    def __init__(
        self, host: str, port: int, *, timeout: float, watch: _Watch, context: ssl.SSLContext
    ) -> None:
        self._watch = watch
        smtplib.SMTP_SSL.__init__(self, host, port, timeout=timeout, context=context)


class SmtpTransport(_ClosedOnExit):
    """Sends over one SMTP connection for the whole run; reconnects once if the server drops it."""

    def __init__(
        self,
        host: str,
        *,
        port: int | None = None,
        security: SmtpSecurity = SmtpSecurity.NONE,
        user: str | None = None,
        password: str | None = None,
        timeout: float = DEFAULT_SMTP_TIMEOUT,
        deadline: float = DEFAULT_SMTP_DEADLINE,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if user is not None and security is SmtpSecurity.NONE and not _is_loopback(host):
            raise ImporterError(
                f"refusing to send the SMTP password to {host} in clear; use --smtp-security starttls or tls."
            )
        self.host = host
        self.port = DEFAULT_SMTP_PORTS[security] if port is None else port
        self.security = security
        self.user = user
        self._password = password
        self.timeout = min(timeout, deadline)
        self.deadline = deadline
        self._ssl_context = ssl_context
        self._smtp: smtplib.SMTP | None = None
        self._watch = _Watch()

    @property
    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    def send(self, message: OutgoingMessage, /) -> None:
        """Send one message; a dropped connection is reopened once before giving up."""
        data = message.data.replace(b"\n", b"\r\n")
        try:
            self._send_once(message, data)
        except _Disconnected:
            self._drop()
            try:
                self._send_once(message, data)
            except _Disconnected as exc:
                self._drop()
                raise TransportError(
                    f"the SMTP server {self._where} dropped the connection twice in a row ({exc})."
                ) from exc

    @contextlib.contextmanager
    def _within_deadline(self, what: str) -> Iterator[None]:
        """Run one exchange with the server; past the deadline it fails as a TransportError."""
        self._watch.arm(self.deadline)
        try:
            yield
        except Exception as exc:
            if self._watch.disarm():
                self._drop()
                raise TransportError(
                    f"the SMTP server {self._where} took more than {self.deadline:g} s to {what}; "
                    "a server that slow cannot be used"
                ) from exc
            raise
        else:
            if self._watch.disarm():  # done just as the deadline passed: the socket is shut
                self._drop()

    def _send_once(self, message: OutgoingMessage, data: bytes) -> None:
        smtp = self._connection()
        with self._within_deadline("take a message"):
            self._transact(smtp, message, data)

    def _transact(self, smtp: smtplib.SMTP, message: OutgoingMessage, data: bytes) -> None:
        try:
            options = self._utf8_options(smtp, message) if message.smtputf8 else ()
            refused = smtp.sendmail(message.sender, [message.recipient], data, mail_options=options)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = exc.recipients.get(message.recipient, (550, b"refused"))
            if code == 421:
                raise _Disconnected(_reply(code, reply)) from exc
            raise RecipientRefused(message.recipient, _reply(code, reply)) from exc
        except smtplib.SMTPServerDisconnected as exc:
            raise _Disconnected(str(exc)) from exc
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code == 421:
                raise _Disconnected(_reply(exc.smtp_code, exc.smtp_error)) from exc
            if isinstance(exc, smtplib.SMTPDataError):
                raise RecipientRefused(message.recipient, _reply(exc.smtp_code, exc.smtp_error)) from exc
            self._quit()
            what = "the sender" if isinstance(exc, smtplib.SMTPSenderRefused) else "a command"
            raise TransportError(
                f"the SMTP server {self._where} refused {what}: {_reply(exc.smtp_code, exc.smtp_error)}"
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise RecipientRefused(message.recipient, str(exc)) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise _Disconnected(str(exc) or type(exc).__name__) from exc
        if refused:
            code, reply = next(iter(refused.values()))
            raise RecipientRefused(message.recipient, _reply(code, reply))

    def _utf8_options(self, smtp: smtplib.SMTP, message: OutgoingMessage) -> tuple[str, ...]:
        """MAIL FROM's options for a UTF-8 recipient; refused when the server cannot take one."""
        smtp.ehlo_or_helo_if_needed()
        if not smtp.has_extn("smtputf8"):
            raise RecipientRefused(
                message.recipient,
                f"the SMTP server {self._where} does not offer SMTPUTF8, which an address with "
                "non-ASCII characters before the @ needs; ask its administrator to enable it",
            )
        return ("SMTPUTF8", "BODY=8BITMIME") if smtp.has_extn("8bitmime") else ("SMTPUTF8",)

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is None:
            with self._within_deadline("open a session"):
                self._smtp = self._connect()
        return self._smtp

    def _connect(self) -> smtplib.SMTP:
        context = self._ssl_context or ssl.create_default_context()
        try:
            if self.security is SmtpSecurity.TLS:
                smtp: smtplib.SMTP = _WatchedSmtpSsl(
                    self.host, self.port, timeout=self.timeout, watch=self._watch, context=context
                )
            else:
                smtp = _WatchedSmtp(self.host, self.port, timeout=self.timeout, watch=self._watch)
        except (smtplib.SMTPException, OSError) as exc:
            raise TransportError(
                f"cannot connect to the SMTP server {self._where}: {exc or type(exc).__name__}"
            ) from exc
        try:
            if self.security is SmtpSecurity.STARTTLS:
                smtp.starttls(context=context)
            if self.user is not None:
                smtp.login(self.user, self._password or "")
        except smtplib.SMTPAuthenticationError as exc:
            smtp.close()
            raise TransportError(
                f"the SMTP server {self._where} refused the login of {self.user}: "
                f"{_reply(exc.smtp_code, exc.smtp_error)}"
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise TransportError(
                f"cannot open a session with the SMTP server {self._where}: {exc or type(exc).__name__}"
            ) from exc
        return smtp

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()
        self._watch.detach()

    def _quit(self) -> None:
        """Say QUIT (within the deadline) and close the connection, if one is open."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        self._watch.arm(self.deadline)
        try:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
        finally:
            smtp.close()
            self._watch.disarm()
            self._watch.detach()

    def close(self) -> None:
        """Say QUIT and close the connection, if one is open; end the deadline's watch."""
        try:
            self._quit()
        finally:
            self._watch.stop()
