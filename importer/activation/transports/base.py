"""What every transport shares: the message it takes, the protocol it meets, the base it builds on.

A transport takes the finished RFC 5322 bytes (an OutgoingMessage) and raises RecipientRefused for
one refused recipient (the run records it and goes on) or TransportError when nothing can go. Each
transport lives in a module of its own beside this one (file.py, smtp.py), like pydantic-settings'
sources/providers.
"""

from __future__ import annotations

from dataclasses import dataclass
from email import policy as email_policy
from email.message import EmailMessage
from email.parser import Parser
from types import TracebackType
from typing import Protocol, Self


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


class Transport(Protocol):
    """Delivers messages; raises RecipientRefused for one refused recipient, TransportError else.

    A transport with an int attribute `connections` above 1 (SmtpTransport) has its `send` called
    from that many threads at once (activation/senders.py); any other, from one thread.
    """

    def send(self, message: OutgoingMessage, /) -> None:
        """Deliver one message."""


class BaseTransport:
    """The base of the transports: `with transport:` closes it, whatever happens inside."""

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
