"""The one place where whatever stops a request becomes an HTTP answer: a JSON error under /api,
a page with one clear message elsewhere. Library remedies (errors.Remedy) are put in the portal's words.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from importer.errors import (
    ActivationError,
    ConflictError,
    DatabaseBusyError,
    FileLevelError,
    ImporterError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
    Remedy,
    WriteConflictError,
)


class WebError(Exception):
    """An answer the portal itself gives (not signed in, too many attempts, a bad CSRF token ...)."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True, slots=True)
class Answer:
    """An error as the client gets it: status, a stable code, one sentence, extra headers."""

    status: int
    code: str
    message: str
    headers: dict[str, str]

    def to_dict(self) -> dict[str, dict[str, str]]:
        """The JSON error body: {"error": {"code", "message"}}."""
        return {"error": {"code": self.code, "message": self.message}}


# Each remedy in the portal's words (the CLI has its own in cli/answers.py).
REMEDY_WORDS: dict[Remedy, Callable[[str | None], str]] = {
    Remedy.RAISE_LIMIT: lambda limit: f"the server's limit {limit or ''} can be raised by its operator",
    Remedy.CREATE_ORGANIZATION: lambda _: "an operator creates organizations on the command line",
    Remedy.LIST_BATCHES: lambda _: "the Batches page lists them",
    Remedy.UNDO_BATCH: lambda batch_id: f"undo batch {batch_id or ''} on the Batches page",
    Remedy.CHOOSE_SHEET: lambda _: "keep the members on the workbook's first sheet",
    Remedy.START_FROM_TEMPLATE: lambda _: "start from the sample on the Import page",
    Remedy.IMPORT_AS_TYPE: lambda user_type: f"upload it as {user_type or 'the other type'}",
    Remedy.RESEND_INVITATION: lambda _: "use `Send me a new link` below, or ask your admin for a new one",
    Remedy.ENCRYPT_SMTP: lambda _: "the operator must configure an encrypted mail server",
    Remedy.GIVE_PASSWORD_ON_STDIN: lambda _: "type it in the form",
    Remedy.CHOOSE_DATABASE: lambda _: "the operator must set IMPORTER_DATABASE_URL",
}

# Most specific first: the first class an error is an instance of decides its status.
_STATUSES: tuple[tuple[type[ImporterError], int, str], ...] = (
    (LimitExceededError, 413, "limit_exceeded"),
    (FileLevelError, 422, "file_rejected"),
    (NotFoundError, 404, "not_found"),
    (PermissionDeniedError, 403, "forbidden"),
    (ConflictError, 409, "conflict"),
    (ActivationError, 422, "activation_refused"),
    (DatabaseBusyError, 503, "busy"),
    (WriteConflictError, 503, "busy"),
)


def with_remedy(message: str, remedy: Remedy | None, arg: str | None) -> str:
    """A library message with its remedy in the portal's words after it."""
    words = REMEDY_WORDS.get(remedy) if remedy is not None else None
    if words is None:
        return message
    body = message.rstrip()
    return f"{body.removesuffix('.')} ({words(arg)})."


def answer_for(exc: BaseException) -> Answer:
    """The one mapping of an exception to the client's answer."""
    if isinstance(exc, WebError):
        return Answer(exc.status, exc.code, exc.message, exc.headers)
    if isinstance(exc, ImporterError):
        status, code = 400, "bad_request"
        for kind, kind_status, kind_code in _STATUSES:
            if isinstance(exc, kind):
                status, code = kind_status, kind_code
                break
        return Answer(status, code, with_remedy(str(exc), exc.remedy, exc.remedy_arg), {})
    return Answer(500, "internal", "Something went wrong on the server; nothing was changed.", {})
