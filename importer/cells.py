"""Cell text shared by every file the product reads and writes: trimming, the formula guard
(OWASP CSV injection), and control characters shown instead of obeyed."""

from __future__ import annotations

import re
from collections.abc import Sequence

# What trimming removes from both ends of a cell: every Unicode space separator (U+0020, the
# no-break spaces U+00A0, U+2007, U+202F, and U+1680, U+2000-U+200A, U+205F, U+3000), tab, CR
# and LF. Not str.strip(): that also drops vertical tab, form feed, the C0 separators
# U+001C-U+001F, NEL and U+2028/U+2029, control characters the rules must see and refuse.
TRIMMED = (
    " \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000\t\r\n"
)
# What str.strip() drops and trimming keeps: every other character str.isspace() accepts.
KEPT_AT_EDGES = "\x0b\x0c\x1c\x1d\x1e\x1f\x85\u2028\u2029"

# A cell starting with one of these is run as a formula by a spreadsheet.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")

# Control, zero-width and bidi characters: an ESC printed in a terminal, or a U+202E in a web page,
# would act on the reader's screen. Tab and line feed are kept where a file may hold them.
_INVISIBLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
# On one line of a terminal's output, a tab or a line feed could forge the layout (or a new line).
_INVISIBLE_ON_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def trim(value: str) -> str:
    """A cell without the spaces, tabs and line breaks at its ends (TRIMMED)."""
    return value.strip(TRIMMED)


def trim_all(values: Sequence[str]) -> list[str]:
    """trim of every cell of a column: C-level str.strip() when no cell holds what trim keeps (the
    usual column), as strip with an argument costs twice as much (0.2 s more a million cells)."""
    joined = "\x00".join(values)
    if not any(char in joined for char in KEPT_AT_EDGES):  # one memchr-fast search each
        return list(map(str.strip, values))
    return list(map(trim, values))


def _guarded(value: str) -> bool:
    """Whether a value gets the guard: a trigger first, or after apostrophes (so that the inverse
    never mistakes a value of the user's, `'-ann@example.com`, for a guarded one)."""
    return value.lstrip("'").startswith(FORMULA_TRIGGERS)


def neutralize(value: str) -> str:
    """A cell that a spreadsheet would run as a formula, made inert with a leading apostrophe."""
    return "'" + value if _guarded(value) else value


def unguard(value: str) -> str:
    """The exact inverse of neutralize, for the files the importer wrote (unguard(neutralize(v)) == v)."""
    return value[1:] if value.startswith("'") and _guarded(value[1:]) else value


def visible(text: str, *, one_line: bool = False) -> str:
    """Control and invisible characters written as ⟨U+XXXX⟩ (with `one_line`, tab and line feed too)."""
    pattern = _INVISIBLE_ON_ONE_LINE if one_line else _INVISIBLE
    return pattern.sub(lambda m: f"⟨U+{ord(m.group()):04X}⟩", text)
