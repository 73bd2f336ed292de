"""What a cell may do to whoever reads it: the formula guard (OWASP CSV injection) shared by every
file the product reads and writes, and control characters shown instead of obeyed."""

from __future__ import annotations

import re

# A cell starting with one of these is run as a formula by a spreadsheet.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")

# Control, zero-width and bidi characters: an ESC printed in a terminal, or a U+202E in a web page,
# would act on the reader's screen. Tab and line feed are kept where a file may hold them.
_INVISIBLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
# On one line of a terminal's output, a tab or a line feed could forge the layout (or a new line).
_INVISIBLE_ON_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def neutralize(value: str) -> str:
    """A cell that a spreadsheet would run as a formula, made inert with a leading apostrophe."""
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value


def unguard(value: str) -> str:
    """The inverse on the way in: our apostrophe (and Excel's "treat as text" prefix) dropped."""
    return value[1:] if len(value) > 1 and value[0] == "'" and value[1] in FORMULA_TRIGGERS else value


def visible(text: str, *, one_line: bool = False) -> str:
    """Control and invisible characters written as ⟨U+XXXX⟩ (with `one_line`, tab and line feed too)."""
    pattern = _INVISIBLE_ON_ONE_LINE if one_line else _INVISIBLE
    return pattern.sub(lambda m: f"⟨U+{ord(m.group()):04X}⟩", text)
