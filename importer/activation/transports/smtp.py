"""The SMTP transport: one connection for the whole run, each exchange within a deadline."""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Iterator

from importer.activation.transports.base import BaseTransport, OutgoingMessage
from importer.errors import ImporterError, RecipientRefused, Remedy, TransportError

# Each read from the SMTP server must come within the timeout; each message, and each connection's
# set-up (greeting, EHLO, STARTTLS, login), must be done within the deadline.
DEFAULT_SMTP_TIMEOUT = 30.0
DEFAULT_SMTP_DEADLINE = 120.0


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


class SmtpTransport(BaseTransport):
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
                f"refusing to send the SMTP password to {host} in clear: the connection must be encrypted "
                "(STARTTLS or TLS).",
                remedy=Remedy.ENCRYPT_SMTP,
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
