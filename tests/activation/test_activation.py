"""Activation: tokens, emails over a real SMTP server and to files, activate(), password policy."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

import importer.activation.sending
import importer.activation.tokens
import importer.store.orgs
from importer.accounts.passwords import (
    PasswordPolicy,
    get_password_policy,
    hash_password,
    set_password_policy,
    verify_password,
)
from importer.activation.activating import activate
from importer.activation.compose import SUBJECT, Composer, _base64_lines, _clean_display_name, _templates
from importer.activation.sending import send_activations
from importer.activation.tokens import ACTIVATION_DAYS
from importer.activation.transports.base import OutgoingMessage, Transport
from importer.activation.transports.file import FileTransport
from importer.activation.transports.smtp import SmtpSecurity, SmtpTransport
from importer.addresses import check_email
from importer.cli import cli
from importer.errors import (
    ActivationError,
    ImporterError,
    NotFoundError,
    PermissionDeniedError,
    RecipientRefused,
    Remedy,
    TransportError,
)
from importer.settings import DEFAULT_DATABASE_URL
from importer.store.engine import open_database
from importer.store.models import Account, ActivationToken, Base, Batch, Member
from importer.store.orgs import UndoResult, create_organization, undo_batch
from importer.values import Role, SendFailure, SendResult, Status, UserType, text_key
from tests.conftest import Org
from tests.smtp_server import (
    REFUSED_REPLY,
    RecordingHandler,
    SmtpServer,
    TrickleAt,
    free_port,
    password_authenticator,
    running_smtp_server,
    running_trickling_server,
)

NOW = dt.datetime(2026, 11, 22, 14, 3)
EXPIRY_WORDS = "22 December 2026 at 14:03 UTC"
SENDER = "Acme Corp <no-reply@acme.example>"
BASE_URL = "https://portal.acme.example/"
LINK = re.compile(r"https://portal\.acme\.example/activate\?token=([A-Za-z0-9_-]+)")
STRONG = "correct horse 42"


# --- helpers -----------------------------------------------------------------------------------


def add_member(
    org: Org,
    name: str,
    email: str | None = None,
    *,
    user_type: UserType = UserType.PORTAL,
    role: Role = Role.MEMBER,
    status: Status = Status.PENDING,
    batch_id: str | None = None,
    invited_at: dt.datetime | None = None,
) -> int:
    """Insert a member row directly (the import pipeline is tested elsewhere)."""
    with Session(org.engine) as session, session.begin():
        member = Member(
            organization_id=org.id,
            name=name,
            name_key=text_key(name),
            email=email,
            email_key=text_key(email) if email else None,
            user_type=user_type.value,
            role=role,
            status=status,
            batch_id=batch_id,
            invited_at=invited_at,
        )
        session.add(member)
        session.flush()
        return member.id


def add_batch(org: Org, batch_id: str) -> str:
    """Insert a batch row."""
    with Session(org.engine) as session, session.begin():
        session.add(
            Batch(
                id=batch_id,
                organization_id=org.id,
                user_type=UserType.PORTAL.value,
                file_name=f"{batch_id}.csv",
                sha256="0" * 64,
                actor_email=org.owner,
                outcome="completed",
                started_at=NOW,
            )
        )
    return batch_id


def member_row(engine: Engine, email: str) -> Member:
    """The member with this address."""
    with Session(engine) as session:
        member = session.scalar(select(Member).where(Member.email_key == text_key(email)))
        assert member is not None
        session.expunge(member)
        return member


def token_of(message: EmailMessage) -> str:
    """The token in the link of the text part."""
    text = part(message, "plain")
    found = LINK.search(text)
    assert found, text
    return found.group(1)


def part(message: EmailMessage, subtype: str) -> str:
    """The decoded text/<subtype> part."""
    body = message.get_body(preferencelist=(subtype,))
    assert body is not None and body.get_content_type() == f"text/{subtype}"
    content: str = body.get_content()
    return content


class RecordingTransport:
    """Keeps every message; optionally refuses some addresses."""

    def __init__(self, *, refuse: frozenset[str] = frozenset()) -> None:
        self.messages: list[OutgoingMessage] = []
        self.refuse = refuse

    def send(self, message: OutgoingMessage, /) -> None:
        if message.recipient in self.refuse:
            raise RecipientRefused(message.recipient, REFUSED_REPLY)
        self.messages.append(message)

    def latest_token(self, recipient: str) -> str:
        """The token of the last message to this recipient."""
        mine = [m for m in self.messages if m.recipient == recipient]
        return token_of(mine[-1].to_email())


class CrashingTransport(RecordingTransport):
    """Raises on the n-th message, before or after it is delivered (a crash mid-run)."""

    def __init__(self, *, crash_on: int, delivered: bool, error: BaseException) -> None:
        super().__init__()
        self.crash_on = crash_on
        self.delivered = delivered
        self.error = error
        self.calls = 0

    def send(self, message: OutgoingMessage, /) -> None:
        self.calls += 1
        if self.calls == self.crash_on and not self.delivered:
            raise self.error
        super().send(message)
        if self.calls == self.crash_on:
            raise self.error


def send(
    org: Org,
    transport: Transport,
    *,
    now: dt.datetime | None = NOW,
    resend: bool = False,
    batch_id: str | None = None,
) -> SendResult:
    """send_activations with the usual sender and base URL, at NOW unless told."""
    return send_activations(
        org.engine,
        org.name,
        transport=transport,
        sender=SENDER,
        base_url=BASE_URL,
        batch_id=batch_id,
        resend=resend,
        now=now,
    )


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server that refuses bob@example.com."""
    with running_smtp_server(RecordingHandler(refuse={"bob@example.com"})) as server:
        yield server


# --- sending over SMTP -------------------------------------------------------------------------


def test_smtp_sends_to_pending_portal_members_and_records_the_refused_one(org: Org, smtp: SmtpServer) -> None:
    ann = add_member(org, "Ann Archer", "ann@example.com")
    add_member(org, "Bob Brown", "bob@example.com")
    add_member(org, "Zoë Ünïcode-Ñame", "zoe@example.com")
    add_member(org, "Eve\r\nBcc: evil@x.com", "eve@example.com")
    add_member(org, "Pat Phone", user_type=UserType.NO_PORTAL)
    add_member(org, "Ivy Invited", "ivy@example.com", invited_at=NOW - dt.timedelta(days=1))
    add_member(org, "Al Active", "al@example.com", status=Status.ACTIVE)

    with SmtpTransport(smtp.host, port=smtp.port, timeout=5) as transport:
        result = send(org, transport)

    assert (result.sent, result.failed, result.skipped) == (3, 1, 1)
    assert result.to_dict() == {"sent": 3, "failed": 1, "skipped": 1}
    assert result.exit_code == 3
    assert result.failures == (SendFailure("bob@example.com", REFUSED_REPLY),)
    handler = smtp.handler
    assert handler.connections == 1  # one connection for the whole run
    assert handler.refused == ["bob@example.com"]
    assert [r.rcpt_tos for r in handler.received] == [
        ("ann@example.com",),
        ("zoe@example.com",),
        ("eve@example.com",),
    ]
    assert {r.mail_from for r in handler.received} == {"no-reply@acme.example"}

    names = {"ann@example.com": "Ann Archer", "zoe@example.com": "Zoë Ünïcode-Ñame"}
    for received in handler.received:
        message = received.message
        (recipient,) = received.rcpt_tos
        assert message["Subject"] == SUBJECT == "Your account has been created!"
        assert message.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
        assert [a.addr_spec for a in message["To"].addresses] == [recipient]
        assert message["From"].addresses[0].addr_spec == "no-reply@acme.example"
        assert message["Bcc"] is None and message["Cc"] is None
        text, html = part(message, "plain"), part(message, "html")
        token = token_of(message)
        assert len(token) >= 43  # 32 random bytes
        link = f"https://portal.acme.example/activate?token={token}"
        assert link in text and f'href="{link}"' in html
        assert f"This link expires on {EXPIRY_WORDS}" in text
        assert f"This link expires on {EXPIRY_WORDS}" in html
        assert "Acme Corp" in text and "Acme Corp" in html
        if recipient in names:
            assert message["To"].addresses[0].display_name == names[recipient]
            assert f"Hello {names[recipient]}," in text

    bob = member_row(org.engine, "bob@example.com")
    assert (bob.invited_at, bob.invite_error) == (None, REFUSED_REPLY)
    ann_row = member_row(org.engine, "ann@example.com")
    assert (ann_row.id, ann_row.invited_at, ann_row.invite_error) == (ann, NOW, None)
    with Session(org.engine) as session:
        expiry = session.scalar(
            select(ActivationToken.expires_at).where(
                ActivationToken.member_id == ann, ActivationToken.revoked_at.is_(None)
            )
        )
    assert expiry == NOW + dt.timedelta(days=ACTIVATION_DAYS) == dt.datetime(2026, 12, 22, 14, 3)

    # The mailbox is fixed: the next run sends to Bob only, and his error is cleared.
    handler.refuse.clear()
    later = NOW + dt.timedelta(hours=1)
    with SmtpTransport(smtp.host, port=smtp.port, timeout=5) as transport:
        again = send(org, transport, now=later)
    assert (again.sent, again.failed, again.skipped) == (1, 0, 4)
    assert handler.received[-1].rcpt_tos == ("bob@example.com",)
    bob = member_row(org.engine, "bob@example.com")
    assert (bob.invited_at, bob.invite_error) == (later, None)


def test_header_injection_through_a_name_creates_no_header(org: Org, smtp: SmtpServer) -> None:
    add_member(org, "Eve\r\nBcc: evil@x.com\r\nSubject: pwned", "eve@example.com")
    with SmtpTransport(smtp.host, port=smtp.port, timeout=5) as transport:
        assert send(org, transport).sent == 1
    (received,) = smtp.handler.received
    assert received.rcpt_tos == ("eve@example.com",)
    header_block = received.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    header_names = [line.split(":", 1)[0] for line in header_block.split("\r\n") if line[:1] != " "]
    assert "Bcc" not in header_names
    assert header_names.count("Subject") == 1
    message = received.message
    assert message["Subject"] == SUBJECT
    assert [a.addr_spec for a in message["To"].addresses] == ["eve@example.com"]
    assert "\n" not in message["To"].addresses[0].display_name


def test_html_part_escapes_the_name(org: Org) -> None:
    add_member(org, "<script>alert(1)</script>", "mallory@example.com")
    add_member(org, 'Tom & "Jerry"', "tom@example.com")
    transport = RecordingTransport()
    send(org, transport)
    script, tom = (m.to_email() for m in transport.messages)
    html = part(script, "html")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html
    assert "Hello <script>alert(1)</script>," in part(script, "plain")  # plain text stays as typed
    assert "Tom &amp; &#34;Jerry&#34;" in part(tom, "html")
    assert tom["To"].addresses[0].display_name == 'Tom & "Jerry"'


def test_no_portal_members_are_never_emailed(org: Org) -> None:
    add_member(org, "Pat Phone", user_type=UserType.NO_PORTAL)
    add_member(org, "Quinn Phone", user_type=UserType.NO_PORTAL, invited_at=NOW)
    transport = RecordingTransport()
    assert send(org, transport).to_dict() == {"sent": 0, "failed": 0, "skipped": 0}
    assert send(org, transport, resend=True).to_dict() == {"sent": 0, "failed": 0, "skipped": 0}
    assert transport.messages == []


def test_only_the_chosen_batch_is_emailed(org: Org) -> None:
    first, second = add_batch(org, "b-first"), add_batch(org, "b-second")
    add_member(org, "Ann Archer", "ann@example.com", batch_id=first)
    add_member(org, "Bob Brown", "bob@example.com", batch_id=second)
    transport = RecordingTransport()
    assert send(org, transport, batch_id=second).sent == 1
    assert [m.recipient for m in transport.messages] == ["bob@example.com"]
    with pytest.raises(NotFoundError, match="no batch 'nope'") as raised:
        send(org, transport, batch_id="nope")
    assert raised.value.remedy is Remedy.LIST_BATCHES


def test_international_addresses(org: Org) -> None:
    add_member(org, "Ann Archer", "ann@bücher.example")
    add_member(org, "Jöhn Doe", "jöhn@example.com")
    add_member(org, "Bob Brown", "bob@example.com")
    transport = RecordingTransport()
    result = send(org, transport)
    assert (result.sent, result.failed) == (3, 0)
    # A domain has an ASCII form (IDNA); a local part does not, so that address goes in UTF-8.
    assert [(m.recipient, m.smtputf8) for m in transport.messages] == [
        ("ann@xn--bcher-kva.example", False),
        ("jöhn@example.com", True),
        ("bob@example.com", False),
    ]
    assert [m.to_email()["To"].addresses[0].addr_spec for m in transport.messages] == [
        "ann@xn--bcher-kva.example",
        "jöhn@example.com",
        "bob@example.com",
    ]
    assert transport.messages[0].data.isascii() and transport.messages[2].data.isascii()


EMAIL_VECTORS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "email" / "vectors.json"


def test_every_address_the_importer_accepts_can_be_sent_to() -> None:
    composer = Composer(sender=SENDER, organization="Acme Corp")
    accepted = [v["addr"] for v in json.loads(EMAIL_VECTORS.read_text()) if check_email(v["addr"]) is None]
    needs_utf8 = []
    for address in accepted:
        message = composer.compose(
            1, name="Ann", email=address, link=BASE_URL, token_hash="0" * 64, expires_on="soon", sent_at=NOW
        )
        assert message.to_email()["To"].addresses[0].addr_spec == message.recipient
        if message.smtputf8:
            needs_utf8.append(address)
    assert len(accepted) > 50 and len(needs_utf8) > 10  # the corpus has both kinds
    assert all(not address.partition("@")[0].isascii() for address in needs_utf8)


UTF8_MEMBERS = {"José Núñez": "josé@example.com", "Yònghù": "用户@例子.广告", "Ann Archer": "ann@example.com"}


@pytest.mark.parametrize("offered", [True, False], ids=["server-offers-smtputf8", "server-does-not"])
def test_a_non_ascii_local_part_goes_by_smtputf8_where_the_server_offers_it(org: Org, offered: bool) -> None:
    for name, address in UTF8_MEMBERS.items():
        add_member(org, name, address)
    with (
        running_smtp_server(RecordingHandler(), enable_SMTPUTF8=offered) as server,
        SmtpTransport(server.host, port=server.port, timeout=5) as transport,
    ):
        result = send(org, transport)
    received = {r.rcpt_tos: r for r in server.handler.received}
    # ASCII recipients go exactly as before: no SMTPUTF8 asked for, ASCII bytes only.
    ann = received.pop(("ann@example.com",))
    assert "SMTPUTF8" not in ann.mail_options and ann.data.isascii()
    if not offered:
        assert (result.sent, result.failed, received) == (1, 2, {})
        for failure in result.failures:
            assert "does not offer SMTPUTF8" in failure.error, failure
            assert member_row(org.engine, failure.email).invite_error == failure.error
        assert sorted(f.email for f in result.failures) == sorted(["josé@example.com", "用户@例子.广告"])
        return
    assert (result.sent, result.failed) == (3, 0)
    assert sorted(received) == [("josé@example.com",), ("用户@例子.广告",)]
    for (address,), got in received.items():
        assert "SMTPUTF8" in got.mail_options
        assert f"<{address}>".encode() in got.data  # the To header in UTF-8 (RFC 6532)
        assert got.message["To"].addresses[0].addr_spec == address
        assert activate(org.engine, token_of(got.message), STRONG, now=NOW).email == address


def test_progress_is_reported_after_each_member(org: Org) -> None:
    for i in range(3):
        add_member(org, f"Member {i}", f"m{i}@example.com")
    add_member(org, "Bob Brown", "bob@example.com")
    seen: list[tuple[int, int]] = []
    send_activations(
        org.engine,
        org.name,
        transport=RecordingTransport(refuse=frozenset({"bob@example.com"})),
        sender=SENDER,
        base_url=BASE_URL,
        now=NOW,
        on_progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


@pytest.mark.parametrize(
    ("sender", "base_url", "problem"),
    [
        ("not an address", BASE_URL, "sender"),
        ("a@example.com, b@example.com", BASE_URL, "sender"),
        (SENDER, "portal.acme.example", "base URL"),
        (SENDER, "https://portal.acme.example/?x=1", "base URL"),
    ],
)
def test_bad_sender_or_base_url_sends_nothing(org: Org, sender: str, base_url: str, problem: str) -> None:
    add_member(org, "Ann Archer", "ann@example.com")
    transport = RecordingTransport()
    with pytest.raises(ImporterError, match=problem):
        send_activations(org.engine, org.name, transport=transport, sender=sender, base_url=base_url, now=NOW)
    assert transport.messages == []


# --- SMTP connections --------------------------------------------------------------------------


def test_smtp_reconnects_when_the_server_drops_the_connection(org: Org) -> None:
    for i in range(4):
        add_member(org, f"Member {i}", f"m{i}@example.com")
    with (
        running_smtp_server(RecordingHandler(drop_every=1)) as server,
        SmtpTransport(server.host, port=server.port, timeout=5) as transport,
    ):
        result = send(org, transport)
    assert result.sent == 4
    assert len(server.handler.received) == 4
    assert server.handler.connections == 4


def test_unreachable_smtp_server_is_a_transport_error_and_sends_nothing(org: Org) -> None:
    add_member(org, "Ann Archer", "ann@example.com")
    add_member(org, "Bob Brown", "bob@example.com")
    with (
        SmtpTransport("127.0.0.1", port=free_port(), timeout=5) as transport,
        pytest.raises(TransportError, match="cannot connect to the SMTP server") as raised,
    ):
        send(org, transport)
    assert raised.value.result is not None
    assert raised.value.result.to_dict() == {"sent": 0, "failed": 0, "skipped": 0}
    assert member_row(org.engine, "ann@example.com").invited_at is None
    with Session(org.engine) as session:  # the tokens issued for the run were withdrawn
        live = session.scalars(select(ActivationToken).where(ActivationToken.revoked_at.is_(None)))
        assert list(live) == []


@pytest.mark.parametrize("at", list(TrickleAt))
def test_a_trickling_smtp_server_fails_the_run_within_the_deadline(org: Org, at: TrickleAt) -> None:
    add_member(org, "Ann Archer", "ann@example.com")
    add_member(org, "Bob Brown", "bob@example.com")
    outcome: list[BaseException | SendResult] = []
    with running_trickling_server(at=at, every=0.05) as (host, port):
        # Every line comes within the read timeout; only the deadline can end the exchange.
        # 2 s: enough for a loaded machine to open a session with a prompt server (the mail case).
        transport = SmtpTransport(host, port=port, timeout=5, deadline=2)

        def run() -> None:
            try:
                with transport:
                    outcome.append(send(org, transport))
            except BaseException as exc:
                outcome.append(exc)

        started = time.monotonic()
        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        runner.join(timeout=60)
        took = time.monotonic() - started
    (error,) = outcome
    assert isinstance(error, TransportError), error
    what = "open a session" if at is TrickleAt.GREETING else "take a message"
    assert f"took more than 2 s to {what}" in str(error)
    assert "The run stopped after 0 sent and 0 failed" in str(error)
    assert 2 <= took < 30  # bounded: without the deadline the exchange never ends
    assert member_row(org.engine, "ann@example.com").invited_at is None


def test_smtp_login(org: Org) -> None:
    add_member(org, "Ann Archer", "ann@example.com")
    options = {"authenticator": password_authenticator("mailer", "s3cret"), "auth_require_tls": False}
    with running_smtp_server(RecordingHandler(), **options) as server:
        with (
            SmtpTransport(
                server.host, port=server.port, user="mailer", password="wrong", timeout=5
            ) as transport,
            pytest.raises(TransportError, match="refused the login of mailer"),
        ):
            send(org, transport)
        with SmtpTransport(
            server.host, port=server.port, user="mailer", password="s3cret", timeout=5
        ) as transport:
            assert send(org, transport).sent == 1
        assert len(server.handler.received) == 1


def test_starttls_that_the_server_does_not_offer_is_a_transport_error(org: Org, smtp: SmtpServer) -> None:
    add_member(org, "Ann Archer", "ann@example.com")
    with (
        SmtpTransport(smtp.host, port=smtp.port, security=SmtpSecurity.STARTTLS, timeout=5) as transport,
        pytest.raises(TransportError, match="STARTTLS"),
    ):
        send(org, transport)
    assert smtp.handler.received == []


def test_a_password_never_goes_in_clear_to_a_remote_server() -> None:
    with pytest.raises(ImporterError, match="in clear") as raised:
        SmtpTransport("smtp.example.com", user="mailer", password="s3cret")
    assert raised.value.remedy is Remedy.ENCRYPT_SMTP
    assert SmtpTransport("smtp.example.com", security=SmtpSecurity.TLS, user="u").port == 465
    assert SmtpTransport("smtp.example.com", security=SmtpSecurity.STARTTLS).port == 587


# --- the file transport ------------------------------------------------------------------------


def test_file_transport_writes_one_parseable_eml_per_message(org: Org, tmp_path: Path) -> None:
    ids = {add_member(org, f"Member {i}", f"m{i}@example.com"): f"m{i}@example.com" for i in range(5)}
    outbox = tmp_path / "outbox"
    with FileTransport(outbox) as transport:
        assert send(org, transport).sent == 5
    files = sorted(outbox.iterdir())
    assert len(files) == 5
    seen = {}
    for path in files:
        member_id, short_hash = re.fullmatch(r"(\d+)-([0-9a-f]{12})\.eml", path.name).groups()  # type: ignore[union-attr]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds a live token
        message = parse_eml(path)
        assert message["Subject"] == SUBJECT
        token = token_of(message)
        assert hashlib.sha256(token.encode()).hexdigest()[:12] == short_hash
        seen[int(member_id)] = message["To"].addresses[0].addr_spec
    assert seen == ids


def test_file_transport_writes_utf8_headers_for_a_non_ascii_local_part(org: Org, tmp_path: Path) -> None:
    for name, address in UTF8_MEMBERS.items():
        add_member(org, name, address)
    outbox = tmp_path / "outbox"
    with FileTransport(outbox) as transport:
        assert send(org, transport).to_dict() == {"sent": 3, "failed": 0, "skipped": 0}
    written = {}
    for path in outbox.iterdir():
        data = path.read_bytes()
        (to,) = [line for line in data.split(b"\n") if line.startswith(b"To: ")]
        written[to.decode("utf-8")] = data.isascii()
    assert written == {
        "To: =?utf-8?b?Sm9zw6kgTsO6w7Fleg==?= <josé@example.com>": False,
        "To: =?utf-8?b?WcOybmdow7k=?= <用户@例子.广告>": False,
        "To: Ann Archer <ann@example.com>": True,
    }


def parse_eml(path: Path) -> EmailMessage:
    """An .eml file parsed with the default policy."""
    message = OutgoingMessage(sender="", recipient="", message_id="", data=path.read_bytes())
    return message.to_email()


def test_unwritable_outbox_is_a_transport_error(org: Org, tmp_path: Path) -> None:
    add_member(org, "Ann Archer", "ann@example.com")
    blocker = tmp_path / "outbox"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(TransportError, match="cannot write to the outbox"):
        send(org, FileTransport(blocker))


# --- crash safety ------------------------------------------------------------------------------


def add_members(org: Org, count: int, *, batch_id: str | None = None) -> list[str]:
    """Insert `count` pending portal members at once; their addresses."""
    emails = [f"member{i:05}@example.com" for i in range(count)]
    with org.engine.begin() as connection:
        connection.execute(
            insert(Member),
            [
                {
                    "organization_id": org.id,
                    "name": f"Member {i}",
                    "name_key": f"member {i}",
                    "email": email,
                    "email_key": email,
                    "user_type": UserType.PORTAL.value,
                    "role": Role.MEMBER,
                    "status": Status.PENDING,
                    "batch_id": batch_id,
                }
                for i, email in enumerate(emails)
            ],
        )
    return emails


def send_command(org: Org, outbox: Path) -> list[str]:
    """`importer send-activations` to the file transport, as a process of its own would run it."""
    database = org.engine.url.render_as_string(hide_password=False)
    return [
        *(sys.executable, "-m", "importer", "--db", database, "send-activations", "--org", org.name),
        *("--transport", "file", "--outbox", str(outbox), "--from", SENDER, "--base-url", BASE_URL),
    ]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_send_killed_mid_write_leaves_only_complete_messages(org: Org, tmp_path: Path) -> None:
    emails = add_members(org, 300)
    outbox = tmp_path / "outbox"
    process = subprocess.Popen(send_command(org, outbox), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Freeze the run until it is caught between creating a message's file and finishing it
    # (or it ends), then kill it there.
    caught = False
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        if outbox.is_dir() and any(name.endswith(".eml") for name in os.listdir(outbox)):
            process.send_signal(signal.SIGSTOP)
            caught = any(not name.endswith(".eml") for name in os.listdir(outbox))
            if caught:
                break
            process.send_signal(signal.SIGCONT)
        time.sleep(0.001)  # a poll interval: let the run write a little
    process.kill()
    process.wait(timeout=30)
    assert caught, "the run was never caught mid-write"

    assert any(not name.endswith(".eml") for name in os.listdir(outbox))  # the killed one's file

    with FileTransport(outbox) as transport:  # the next run
        assert send(org, transport).failed == 0
    files = os.listdir(outbox)
    assert [name for name in files if not name.endswith(".eml")] == []
    emailed = Counter(parse_eml(outbox / name)["To"].addresses[0].addr_spec for name in files)
    assert set(emailed) == set(emails)
    assert sum(emailed.values()) - len(emails) <= 1  # at most the one message in flight, twice


@pytest.mark.parametrize("delivered", [False, True], ids=["crash-before-delivery", "crash-after"])
def test_rerun_after_a_crash_emails_nobody_twice(org: Org, delivered: bool) -> None:
    emails = [f"m{i}@example.com" for i in range(4)]
    for i, address in enumerate(emails):
        add_member(org, f"Member {i}", address)
    crashing = CrashingTransport(crash_on=3, delivered=delivered, error=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        send(org, crashing)
    rerun = RecordingTransport()
    result = send(org, rerun, now=NOW + dt.timedelta(minutes=5))

    assert (result.sent, result.skipped) == (2, 2)
    counts = Counter(m.recipient for m in crashing.messages + rerun.messages)
    in_flight = emails[2]
    assert counts == {address: 2 if delivered and address == in_flight else 1 for address in emails}
    # The in-flight member's first link was replaced; every member's latest link works.
    later = NOW + dt.timedelta(hours=1)
    if delivered:
        with pytest.raises(ActivationError, match="replaced by a newer one"):
            activate(org.engine, crashing.latest_token(in_flight), STRONG, now=later)
    resent = {m.recipient for m in rerun.messages}
    for address in emails:
        latest = (rerun if address in resent else crashing).latest_token(address)
        assert activate(org.engine, latest, STRONG, now=later).email == address


def test_transport_failure_mid_run_keeps_what_was_sent(org: Org) -> None:
    for i in range(5):
        add_member(org, f"Member {i}", f"m{i}@example.com")
    failing = CrashingTransport(crash_on=3, delivered=False, error=TransportError("server gone"))
    with pytest.raises(TransportError, match="stopped after 2 sent and 0 failed") as raised:
        send(org, failing)
    assert raised.value.result is not None
    assert raised.value.result.sent == 2
    rerun = RecordingTransport()
    assert send(org, rerun).to_dict() == {"sent": 3, "failed": 0, "skipped": 2}


def test_two_runs_at_once_email_each_member_once(org: Org, tmp_path: Path) -> None:
    ids = [add_member(org, f"Member {i}", f"m{i}@example.com") for i in range(60)]
    outbox = tmp_path / "outbox"
    together = threading.Barrier(2)

    def run() -> SendResult:
        together.wait(timeout=30)
        with FileTransport(outbox) as transport:
            return send(org, transport)

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = [pool.submit(run) for _ in range(2)]
        results = [future.result(timeout=120) for future in runs]

    # The second run waited for the first, then found every member emailed.
    assert sorted((r.sent, r.skipped) for r in results) == [(0, 60), (60, 0)]
    emailed = Counter(int(path.name.partition("-")[0]) for path in outbox.glob("*.eml"))
    assert emailed == dict.fromkeys(ids, 1)


# --- tokens and activate() ---------------------------------------------------------------------


@pytest.fixture
def invited(org: Org) -> tuple[Org, RecordingTransport]:
    """Ann, sent her activation email at NOW."""
    add_member(org, "Ann Archer", "ann@example.com")
    transport = RecordingTransport()
    assert send(org, transport).sent == 1
    return org, transport


def test_a_token_works_once(invited: tuple[Org, RecordingTransport]) -> None:
    org, transport = invited
    token = transport.latest_token("ann@example.com")
    done = activate(org.engine, token, STRONG, now=NOW + dt.timedelta(days=1))
    assert (done.email, done.name, done.organization) == ("ann@example.com", "Ann Archer", "Acme Corp")
    ann = member_row(org.engine, "ann@example.com")
    assert (ann.status, ann.activated_at) == (Status.ACTIVE, NOW + dt.timedelta(days=1))
    # The password is the account's (one for every organization); the membership links to it.
    with Session(org.engine) as session:
        account = session.get_one(Account, ann.account_id)
        assert account.password_hash.startswith("scrypt$16384$8$1$")
        assert verify_password(account.password_hash, STRONG)
        assert not verify_password(account.password_hash, STRONG + "!")
    with pytest.raises(ActivationError, match="already been used"):
        activate(org.engine, token, "another pass 99", now=NOW + dt.timedelta(days=2))
    # An active member is never emailed again, even with --resend.
    assert send(org, transport, resend=True).to_dict() == {"sent": 0, "failed": 0, "skipped": 0}


def test_the_whole_pasted_link_is_accepted(invited: tuple[Org, RecordingTransport]) -> None:
    org, transport = invited
    link = f" {BASE_URL}activate?token={transport.latest_token('ann@example.com')}\n"
    assert activate(org.engine, link, STRONG, now=NOW).email == "ann@example.com"


def test_resend_issues_a_new_link_and_kills_the_old_one(
    invited: tuple[Org, RecordingTransport],
) -> None:
    org, transport = invited
    old = transport.latest_token("ann@example.com")
    assert send(org, transport).to_dict() == {"sent": 0, "failed": 0, "skipped": 1}
    assert send(org, transport, resend=True).to_dict() == {"sent": 1, "failed": 0, "skipped": 0}
    new = transport.latest_token("ann@example.com")
    assert new != old
    with pytest.raises(ActivationError, match="replaced by a newer one") as raised:
        activate(org.engine, old, STRONG, now=NOW)
    assert "ask your admin to send a new one" in str(raised.value)
    assert raised.value.remedy is Remedy.RESEND_INVITATION
    assert activate(org.engine, new, STRONG, now=NOW).email == "ann@example.com"
    with pytest.raises(ActivationError, match="already active"):
        activate(org.engine, old, STRONG, now=NOW)


def test_a_refused_resend_leaves_the_old_link_working(
    invited: tuple[Org, RecordingTransport],
) -> None:
    org, transport = invited
    old = transport.latest_token("ann@example.com")
    refusing = RecordingTransport(refuse=frozenset({"ann@example.com"}))
    assert send(org, refusing, resend=True).to_dict() == {"sent": 0, "failed": 1, "skipped": 0}
    assert member_row(org.engine, "ann@example.com").invite_error == REFUSED_REPLY
    assert activate(org.engine, old, STRONG, now=NOW).email == "ann@example.com"


def test_a_link_expires_30_days_after_sending(invited: tuple[Org, RecordingTransport]) -> None:
    org, transport = invited
    token = transport.latest_token("ann@example.com")
    late = NOW + dt.timedelta(days=30, minutes=1)
    with pytest.raises(ActivationError, match=f"expired on {EXPIRY_WORDS}") as raised:
        activate(org.engine, token, STRONG, now=late)
    assert "ask your admin to send a new one" in str(raised.value)
    assert raised.value.remedy is Remedy.RESEND_INVITATION
    assert member_row(org.engine, "ann@example.com").status is Status.PENDING
    just_in_time = NOW + dt.timedelta(days=30, minutes=-1)
    assert activate(org.engine, token, STRONG, now=just_in_time).email == "ann@example.com"


def test_expiry_follows_the_clock(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [NOW]
    monkeypatch.setattr(importer.activation.tokens, "utcnow", lambda: clock[0])
    add_member(org, "Ann Archer", "ann@example.com")
    transport = RecordingTransport()
    send(org, transport, now=None)
    token = transport.latest_token("ann@example.com")
    assert f"expires on {EXPIRY_WORDS}" in part(transport.messages[0].to_email(), "plain")
    clock[0] = NOW + dt.timedelta(days=30, minutes=1)
    with pytest.raises(ActivationError, match="expired"):
        activate(org.engine, token, STRONG)


def test_an_unknown_token_is_refused(invited: tuple[Org, RecordingTransport]) -> None:
    org, _ = invited
    for token in ("", "not-a-token", "A" * 43):
        with pytest.raises(ActivationError, match="not valid"):
            activate(org.engine, token, STRONG, now=NOW)


def test_tokens_are_never_stored_in_clear(org: Org, tmp_path: Path) -> None:
    for i in range(3):
        add_member(org, f"Member {i}", f"m{i}@example.com")
    transport = RecordingTransport()
    send(org, transport)
    send(org, transport, resend=True)
    tokens = [token_of(m.to_email()) for m in transport.messages]
    assert len(set(tokens)) == 6
    dump: list[str] = []
    with org.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            dump.extend(repr(tuple(row)) for row in connection.execute(table.select()))
    everything = "\n".join(dump)
    assert hashlib.sha256(tokens[0].encode()).hexdigest() in everything  # the hash is there
    for token in tokens:
        assert token not in everything
    database = org.engine.url.database
    if org.engine.dialect.name == "sqlite" and database:
        raw = b"".join(p.read_bytes() for p in Path(database).parent.glob(Path(database).name + "*"))
        for token in tokens:
            assert token.encode() not in raw


# --- passwords ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("abc1", "at least 8 characters (it has 4)"),
        ("abcdefgh", "at least one digit"),
        ("12345678", "at least one letter"),
        ("        ", "at least one letter; at least one digit"),
    ],
)
def test_a_weak_password_is_refused_with_the_rule(
    invited: tuple[Org, RecordingTransport], password: str, rule: str
) -> None:
    org, transport = invited
    token = transport.latest_token("ann@example.com")
    with pytest.raises(ActivationError, match=re.escape(rule)):
        activate(org.engine, token, password, now=NOW)
    assert member_row(org.engine, "ann@example.com").status is Status.PENDING
    # The refused attempt did not use the link up.
    assert activate(org.engine, token, STRONG, now=NOW).email == "ann@example.com"


def test_the_owner_can_require_a_symbol_and_a_longer_password(
    invited: tuple[Org, RecordingTransport],
) -> None:
    org, transport = invited
    assert get_password_policy(org.engine, org.name) == PasswordPolicy(8, False)
    policy = set_password_policy(
        org.engine, org.name, actor_email=org.owner, min_length=12, require_symbol=True
    )
    assert policy == get_password_policy(org.engine, org.name) == PasswordPolicy(12, True)
    token = transport.latest_token("ann@example.com")
    with pytest.raises(ActivationError) as raised:
        activate(org.engine, token, "abc", now=NOW)
    message = str(raised.value)
    for rule in ("at least 12 characters (it has 3)", "at least one digit", "at least one symbol"):
        assert rule in message
    with pytest.raises(ActivationError, match="at least one symbol"):
        activate(org.engine, token, "abcdefgh1234", now=NOW)
    assert activate(org.engine, token, "abcdefgh123!", now=NOW).email == "ann@example.com"


def test_only_the_active_owner_may_change_the_policy(org: Org) -> None:
    add_member(org, "Ada Admin", "ada@example.com", role=Role.ADMIN, status=Status.ACTIVE)
    for actor in ("ada@example.com", "nobody@example.com"):
        with pytest.raises(PermissionDeniedError, match="only the Owner"):
            set_password_policy(org.engine, org.name, actor_email=actor, min_length=10)
    for length in (7, 129):
        with pytest.raises(ImporterError, match="between 8 and 128"):
            set_password_policy(org.engine, org.name, actor_email=org.owner, min_length=length)
    assert get_password_policy(org.engine, org.name) == PasswordPolicy(8, False)
    upper = org.owner.upper()  # addresses compare case-insensitively
    assert set_password_policy(org.engine, org.name, actor_email=upper, min_length=128).min_length == 128


def test_password_hashes_are_salted_and_verified() -> None:
    first, second = hash_password(STRONG), hash_password(STRONG)
    assert first != second
    assert verify_password(first, STRONG) and verify_password(second, STRONG)
    assert not verify_password(first, "wrong password 1")
    for broken in ("", "scrypt$1$2", "bcrypt$16384$8$1$AAAA$AAAA", "scrypt$3$8$1$AAAA$AAAA"):
        assert not verify_password(broken, STRONG)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.text(max_size=400), st.sampled_from(["x" * n for n in (0, 1, 56, 57, 58, 114, 171, 172)]))
)
def test_html_bodies_are_base64_lines_exactly_as_the_standard_library_writes_them(html: str) -> None:
    # Mail readers decode the HTML part from these lines; 57 bytes fill one 76-character line.
    assert _base64_lines(html) == base64.encodebytes(html.encode("utf-8"))


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(max_size=60),
    organization=st.text(min_size=1, max_size=40),
    link=st.sampled_from(
        ["https://p.example/activate?token=a&b", "https://p.example/activate?token=\"x'<y>"]
    ),
)
def test_composed_bodies_are_what_the_templates_render(name: str, organization: str, link: str) -> None:
    # The composer renders each template once per run and fills in each member's values; the
    # bodies must be exactly what rendering the templates for that member gives.
    composer = Composer(sender="Acme <no-reply@acme.example>", organization=organization)
    message = composer.compose(
        7,
        name=name,
        email="ann@example.com",
        link=link,
        token_hash="ab" * 32,
        expires_on="22 December 2026 at 14:03 UTC",
        sent_at=NOW,
    ).to_email()
    values = {"organization": organization, "link": link, "expires_on": "22 December 2026 at 14:03 UTC"}
    text_template, html_template = _templates()  # jinja's own render, the reference
    text = text_template.render(name=_clean_display_name(name), **values)
    html = html_template.render(name=_clean_display_name(name), **values)
    assert part(message, "html") == html
    assert part(message, "plain").replace("\r\n", "\n") == text.replace("\r\n", "\n")


# --- undo and the working directory ------------------------------------------------------------


def test_undo_during_a_send_stops_the_mailing_of_the_members_it_removed(
    org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run lets a waiting undo in after every message (by default, every quarter second).
    monkeypatch.setattr(importer.activation.sending, "MAILING_TURN_SECONDS", 0.0, raising=False)
    add_member(org, "Olga Before", "olga@example.com")
    batch = add_batch(org, "b-undone")
    removed = set(add_members(org, 400, batch_id=batch))
    add_member(org, "Zed After", "zed@example.com")

    undo_is_on = threading.Event()  # the undo returned, or waits for the send to let it in
    undone = threading.Event()
    results: list[UndoResult] = []

    def undo() -> None:
        results.append(undo_batch(org.engine, batch))
        undone.set()
        undo_is_on.set()

    real_hold_lock = getattr(importer.store.orgs, "hold_lock", None)

    @contextlib.contextmanager
    def hold_lock_noting_the_wait(*args: Any) -> Iterator[None]:
        undo_is_on.set()
        assert real_hold_lock is not None
        with real_hold_lock(*args):
            yield

    monkeypatch.setattr(importer.store.orgs, "hold_lock", hold_lock_noting_the_wait, raising=False)
    undoer = threading.Thread(target=undo)
    after_undo: list[str] = []

    class UndoingTransport(RecordingTransport):
        """Starts the undo at the first member of the batch; notes what goes after it returned."""

        def send(self, message: OutgoingMessage, /) -> None:
            if undone.is_set():
                after_undo.append(message.recipient)
            super().send(message)
            if message.recipient in removed and not undoer.is_alive() and not undone.is_set():
                undoer.start()
                assert undo_is_on.wait(timeout=60)

    transport = UndoingTransport()
    result = send(org, transport)
    undoer.join(timeout=60)

    assert [r.removed for r in results] == [400]
    assert [r for r in after_undo if r in removed] == []
    mailed = [m.recipient for m in transport.messages]
    assert mailed[0] == "olga@example.com" and mailed[-1] == "zed@example.com"  # the rest still went
    assert 1 <= len(removed.intersection(mailed)) < len(removed)
    assert result.to_dict() == {"sent": len(mailed), "failed": 0, "skipped": 0}


def test_a_send_leaves_nothing_in_the_working_directory_but_the_outbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    engine = open_database(DEFAULT_DATABASE_URL)  # the command's own default: importer.db, here
    org_id = create_organization(engine, "Acme Corp", owner_email="olive@acme.example", owner_name="Olive")
    add_members(Org(engine=engine, name="Acme Corp", id=org_id, owner="olive@acme.example"), 3)
    engine.dispose()
    before = set(os.listdir(tmp_path))

    args = ["send-activations", "--org", "Acme Corp", "--from", SENDER, "--base-url", BASE_URL]
    outcome = CliRunner().invoke(cli, args)

    assert outcome.exit_code == 0, outcome.output
    assert set(os.listdir(tmp_path)) - before == {"outbox"}
    assert len(os.listdir(tmp_path / "outbox")) == 3
