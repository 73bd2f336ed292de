"""The SMTP transport: one connection for the whole run, or several used by parallel senders;
each exchange within a deadline (transports/watch.py)."""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import smtplib
import ssl
import threading
from collections.abc import Iterator

from importer.activation.transports.base import BaseTransport, OutgoingMessage
from importer.activation.transports.watch import Watch, WatchedSmtp, WatchedSmtpSsl
from importer.errors import ImporterError, RecipientRefused, Remedy, TransportError

# Each read from the SMTP server must come within the timeout; each message, and each connection's
# set-up (greeting, EHLO, STARTTLS, login), must be done within the deadline.
DEFAULT_SMTP_TIMEOUT = 30.0
DEFAULT_SMTP_DEADLINE = 120.0
# Connections one transport may open at once (parallel senders, each on one of them): servers
# limit a client's connections, and each sender also holds a database connection.
MAX_SMTP_CONNECTIONS = 8


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


class SmtpTransport(BaseTransport):
    """Sends over SMTP: one connection for the whole run, or up to `connections` of them.

    `send` may be called from that many threads at once; each call takes a connection no other
    call is using (opened on first need, kept for the run), so a run with four senders keeps
    four connections busy. Each connection reconnects once if the server drops it. A connection
    the server will not open while others are open (a limit of connections per client, as
    Postfix's `421 Too many connections`) is given up and its message goes on another: the run
    goes on with the connections the server allows.
    """

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
        connections: int = 1,
    ) -> None:
        if user is not None and security is SmtpSecurity.NONE and not _is_loopback(host):
            raise ImporterError(
                f"refusing to send the SMTP password to {host} in clear: the connection must be encrypted "
                "(STARTTLS or TLS).",
                remedy=Remedy.ENCRYPT_SMTP,
            )
        if not 1 <= connections <= MAX_SMTP_CONNECTIONS:
            raise ImporterError(
                f"SMTP connections: choose from 1 to {MAX_SMTP_CONNECTIONS}, not {connections}."
            )
        self.host = host
        self.port = DEFAULT_SMTP_PORTS[security] if port is None else port
        self.security = security
        self.user = user
        self._password = password
        self.timeout = min(timeout, deadline)
        self.deadline = deadline
        self._ssl_context = ssl_context
        # How many senders may call `send` at once (see activation.sending).
        self.connections = connections
        self._sessions: list[_Session] = []
        self._idle: list[_Session] = []
        self._limit = connections  # less once the server refused some (see _give_up)
        self._opening = 0  # connections being opened now
        self._returned = threading.Condition()

    @property
    def where(self) -> str:
        """host:port, for messages."""
        return f"{self.host}:{self.port}"

    def send(self, message: OutgoingMessage, /) -> None:
        """Send one message on a connection no other sender is using."""
        while True:
            session = self._take()
            try:
                session.send(message)
            except TransportError:
                if not session.ever_open and self._give_up(session):
                    continue  # the message did not go: on another connection
                self._put_back(session)
                raise
            except BaseException:
                self._put_back(session)
                raise
            self._put_back(session)
            return

    def _take(self) -> _Session:
        with self._returned:
            while not self._idle and len(self._sessions) >= self._limit:
                self._returned.wait()
            if self._idle:
                return self._idle.pop()
            session = _Session(self)
            self._sessions.append(session)
            return session

    def _put_back(self, session: _Session) -> None:
        with self._returned:
            self._idle.append(session)
            self._returned.notify_all()

    def _give_up(self, session: _Session) -> bool:
        """Give up a connection that never opened, if others are open once those being opened
        are; whether it was (its sender then sends on another)."""
        with self._returned:
            self._returned.wait_for(lambda: self._opening == 0)
            if not any(other.is_open for other in self._sessions if other is not session):
                return False
            self._sessions.remove(session)
            self._limit = max(1, self._limit - 1)
        session.close()
        return True

    def _opening_changed(self, by: int) -> None:
        with self._returned:
            self._opening += by
            self._returned.notify_all()

    def close(self) -> None:
        """Say QUIT and close every connection; end their deadline watches."""
        with self._returned:
            sessions, self._sessions, self._idle = self._sessions, [], []
            self._limit = self.connections
        failure: BaseException | None = None
        for session in sessions:
            try:
                session.close()
            except BaseException as exc:
                failure = failure or exc
        if failure is not None:
            raise failure


class _Session:
    """One SMTP connection (opened when first needed) and the watch of its deadline."""

    def __init__(self, owner: SmtpTransport) -> None:
        self._owner = owner
        self._where = owner.where
        self._smtp: smtplib.SMTP | None = None
        self._watch = Watch()
        self.ever_open = False

    @property
    def is_open(self) -> bool:
        """Whether the connection is open now."""
        return self._smtp is not None

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
        self._watch.arm(self._owner.deadline)
        try:
            yield
        except Exception as exc:
            if self._watch.disarm():
                self._drop()
                raise TransportError(
                    f"the SMTP server {self._where} took more than {self._owner.deadline:g} s to {what}; "
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
            self._owner._opening_changed(+1)
            try:
                with self._within_deadline("open a session"):
                    self._smtp = self._connect()
                self.ever_open = True
            finally:
                self._owner._opening_changed(-1)
        return self._smtp

    def _connect(self) -> smtplib.SMTP:
        owner = self._owner
        context = owner._ssl_context or ssl.create_default_context()
        try:
            if owner.security is SmtpSecurity.TLS:
                smtp: smtplib.SMTP = WatchedSmtpSsl(
                    owner.host, owner.port, timeout=owner.timeout, watch=self._watch, context=context
                )
            else:
                smtp = WatchedSmtp(owner.host, owner.port, timeout=owner.timeout, watch=self._watch)
        except (smtplib.SMTPException, OSError) as exc:
            raise TransportError(
                f"cannot connect to the SMTP server {self._where}: {exc or type(exc).__name__}"
            ) from exc
        try:
            if self._owner.security is SmtpSecurity.STARTTLS:
                smtp.starttls(context=context)
            if self._owner.user is not None:
                smtp.login(self._owner.user, self._owner._password or "")
        except smtplib.SMTPAuthenticationError as exc:
            smtp.close()
            raise TransportError(
                f"the SMTP server {self._where} refused the login of {self._owner.user}: "
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
        self._watch.arm(self._owner.deadline)
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
