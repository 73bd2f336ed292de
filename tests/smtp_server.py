"""A real SMTP server for tests: aiosmtpd on 127.0.0.1 at a free port, recording what it accepts."""

from __future__ import annotations

import asyncio
import contextlib
import email
import enum
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

HOST = "127.0.0.1"
REFUSED_REPLY = "550 5.1.1 mailbox unavailable"
CLOSING_REPLY = "421 4.3.2 service shutting down"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Received:
    """One message the server accepted: its envelope and its bytes."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...] = ()
    peer: Any = None  # the client's (host, port): one per connection

    @property
    def message(self) -> EmailMessage:
        """The message parsed with the default policy (its headers may be UTF-8, RFC 6532)."""
        parsed = email.message_from_string(self.data.decode("utf-8"), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class RecordingHandler:
    """Refuses the addresses in `refuse` at RCPT and records every accepted message.

    `drop_every`: close the connection after every n-th accepted message (to test reconnection).
    `fail_after`: once that many messages are accepted, answer every MAIL FROM with 421 and close
    the connection (a server going down part-way); None again: it is back.
    `latency`: seconds the server waits before answering MAIL FROM, RCPT TO and the end of DATA
    (a network round trip, simulated; the benchmark's, never a test's).
    """

    refuse: set[str] = field(default_factory=set)
    drop_every: int | None = None
    fail_after: int | None = None
    latency: float = 0.0
    received: list[Received] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    connections: int = 0

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        """Take the sender, or say 421 and close once `fail_after` messages were accepted."""
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.fail_after is not None and len(self.received) >= self.fail_after:
            asyncio.get_running_loop().call_soon(server.transport.close)
            return CLOSING_REPLY
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        """Count sessions (smtplib says EHLO once per connection)."""
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        """Refuse the chosen addresses; accept the others."""
        if self.latency:
            await asyncio.sleep(self.latency)
        if address.lower() in {a.lower() for a in self.refuse}:
            self.refused.append(address)
            return REFUSED_REPLY
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Record the message; maybe drop the connection right after answering."""
        if self.latency:
            await asyncio.sleep(self.latency)
        self.received.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=envelope.original_content,
                mail_options=tuple(envelope.mail_options),
                peer=session.peer,
            )
        )
        if self.drop_every and len(self.received) % self.drop_every == 0:
            asyncio.get_running_loop().call_soon(server.transport.close)
        return "250 2.0.0 Message accepted for delivery"


@dataclass(frozen=True)
class SmtpServer:
    """A running server: where it listens and what it recorded."""

    host: str
    port: int
    handler: RecordingHandler


def password_authenticator(user: str, password: str) -> Callable[..., AuthResult]:
    """An aiosmtpd authenticator that accepts exactly one login."""

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False)

    return authenticate


@contextmanager
def running_smtp_server(handler: RecordingHandler, **smtp_parameters: Any) -> Iterator[SmtpServer]:
    """Run aiosmtpd in a thread for the duration of the block."""
    port = free_port()
    controller = Controller(handler, hostname=HOST, port=port, **smtp_parameters)
    controller.start()
    try:
        yield SmtpServer(host=HOST, port=port, handler=handler)
    finally:
        controller.stop()


class TrickleAt(enum.StrEnum):
    """Where a trickling server starts dribbling out a reply that never ends."""

    GREETING = "greeting"  # the connection's set-up
    MAIL = "mail"  # a message: the reply to MAIL FROM


@contextmanager
def running_trickling_server(*, at: TrickleAt, every: float) -> Iterator[tuple[str, int]]:
    """A server on 127.0.0.1 that, from `at` on, sends one continuation line every `every` seconds.

    Each line comes well inside any read timeout, so only an overall deadline ends the exchange.
    It stops trickling (and closes its connections) when the block ends.
    """
    listener = socket.create_server((HOST, 0))
    listener.settimeout(0.05)
    stop = threading.Event()
    workers: list[threading.Thread] = []

    def trickle(connection: socket.socket, code: int) -> None:
        while not stop.is_set():
            connection.sendall(f"{code}-still working on it\r\n".encode())
            stop.wait(every)

    def serve(connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            if at is TrickleAt.GREETING:
                trickle(connection, 220)
                return
            connection.sendall(b"220 slow.example ESMTP\r\n")
            for line in connection.makefile("rb"):
                verb = line[:4].upper()
                if verb == b"MAIL":
                    trickle(connection, 250)
                    return
                if verb == b"QUIT":
                    connection.sendall(b"221 bye\r\n")
                    return
                connection.sendall(b"250 slow.example\r\n" if verb in (b"EHLO", b"HELO") else b"250 OK\r\n")

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.settimeout(None)
            worker = threading.Thread(target=serve, args=(connection,), daemon=True)
            workers.append(worker)
            worker.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield HOST, listener.getsockname()[1]
    finally:
        stop.set()
        acceptor.join()
        listener.close()
        for worker in workers:
            worker.join()


@dataclass
class Front:
    """A connection limit in front of a server: where it listens, and how many it turned away."""

    host: str
    port: int
    turned_away: int = 0


@contextmanager
def connection_limit(server: SmtpServer, limit: int) -> Iterator[Front]:
    """A front on a port of its own that relays each connection to `server`, and greets every one
    past `limit` open at once with `421 4.7.0 too many connections` and closes it, as Postfix
    does for a client over its connection count."""
    listener = socket.create_server((HOST, 0))
    listener.settimeout(0.05)
    front = Front(HOST, listener.getsockname()[1])
    stop = threading.Event()
    lock = threading.Lock()
    active = 0
    relays: list[threading.Thread] = []

    def pipe(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def relay(client: socket.socket) -> None:
        nonlocal active
        with lock:
            full = active >= limit
            active += 0 if full else 1
            front.turned_away += 1 if full else 0
        if full:
            with client, contextlib.suppress(OSError):
                client.sendall(b"421 4.7.0 too many connections\r\n")
            return
        try:
            with client, socket.create_connection((server.host, server.port)) as upstream:
                back = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
                back.start()
                pipe(client, upstream)
                back.join()
        finally:
            with lock:
                active -= 1

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            thread = threading.Thread(target=relay, args=(client,), daemon=True)
            relays.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield front
    finally:
        stop.set()
        acceptor.join()
        listener.close()
        for thread in relays:
            thread.join(timeout=30)
