"""The deadline of an SMTP exchange: a thread that shuts the socket down when it passes.

smtplib's timeout bounds each read, so a server that sends a line (or a byte) just inside it keeps
one command going for ever; the watch here bounds the whole exchange (transports/smtp.py).
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
import threading
import time


class Watch:
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


class WatchedSmtp(smtplib.SMTP):
    """smtplib.SMTP whose socket the deadline watch can shut down from the moment it connects."""

    def __init__(self, host: str, port: int, *, timeout: float, watch: Watch) -> None:
        self._watch = watch
        super().__init__(host, port, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        # smtplib's one hook between creating the socket and reading the greeting (SMTP_SSL's
        # handshake comes after it); typeshed does not declare it.
        connection: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        self._watch.attach(connection)
        return connection


class WatchedSmtpSsl(smtplib.SMTP_SSL, WatchedSmtp):
    """smtplib.SMTP_SSL, watched from before its TLS handshake (see the class order)."""

    def __init__(
        self, host: str, port: int, *, timeout: float, watch: Watch, context: ssl.SSLContext
    ) -> None:
        self._watch = watch
        smtplib.SMTP_SSL.__init__(self, host, port, timeout=timeout, context=context)
