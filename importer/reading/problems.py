"""Words the readers share for what is wrong with a file: a library's complaint, a password, a name."""

from __future__ import annotations

from pathlib import Path


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (library errors can be long)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def password_protected(path: Path) -> str:
    """The message for an encrypted workbook."""
    return (
        f"{path.name} is password-protected (encrypted), so it cannot be read. Open it, remove the "
        "password (Excel: File > Info > Protect Workbook > Encrypt with Password, and clear it; "
        "LibreOffice: File > Save As without 'Save with password'), and upload it again."
    )


def printable(text: str) -> str:
    """A name from inside a file, safe to put in a one-line message."""
    shown = text if text.isprintable() else text.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= 80 else shown[:77] + "..."
