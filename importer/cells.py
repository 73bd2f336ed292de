"""The formula guard shared by every file the product reads and writes (OWASP CSV injection)."""

from __future__ import annotations

# A cell starting with one of these is run as a formula by a spreadsheet.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")


def neutralize(value: str) -> str:
    """A cell that a spreadsheet would run as a formula, made inert with a leading apostrophe."""
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value


def unguard(value: str) -> str:
    """The inverse on the way in: our apostrophe (and Excel's "treat as text" prefix) dropped."""
    return value[1:] if len(value) > 1 and value[0] == "'" and value[1] in FORMULA_TRIGGERS else value
