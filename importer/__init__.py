"""Member importer: spreadsheets in, pending members and per-row reports out.

The public API, for scripts and other front ends (the command line is one of them)::

    from importer import Settings, open_database, run_import

Names are loaded when first used (PEP 562): `import importer` loads neither pandas nor SQLAlchemy,
so the command line starts at once and a program pays only for what it calls.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from importer.activation.activating import ActivatedMember, LinkInfo, activate, check_token
    from importer.activation.links import IssuedLink, issue_owner_link
    from importer.activation.sending import send_activations
    from importer.activation.transports.base import Transport
    from importer.activation.transports.file import FileTransport
    from importer.activation.transports.smtp import SmtpSecurity, SmtpTransport
    from importer.errors import (
        ActivationError,
        CheckingStoppedError,
        CommitFailedError,
        CommitUnknownError,
        ConflictError,
        DatabaseBusyError,
        FileLevelError,
        ImporterError,
        Limit,
        LimitExceededError,
        MissingColumnsError,
        NoDatabaseError,
        NotFoundError,
        PermissionDeniedError,
        RecipientRefused,
        Remedy,
        TransportError,
        UnreadableFileError,
        UnsendableAddress,
        UnsupportedFileError,
        WriteConflictError,
        WrongSheetTypeError,
    )
    from importer.pipeline import run_import
    from importer.records import BatchDetail, BatchOutcome, BatchRecord, MemberRecord, UndoResult
    from importer.settings import Settings
    from importer.store.engine import open_database
    from importer.store.orgs import (
        create_organization,
        create_teams,
        list_batches,
        list_members,
        show_batch,
        undo_batch,
    )
    from importer.values import (
        ErrorCode,
        GeneratedPin,
        ImportResult,
        Notice,
        Outcome,
        RejectedRow,
        Role,
        RowError,
        SendFailure,
        SendResult,
        SkippedRow,
        Status,
        UserType,
        WarningCode,
    )

# Each public name and the module that defines it.
_WHERE: dict[str, str] = {
    **dict.fromkeys(["run_import"], "importer.pipeline"),
    **dict.fromkeys(
        ["BatchDetail", "BatchOutcome", "BatchRecord", "MemberRecord", "UndoResult"], "importer.records"
    ),
    **dict.fromkeys(["Settings"], "importer.settings"),
    **dict.fromkeys(
        [
            "ErrorCode",
            "GeneratedPin",
            "ImportResult",
            "Notice",
            "Outcome",
            "RejectedRow",
            "Role",
            "RowError",
            "SendFailure",
            "SendResult",
            "SkippedRow",
            "Status",
            "UserType",
            "WarningCode",
        ],
        "importer.values",
    ),
    **dict.fromkeys(["open_database"], "importer.store.engine"),
    **dict.fromkeys(
        ["create_organization", "create_teams", "list_batches", "list_members", "show_batch", "undo_batch"],
        "importer.store.orgs",
    ),
    **dict.fromkeys(
        ["ActivatedMember", "LinkInfo", "activate", "check_token"], "importer.activation.activating"
    ),
    **dict.fromkeys(["IssuedLink", "issue_owner_link"], "importer.activation.links"),
    **dict.fromkeys(["send_activations"], "importer.activation.sending"),
    **dict.fromkeys(["Transport"], "importer.activation.transports.base"),
    **dict.fromkeys(["FileTransport"], "importer.activation.transports.file"),
    **dict.fromkeys(["SmtpSecurity", "SmtpTransport"], "importer.activation.transports.smtp"),
    **dict.fromkeys(
        [
            "ActivationError",
            "CheckingStoppedError",
            "CommitFailedError",
            "CommitUnknownError",
            "ConflictError",
            "DatabaseBusyError",
            "FileLevelError",
            "ImporterError",
            "Limit",
            "LimitExceededError",
            "MissingColumnsError",
            "NoDatabaseError",
            "NotFoundError",
            "PermissionDeniedError",
            "RecipientRefused",
            "Remedy",
            "TransportError",
            "UnreadableFileError",
            "UnsendableAddress",
            "UnsupportedFileError",
            "WriteConflictError",
            "WrongSheetTypeError",
        ],
        "importer.errors",
    ),
}

__all__ = [
    "ActivatedMember",
    "ActivationError",
    "BatchDetail",
    "BatchOutcome",
    "BatchRecord",
    "CheckingStoppedError",
    "CommitFailedError",
    "CommitUnknownError",
    "ConflictError",
    "DatabaseBusyError",
    "ErrorCode",
    "FileLevelError",
    "FileTransport",
    "GeneratedPin",
    "ImportResult",
    "ImporterError",
    "IssuedLink",
    "Limit",
    "LimitExceededError",
    "LinkInfo",
    "MemberRecord",
    "MissingColumnsError",
    "NoDatabaseError",
    "NotFoundError",
    "Notice",
    "Outcome",
    "PermissionDeniedError",
    "RecipientRefused",
    "RejectedRow",
    "Remedy",
    "Role",
    "RowError",
    "SendFailure",
    "SendResult",
    "Settings",
    "SkippedRow",
    "SmtpSecurity",
    "SmtpTransport",
    "Status",
    "Transport",
    "TransportError",
    "UndoResult",
    "UnreadableFileError",
    "UnsendableAddress",
    "UnsupportedFileError",
    "UserType",
    "WarningCode",
    "WriteConflictError",
    "WrongSheetTypeError",
    "__version__",
    "activate",
    "check_token",
    "create_organization",
    "create_teams",
    "issue_owner_link",
    "list_batches",
    "list_members",
    "open_database",
    "run_import",
    "send_activations",
    "show_batch",
    "undo_batch",
]


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use, then keep it here."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'importer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
