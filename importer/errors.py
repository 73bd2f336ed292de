"""The exception tree: a broken world is an exception, bad data is a value (see values.py).

ImporterError                 anything the CLI turns into one clear line and exit 1
├── FileLevelError            the file as a whole cannot be imported (nothing is written)
│   ├── UnsupportedFileError  unknown extension or not the format it claims
│   ├── UnreadableFileError   cannot be decoded or parsed
│   ├── MissingColumnsError   a required column is absent
│   ├── WrongSheetTypeError   the sheet is another user type's (its columns say so)
│   └── LimitExceededError    over a size limit (says which Limit; front ends say how to raise it)
├── NotFoundError             an organization, team, batch or token that does not exist
│   └── NoDatabaseError       no database where the command looked (a reading command creates none)
├── PermissionDeniedError     the actor may not do this (not an active Owner or Admin)
├── ConflictError             the thing already exists
├── ActivationError           token unknown, used or expired; weak password
├── CheckingStoppedError      the process checking a big file's rows died (nothing is written)
├── DatabaseBusyError         the database stayed locked by another import or process past the wait
├── WriteConflictError        two writers stopped each other (deadlock); nothing was written
├── CommitFailedError         COMMIT failed and the database says nothing was saved
├── CommitUnknownError        COMMIT's answer was lost and the database cannot be asked
├── TransportError            no mail can go: server unreachable, login refused, outbox unwritable
├── RecipientRefused          the mail server refused one recipient (recorded; the run goes on)
└── UnsendableAddress         a stored address no envelope can carry (recorded; the run goes on)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from importer.values import Limit as Limit  # re-exported: errors name their facts
from importer.values import Remedy as Remedy
from importer.values import UserType

if TYPE_CHECKING:
    from importer.values import SendResult


class ImporterError(Exception):
    """Base of every error the importer raises on purpose; its message is for the user.

    The message says what is wrong in words any front end can show; `remedy` (and `remedy_arg`) says
    what the user can do about it as a fact, which the CLI and the portal each phrase their own way.
    """

    def __init__(self, message: str, *, remedy: Remedy | None = None, remedy_arg: str | None = None) -> None:
        super().__init__(message)
        self.remedy = remedy
        self.remedy_arg = remedy_arg


class FileLevelError(ImporterError):
    """The file as a whole cannot be imported; nothing is written."""


class UnsupportedFileError(FileLevelError):
    """The file's extension or content is not a supported format."""


class UnreadableFileError(FileLevelError):
    """The file cannot be decoded or parsed."""


class MissingColumnsError(FileLevelError):
    """One or more required columns are missing from the header row.

    `looks_like` is the user type the header (or the sample sheet's stamp) points at instead, if any.
    """

    def __init__(
        self, message: str, *, expected: UserType | None = None, looks_like: UserType | None = None
    ) -> None:
        super().__init__(message, remedy=Remedy.IMPORT_AS_TYPE if looks_like else None, remedy_arg=looks_like)
        self.expected = expected
        self.looks_like = looks_like


class WrongSheetTypeError(FileLevelError):
    """The sheet has columns only another user type's sheet has: imported as this type, it would
    make the wrong kind of member (a Portal Access sheet read as No Portal Access: phone users)."""

    def __init__(self, message: str, *, expected: UserType, looks_like: UserType) -> None:
        super().__init__(message, remedy=Remedy.IMPORT_AS_TYPE, remedy_arg=looks_like)
        self.expected = expected
        self.looks_like = looks_like


class LimitExceededError(FileLevelError):
    """The file is over one of the configured limits: `limit` says which (each front end says how to
    raise it), `allowed` its value."""

    def __init__(self, message: str, *, limit: Limit | None = None, allowed: float | None = None) -> None:
        super().__init__(message, remedy=Remedy.RAISE_LIMIT if limit else None, remedy_arg=limit)
        self.limit = limit
        self.allowed = allowed


class NotFoundError(ImporterError):
    """An organization, team, batch or token does not exist."""


class NoDatabaseError(NotFoundError):
    """There is no database (or no schema in it) where a command that only reads looked."""

    def __init__(self, where: str) -> None:
        super().__init__(f"no database at {where}")
        self.where = where


class PermissionDeniedError(ImporterError):
    """The acting member may not do this."""


class ConflictError(ImporterError):
    """The thing to create already exists."""


class ActivationError(ImporterError):
    """An activation token is unknown, used or expired, or a password is too weak."""


class CheckingStoppedError(ImporterError):
    """The worker process checking a big file's rows stopped without a word; nothing was written."""


class DatabaseBusyError(ImporterError):
    """The database stayed locked by another import or process for longer than the wait allows."""


class WriteConflictError(ImporterError):
    """The database stopped this transaction because another one wrote the same rows (deadlock)."""


class CommitFailedError(ImporterError):
    """COMMIT failed, and a new connection confirms nothing of the batch was saved."""


class CommitUnknownError(ImporterError):
    """COMMIT's answer was lost and the database cannot be reached to find out what happened."""


class TransportError(ImporterError):
    """No mail can go: server unreachable, TLS or login refused, outbox not writable."""

    def __init__(self, message: str, *, result: SendResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class RecipientRefused(ImporterError):
    """The mail server refused one recipient or message; the run records it and goes on."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"{address} was refused: {reason}")
        self.address = address
        self.reason = reason


class UnsendableAddress(ImporterError):
    """A stored address that cannot be put on an envelope; reported against the member, the run goes on."""
