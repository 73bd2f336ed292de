"""Activation: tokens, the activation email, transports (file, SMTP), sending, activate().

A token is `secrets.token_urlsafe(32)`; only its SHA-256 is stored. `send_activations` commits a
chunk of token rows before any of their messages goes, then each member's `invited_at` right after
its own message is accepted: a rerun after a crash emails nobody twice, except the one message in
flight at the crash, and every link that went out works until a newer one replaces it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import enum
import functools
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import smtplib
import sqlite3
import ssl
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email import errors as email_errors
from email import policy as email_policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, formataddr
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Protocol, Self
from urllib.parse import parse_qs, urlsplit

import jinja2
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import ColumnElement, Connection, Engine, bindparam, func, insert, select, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Update

from importer.emails import check_email
from importer.errors import (
    ActivationError,
    ImporterError,
    NotFoundError,
    PermissionDeniedError,
    RecipientRefused,
    TransportError,
)
from importer.models import (
    ActivationToken,
    Batch,
    Member,
    Organization,
    Role,
    Status,
    text_key,
    utcnow,
)
from importer.orgs import find_organization
from importer.sheets import UserType

ACTIVATION_DAYS = 30
SUBJECT = "Your account has been created!"
TOKEN_BYTES = 32
DEFAULT_MIN_PASSWORD_LENGTH = 8
MIN_PASSWORD_LENGTH_RANGE = (8, 128)
MAX_PASSWORD_LENGTH = 1024
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_SALT_BYTES = 16
SCRYPT_HASH_BYTES = 32
# Token rows are committed this many at a time, ahead of their messages (see the module docstring).
SEND_CHUNK = 200
DEFAULT_SMTP_TIMEOUT = 30.0

_RESEND_HINT = "ask your admin to send a new one with `importer send-activations --resend`"
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


# --- errors ------------------------------------------------------------------------------------


class _UnsendableAddress(Exception):
    """A stored address that cannot be put on an envelope (reported against the member)."""


# --- tokens, links, dates ----------------------------------------------------------------------


def new_token() -> str:
    """A fresh activation token: 32 random bytes, URL-safe."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """The stored form of a token: SHA-256, hex (a token has 256 bits of entropy; no salt needed)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def activation_link(base_url: str, *, token: str) -> str:
    """The set-password link of a token: `BASE_URL/activate?token=TOKEN`."""
    return f"{base_url.rstrip('/')}/activate?token={token}"


@functools.lru_cache(maxsize=64)
def format_moment(moment: dt.datetime) -> str:
    """A UTC moment in words, as emails and errors state it: `22 December 2026 at 14:03 UTC`."""
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year} at {moment:%H:%M} UTC"


def _naive_utc(moment: dt.datetime | None) -> dt.datetime:
    if moment is None:
        return utcnow()
    if moment.tzinfo is not None:
        return moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment


def _check_base_url(base_url: str) -> str:
    base = base_url.strip().rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ImporterError(
            f"the base URL {base_url!r} is not usable for links: give the portal's address, "
            "such as https://portal.example.com (http or https, no query string)."
        )
    return base


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


def render_activation_email(
    name: str, *, organization: str, link: str, expires_at: dt.datetime
) -> tuple[str, str]:
    """The text and HTML bodies of one activation email (HTML autoescaped)."""
    text_template, html_template = _templates()
    context = {
        "name": name,
        "organization": organization,
        "link": link,
        "expires_on": format_moment(expires_at),
        "days": ACTIVATION_DAYS,
    }
    return text_template.render(context), html_template.render(context)


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One composed email: envelope sender and recipient, Message-ID, RFC 5322 bytes (LF ends)."""

    sender: str
    recipient: str
    message_id: str
    data: bytes

    def to_email(self) -> EmailMessage:
        """The message parsed back with the default policy, for inspection and previews."""
        parsed = BytesParser(_class=EmailMessage, policy=email_policy.default).parsebytes(self.data)
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
    """The ASCII addr-spec to send to; the domain of an international address as IDNA."""
    address = address.strip()
    if _PLAIN_ADDRESS.fullmatch(address):
        return address
    try:
        ascii_email = validate_email(address, check_deliverability=False).ascii_email
    except EmailNotValidError as exc:
        raise _UnsendableAddress(f"cannot send to {address!r}: {exc}") from exc
    if ascii_email is None:
        raise _UnsendableAddress(
            f"cannot send to {address!r}: non-ASCII characters before the @ need SMTPUTF8, "
            "which this sender does not use"
        )
    return ascii_email


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


def _to_header(name: str, address: str) -> bytes:
    """The To header's value; the name is quoted or encoded, never able to start a new line."""
    if not name:
        value = address
    elif name.isascii():
        value = formataddr((name, address))
    else:
        value = f"{_encoded_words(name)} <{address}>"
    return value.encode("ascii")


@functools.lru_cache(maxsize=8)
def _date_header(moment: dt.datetime) -> bytes:
    return format_datetime(moment.replace(tzinfo=dt.UTC)).encode("ascii")


def _quoted_printable(text: str) -> bytes:
    # QP encodes every "=", so no body line can ever read as the "--==...==" boundary.
    body = binascii.b2a_qp(text.replace("\r\n", "\n").encode("utf-8"), istext=True)
    return body if body.endswith(b"\n") else body + b"\n"


def _base64_lines(text: str) -> bytes:
    # Base64 has no "-": no body line can read as the boundary either. Faster than QP for HTML.
    return base64.encodebytes(text.encode("utf-8"))


class _Composer:
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

    def compose(
        self,
        member_id: int,
        *,
        name: str,
        email: str,
        link: str,
        token_hash: str,
        expires_at: dt.datetime,
        sent_at: dt.datetime,
    ) -> OutgoingMessage:
        """The activation message for one member."""
        recipient = _envelope_address(email)
        display = _clean_display_name(name)
        text, html = render_activation_email(
            display, organization=self.organization, link=link, expires_at=expires_at
        )
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
        return OutgoingMessage(sender=self.sender, recipient=recipient, message_id=message_id, data=data)


# --- transports --------------------------------------------------------------------------------


class Transport(Protocol):
    """Delivers messages; raises RecipientRefused for one refused recipient, TransportError else."""

    def send(self, message: OutgoingMessage, /) -> None:
        """Deliver one message."""


_SAFE_STEM = re.compile(r"[A-Za-z0-9_-]+")


class FileTransport:
    """Writes one `<member id>-<token hash prefix>.eml` per message to an outbox folder (mode 0600)."""

    def __init__(self, outbox: Path) -> None:
        self.outbox = Path(outbox)
        self._folder = os.fspath(self.outbox)
        self._ready = False

    def send(self, message: OutgoingMessage, /) -> None:
        """Write the message atomically: a temporary file renamed into place."""
        stem = message.message_id.partition("@")[0]
        if not _SAFE_STEM.fullmatch(stem):
            stem = re.sub(r"[^A-Za-z0-9_-]", "_", stem) or uuid.uuid4().hex
        final = os.path.join(self._folder, f"{stem}.eml")
        temporary = os.path.join(self._folder, f".{stem}.eml.tmp")
        try:
            if not self._ready:
                self.outbox.mkdir(mode=0o700, parents=True, exist_ok=True)
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
        except OSError as exc:
            raise TransportError(f"cannot write to the outbox {self.outbox}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        """Nothing to release; here so both transports are used alike."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


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


class SmtpTransport:
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
        self.timeout = timeout
        self._ssl_context = ssl_context
        self._smtp: smtplib.SMTP | None = None

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

    def _send_once(self, message: OutgoingMessage, data: bytes) -> None:
        smtp = self._connection()
        try:
            refused = smtp.sendmail(message.sender, [message.recipient], data)
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
            self.close()
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

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is None:
            self._smtp = self._connect()
        return self._smtp

    def _connect(self) -> smtplib.SMTP:
        context = self._ssl_context or ssl.create_default_context()
        try:
            if self.security is SmtpSecurity.TLS:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=context
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
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

    def close(self) -> None:
        """Say QUIT and close the connection, if one is open."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
        finally:
            smtp.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# --- sending -----------------------------------------------------------------------------------


class SendFailure(NamedTuple):
    """A member who could not be emailed, and why (the server's reply when it refused)."""

    email: str
    error: str


@dataclass(frozen=True, slots=True)
class SendResult:
    """What a send-activations run did.

    `sent`: messages the transport accepted. `failed`: members refused by the server (or with an
    address no message can carry); each keeps the reason in `invite_error` and is tried again by
    the next run. `skipped`: pending portal members in scope who were already emailed and were
    left alone because `resend` was off. Active and no-portal members are not counted at all.
    """

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    failures: tuple[SendFailure, ...] = ()

    def to_dict(self) -> dict[str, int]:
        """The counts printed by `--json`."""
        return {"sent": self.sent, "failed": self.failed, "skipped": self.skipped}

    @property
    def exit_code(self) -> int:
        """0 when nobody failed, 3 when some members failed (a TransportError means 1)."""
        return 3 if self.failed else 0


@dataclass(frozen=True, slots=True)
class _Issued:
    member_id: int
    name: str
    email: str
    had_live_token: bool
    token: str
    token_hash: str
    expires_at: dt.datetime


_MARK_SENT = (
    update(Member)
    .where(Member.id == bindparam("b_member"))
    .values(invited_at=bindparam("b_at"), invite_error=None)
)
_MARK_FAILED = (
    update(Member).where(Member.id == bindparam("b_member")).values(invite_error=bindparam("b_error"))
)
_REVOKE_OTHERS = (
    update(ActivationToken)
    .where(
        ActivationToken.member_id == bindparam("b_member"),
        ActivationToken.token_hash != bindparam("b_hash"),
        ActivationToken.used_at.is_(None),
        ActivationToken.revoked_at.is_(None),
    )
    .values(revoked_at=bindparam("b_at"))
)
_REVOKE_HASHES = (
    update(ActivationToken)
    .where(ActivationToken.token_hash.in_(bindparam("b_hashes", expanding=True)))
    .values(revoked_at=bindparam("b_at"))
)


class _Recorder:
    """Commits, in its own transaction, that one member's message went: once per message.

    SQLAlchemy's work per execution costs several times SQLite's own WAL commit, so on SQLite the
    same compiled statements go to the driver directly; other databases go through SQLAlchemy.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._sqlite = connection.dialect.name == "sqlite"
        # id(statement) -> (SQL, [(bind name, constant value, converter or None)])
        self._compiled: dict[int, tuple[str, list[tuple[str, Any, Any]]]] = {}

    def write(self, steps: list[tuple[Update, dict[str, Any]]]) -> None:
        """Run the statements in one committed transaction."""
        driver = self.connection.connection.driver_connection if self._sqlite else None
        if not isinstance(driver, sqlite3.Connection):
            with self.connection.begin():
                for statement, params in steps:
                    self.connection.execute(statement, params)
            return
        prepared = [self._prepare(statement, params) for statement, params in steps]
        try:
            driver.execute("BEGIN IMMEDIATE")
            for sql, values in prepared:
                driver.execute(sql, values)
            driver.commit()
        except BaseException as exc:
            if driver.in_transaction:
                driver.rollback()
            if isinstance(exc, sqlite3.Error):
                raise DBAPIError.instance(prepared[-1][0], None, exc, sqlite3.Error) from exc
            raise

    def _prepare(self, statement: Update, params: dict[str, Any]) -> tuple[str, list[Any]]:
        """The SQL and its positional values, converted as SQLAlchemy would (datetimes...)."""
        if id(statement) not in self._compiled:
            compiled = statement.compile(dialect=self.connection.dialect)
            assert isinstance(compiled, SQLCompiler)
            binds: list[tuple[str, Any, Any]] = []
            for name in compiled.positiontup or ():
                bind = compiled.binds[name]
                binds.append((name, bind.value, bind.type.bind_processor(self.connection.dialect)))
            self._compiled[id(statement)] = (compiled.string, binds)
        sql, binds = self._compiled[id(statement)]
        ordered = []
        for name, constant, convert in binds:
            value = params.get(name, constant)
            ordered.append(value if convert is None or value is None else convert(value))
        return sql, ordered


class _SendRun:
    """One run of send_activations over an open connection."""

    def __init__(
        self,
        connection: Connection,
        *,
        transport: Transport,
        composer: _Composer,
        base_url: str,
        now: dt.datetime | None,
        on_progress: Callable[[int, int], None] | None,
    ) -> None:
        self.connection = connection
        self.transport = transport
        self.composer = composer
        self.base_url = base_url
        self.now = now
        self.on_progress = on_progress
        self.recorder = _Recorder(connection)
        self.sent = 0
        self.failures: list[SendFailure] = []
        self.skipped = 0

    def result(self) -> SendResult:
        """The counts so far."""
        return SendResult(
            sent=self.sent,
            failed=len(self.failures),
            skipped=self.skipped,
            failures=tuple(self.failures),
        )

    def run(self, scope: list[ColumnElement[bool]], *, resend: bool) -> SendResult:
        """Email every target in scope, chunk by chunk, committing as messages go."""
        conditions = [*scope] if resend else [*scope, Member.invited_at.is_(None)]
        with self.connection.begin():
            total, invited = self.connection.execute(
                select(func.count(), func.count(Member.invited_at)).where(*scope)
            ).one()
        self.skipped = 0 if resend else invited
        todo = total if resend else total - invited
        after = 0
        while True:
            issued = self._issue(conditions, after=after)
            if not issued:
                return self.result()
            after = issued[-1].member_id
            for index, item in enumerate(issued):
                try:
                    self._deliver(item)
                except BaseException as exc:
                    # A transport error means this message did not go either; after anything
                    # else (an interrupt) it may have, so its link is left working.
                    gone = isinstance(exc, TransportError)
                    self._abandon(issued[index:] if gone else issued[index + 1 :])
                    if isinstance(exc, TransportError):
                        raise TransportError(
                            f"{str(exc).rstrip('.')}. The run stopped after {self.sent} sent and "
                            f"{len(self.failures)} failed (all recorded); run the command again "
                            "to send the rest.",
                            result=self.result(),
                        ) from exc
                    raise
                if self.on_progress is not None:
                    self.on_progress(self.sent + len(self.failures), todo)

    def _issue(self, conditions: list[ColumnElement[bool]], *, after: int) -> list[_Issued]:
        """Pick the next chunk of targets and commit a fresh token for each, before any goes."""
        live_token = (
            select(ActivationToken.id)
            .where(
                ActivationToken.member_id == Member.id,
                ActivationToken.used_at.is_(None),
                ActivationToken.revoked_at.is_(None),
            )
            .exists()
        )
        query = (
            select(Member.id, Member.name, Member.email, live_token)
            .where(*conditions, Member.id > after)
            .order_by(Member.id)
            .limit(SEND_CHUNK)
        )
        issued_at = _naive_utc(self.now)
        expires_at = issued_at + dt.timedelta(days=ACTIVATION_DAYS)
        with self.connection.begin():
            rows = self.connection.execute(query).all()
            issued = []
            for member_id, name, email, had_live_token in rows:
                if email is None:  # excluded by the scope; here for the type checker
                    continue
                token = new_token()
                issued.append(
                    _Issued(
                        member_id=member_id,
                        name=name,
                        email=email,
                        had_live_token=bool(had_live_token),
                        token=token,
                        token_hash=hash_token(token),
                        expires_at=expires_at,
                    )
                )
            if issued:
                self.connection.execute(
                    insert(ActivationToken),
                    [
                        {
                            "member_id": item.member_id,
                            "token_hash": item.token_hash,
                            "created_at": issued_at,
                            "expires_at": expires_at,
                        }
                        for item in issued
                    ],
                )
        return issued

    def _deliver(self, item: _Issued) -> None:
        sent_at = _naive_utc(self.now)
        try:
            message = self.composer.compose(
                item.member_id,
                name=item.name,
                email=item.email,
                link=activation_link(self.base_url, token=item.token),
                token_hash=item.token_hash,
                expires_at=item.expires_at,
                sent_at=sent_at,
            )
            self.transport.send(message)
        except (RecipientRefused, _UnsendableAddress) as exc:
            reason = exc.reason if isinstance(exc, RecipientRefused) else str(exc)
            with self.connection.begin():
                self.connection.execute(_MARK_FAILED, {"b_member": item.member_id, "b_error": reason})
                self.connection.execute(_REVOKE_HASHES, {"b_hashes": [item.token_hash], "b_at": sent_at})
            self.failures.append(SendFailure(item.email, reason))
            return
        # The message is gone: record it at once, so a rerun never sends it again.
        steps = [(_MARK_SENT, {"b_member": item.member_id, "b_at": sent_at})]
        if item.had_live_token:
            steps.append(
                (_REVOKE_OTHERS, {"b_member": item.member_id, "b_hash": item.token_hash, "b_at": sent_at})
            )
        self.recorder.write(steps)
        self.sent += 1

    def _abandon(self, unsent: list[_Issued]) -> None:
        """Best effort: revoke the tokens of a chunk's messages that never went."""
        if not unsent:
            return
        with contextlib.suppress(SQLAlchemyError), self.connection.begin():
            self.connection.execute(
                _REVOKE_HASHES,
                {"b_hashes": [item.token_hash for item in unsent], "b_at": _naive_utc(self.now)},
            )


def send_activations(
    engine: Engine,
    org_ref: str,
    *,
    transport: Transport,
    sender: str,
    base_url: str,
    batch_id: str | None = None,
    resend: bool = False,
    now: dt.datetime | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> SendResult:
    """Email an activation link to the organization's pending portal members not yet emailed.

    With `resend`, members emailed but not yet active get a new link too (the old one stops
    working once the new message has gone). A refused recipient is recorded in `invite_error` and
    the run goes on; a TransportError (server unreachable, login refused, outbox unwritable) stops
    the run and carries the counts so far in its `result`.
    """
    link_base = _check_base_url(base_url)
    with Session(engine) as session:
        org = find_organization(session, org_ref)
        org_id, org_name = org.id, org.name
        if batch_id is not None:
            found = session.scalar(
                select(Batch.id).where(Batch.id == batch_id, Batch.organization_id == org_id)
            )
            if found is None:
                raise NotFoundError(
                    f"no batch {batch_id!r} in {org_name}; list them with `importer batches`."
                )
    composer = _Composer(sender=sender, organization=org_name)
    scope: list[ColumnElement[bool]] = [
        Member.organization_id == org_id,
        Member.user_type == UserType.PORTAL.value,
        Member.status == Status.PENDING,
        Member.email.is_not(None),
    ]
    if batch_id is not None:
        scope.append(Member.batch_id == batch_id)
    with engine.connect() as connection:
        run = _SendRun(
            connection,
            transport=transport,
            composer=composer,
            base_url=link_base,
            now=now,
            on_progress=on_progress,
        )
        return run.run(scope, resend=resend)


# --- passwords ---------------------------------------------------------------------------------


def _is_symbol(ch: str) -> bool:
    return not ch.isalnum() and not ch.isspace()


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """An organization's password rules: a minimum length, letters and digits, maybe a symbol."""

    min_length: int = DEFAULT_MIN_PASSWORD_LENGTH
    require_symbol: bool = False

    def problems(self, password: str) -> list[str]:
        """Every rule the password breaks, each in words (empty when it is acceptable)."""
        found: list[str] = []
        length = len(password)
        if length < self.min_length:
            found.append(f"at least {self.min_length} characters (it has {length})")
        if length > MAX_PASSWORD_LENGTH:
            found.append(f"at most {MAX_PASSWORD_LENGTH} characters (it has {length})")
        if not any(ch.isalpha() for ch in password):
            found.append("at least one letter")
        if not any(ch.isdigit() for ch in password):
            found.append("at least one digit")
        if self.require_symbol and not any(_is_symbol(ch) for ch in password):
            found.append("at least one symbol, such as ! # % or ? (not a letter, digit or space)")
        return found

    def describe(self) -> str:
        """The policy in words."""
        symbol = " and a symbol" if self.require_symbol else ""
        return f"at least {self.min_length} characters, with letters, digits{symbol}"


def _password_bytes(password: str) -> bytes:
    # NFKC so that the same password typed on another keyboard or OS hashes the same.
    return unicodedata.normalize("NFKC", password).encode("utf-8", "surrogatepass")


def hash_password(password: str) -> str:
    """A slow salted hash: `scrypt$n$r$p$salt_b64$hash_b64` (n=2**14, r=8, p=1, 16-byte salt)."""
    salt = secrets.token_bytes(SCRYPT_SALT_BYTES)
    digest = hashlib.scrypt(
        _password_bytes(password),
        salt=salt,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        dklen=SCRYPT_HASH_BYTES,
    )
    return "$".join(
        (
            "scrypt",
            str(SCRYPT_N),
            str(SCRYPT_R),
            str(SCRYPT_P),
            base64.b64encode(salt).decode("ascii"),
            base64.b64encode(digest).decode("ascii"),
        )
    )


def verify_password(stored: str, password: str) -> bool:
    """Whether the password matches a hash made by hash_password (False for a malformed hash)."""
    try:
        scheme, n, r, p, salt_b64, hash_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(hash_b64, validate=True)
        digest = hashlib.scrypt(
            _password_bytes(password),
            salt=base64.b64decode(salt_b64, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=128 * 1024 * 1024,
        )
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(digest, expected)


def _policy_of(org: Organization) -> PasswordPolicy:
    return PasswordPolicy(
        min_length=org.password_min_length or DEFAULT_MIN_PASSWORD_LENGTH,
        require_symbol=bool(org.password_require_symbol),
    )


def get_password_policy(engine: Engine, org_ref: str) -> PasswordPolicy:
    """The organization's password policy."""
    with Session(engine) as session:
        return _policy_of(find_organization(session, org_ref))


def set_password_policy(
    engine: Engine,
    org_ref: str,
    *,
    actor_email: str,
    min_length: int | None = None,
    require_symbol: bool | None = None,
) -> PasswordPolicy:
    """Change the organization's password policy; only its active Owner may."""
    low, high = MIN_PASSWORD_LENGTH_RANGE
    if min_length is not None and not low <= min_length <= high:
        raise ImporterError(
            f"the minimum password length must be between {low} and {high} (not {min_length})."
        )
    with Session(engine) as session, session.begin():
        org = find_organization(session, org_ref)
        actor = session.scalar(
            select(Member).where(
                Member.organization_id == org.id, Member.email_key == text_key(actor_email.strip())
            )
        )
        if actor is None or actor.role is not Role.OWNER or actor.status is not Status.ACTIVE:
            raise PermissionDeniedError(
                f"{actor_email} is not the active Owner of {org.name}; "
                "only the Owner may change its password policy."
            )
        if min_length is not None:
            org.password_min_length = min_length
        if require_symbol is not None:
            org.password_require_symbol = require_symbol
        return _policy_of(org)


# --- activating --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActivatedMember:
    """The member an activation made active."""

    member_id: int
    name: str
    email: str
    organization: str


def _token_from(value: str) -> str:
    """The token itself, also when the whole link was pasted."""
    value = value.strip()
    if "token=" in value:
        found = parse_qs(urlsplit(value).query).get("token")
        if found:
            return found[0].strip()
    return value


def _usable_token(session: Session, token_hash: str, *, at: dt.datetime) -> tuple[ActivationToken, Member]:
    """The token row (locked) and its member; an ActivationError says why it cannot be used."""
    row = session.scalar(
        select(ActivationToken).where(ActivationToken.token_hash == token_hash).with_for_update()
    )
    if row is None:
        raise ActivationError(
            "This activation link is not valid: check that the whole link was copied from the "
            f"email, or {_RESEND_HINT}."
        )
    if row.used_at is not None:
        raise ActivationError(
            f"This activation link has already been used (on {format_moment(row.used_at)}); "
            "sign in with your email and password."
        )
    member = session.get_one(Member, row.member_id, with_for_update=True)
    if member.status is not Status.PENDING:
        raise ActivationError("This account is already active; sign in with your email and password.")
    if row.revoked_at is not None:
        raise ActivationError(
            "This activation link was replaced by a newer one: use the link in the most recent "
            f"email, or {_RESEND_HINT}."
        )
    if at >= row.expires_at:
        raise ActivationError(
            f"This activation link expired on {format_moment(row.expires_at)}; {_RESEND_HINT}."
        )
    return row, member


def activate(engine: Engine, token: str, password: str, *, now: dt.datetime | None = None) -> ActivatedMember:
    """Set a pending member's password from an activation token; the member becomes active."""
    token_hash = hash_token(_token_from(token))
    at = _naive_utc(now)
    with Session(engine) as session:
        _, member = _usable_token(session, token_hash, at=at)
        problems = _policy_of(member.organization).problems(password)
        if problems:
            raise ActivationError(
                f"This password does not meet the policy of {member.organization.name}: "
                f"it needs {'; '.join(problems)}."
            )
    # The slow hash is computed outside the write transaction, then everything is checked again.
    password_hash = hash_password(password)
    with Session(engine) as session, session.begin():
        row, member = _usable_token(session, token_hash, at=at)
        member.password_hash = password_hash
        member.status = Status.ACTIVE
        member.activated_at = at
        row.used_at = at
        session.execute(
            update(ActivationToken)
            .where(
                ActivationToken.member_id == member.id,
                ActivationToken.id != row.id,
                ActivationToken.used_at.is_(None),
                ActivationToken.revoked_at.is_(None),
            )
            .values(revoked_at=at)
        )
        return ActivatedMember(
            member_id=member.id,
            name=member.name,
            email=member.email or "",
            organization=member.organization.name,
        )
