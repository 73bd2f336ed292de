"""One message per row error code: its template and, beside it, its hint, in words any front end shows.

The checks find the facts about a bad cell (the character a name may not hold, what email-validator
said, the closest team, who imports); this module alone puts them into words. No front end's words
here: no command, flag or URL.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from importer.values import Actor, ErrorCode, Role, text_key


@dataclass(frozen=True, slots=True, kw_only=True)
class CellFacts:
    """What the checks found about one bad cell; each code's message reads the facts it needs."""

    value: str = ""  # the cell as the file gave it
    shown: str = ""  # the cell as a message may show it (a PIN masked)
    min_length: int | None = None
    max_length: int | None = None
    allowed: tuple[str, ...] = ()  # the values the column takes
    rows: tuple[int, ...] = ()  # the other rows of a duplicate
    character: str | None = None  # the first character a name may not hold
    problem: str | None = None  # why an address is not valid
    suggestion: str | None = None  # the close match of a mistyped role or team, or the meant address
    actor: Actor | None = None  # who imports: what a role the row asks for needs


Hint = Callable[[CellFacts], str]


def _no_hint(facts: CellFacts) -> str:
    return ""


@dataclass(frozen=True, slots=True)
class RowMessage:
    """A code's one sentence: what is wrong and how to fix it, and the hint that fills `{hint}`.

    Placeholders: {value}, {length}, {max}, {allowed}, {rows}, {character}, {problem}, {hint}.
    """

    template: str
    hint: Hint = _no_hint


def did_you_mean(suggestion: str | None) -> str:
    """` Did you mean "X"?`, or nothing without a suggestion."""
    return f' Did you mean "{suggestion}"?' if suggestion else ""


def _suggestion(facts: CellFacts) -> str:
    return did_you_mean(facts.suggestion)


def _role_not_allowed(facts: CellFacts) -> str:
    if text_key(facts.value) == text_key(Role.OWNER.value) or facts.actor is None:
        return "Nobody can be invited as Owner. Change the role to Admin or Member."
    actor = facts.actor
    return (
        f"Only an Owner can invite {facts.value.title()}s, and {actor.email} is "
        f"{actor.role.value}. Change the role to "
        f"{or_list([r.value for r in sorted(actor.may_invite)])}, "
        "or ask the Owner to import this row."
    )


def _pin_invalid(facts: CellFacts) -> str:
    value = facts.value
    digits = value.isdigit()
    if digits and len(value) < (facts.min_length or 0):
        return (
            " If it had leading zeros, the spreadsheet dropped them: format the PIN "
            "column as Text and enter it again."
        )
    if not digits and _NUMBER_LIKE.fullmatch(value):
        return " The spreadsheet turned it into a number; format the PIN column as Text."
    return ""


# What a spreadsheet makes of a long run of digits: 1.23E+7, 12,345,678, -1234.
_NUMBER_LIKE = re.compile(r"[\d.,Ee+ -]+")


MESSAGES: dict[ErrorCode, RowMessage] = {
    ErrorCode.NAME_MISSING: RowMessage("Name is empty. Enter the member's name."),
    ErrorCode.NAME_TOO_LONG: RowMessage(
        "Name is {length} characters long; the limit is {max}. Shorten it to at most {max}."
    ),
    ErrorCode.NAME_INVALID: RowMessage(
        "Name contains a line break or an invisible control character ({character}). "
        "Retype the name on a single line."
    ),
    ErrorCode.EMAIL_MISSING: RowMessage("Email is empty. Enter the address the member will log in with."),
    ErrorCode.EMAIL_INVALID: RowMessage(
        '"{value}" is not a valid email address: {problem}. Correct the address.{hint}', _suggestion
    ),
    ErrorCode.EMAIL_DUPLICATE_IN_FILE: RowMessage(
        'The email "{value}" is also on row {rows}. Keep it on one row only and remove or correct the others.'
    ),
    ErrorCode.ROLE_MISSING: RowMessage("Role is empty. Enter {allowed}."),
    ErrorCode.ROLE_INVALID: RowMessage(
        '"{value}" is not a role that can be invited. Enter {allowed}.{hint}', _suggestion
    ),
    ErrorCode.ROLE_NOT_ALLOWED: RowMessage("{hint}", _role_not_allowed),
    ErrorCode.TEAM_UNKNOWN: RowMessage(
        'There is no team "{value}" in this organization.{hint} Use an existing team\'s name, '
        "leave the cell blank, or ask an admin to create the team first.",
        _suggestion,
    ),
    ErrorCode.PIN_INVALID: RowMessage(
        'PIN "{value}" is not 4–8 digits.{hint} '
        "Enter 4 to 8 digits, or leave it blank to have one generated.",
        _pin_invalid,
    ),
    ErrorCode.MEMBER_DUPLICATE_IN_FILE: RowMessage(
        '"{value}" is also on row {rows}. Keep this member on one row only and remove or correct the others.'
    ),
    ErrorCode.MEMBER_EXISTS: RowMessage("Already a member of this organization; nothing to do."),
}


def row_message(code: ErrorCode, facts: CellFacts | None = None) -> str:
    """The code's sentence, filled in with the facts about one cell (or row)."""
    facts = facts or CellFacts()
    message = MESSAGES[code]
    return message.template.format(
        value=facts.shown,
        length=str(len(facts.value)),
        max=str(facts.max_length or ""),
        allowed=or_list(facts.allowed) if facts.allowed else "",
        rows=and_list([str(row) for row in facts.rows]) if facts.rows else "",
        character=describe_char(facts.character) if facts.character else "a control character",
        problem=facts.problem or "not a valid address",
        hint=message.hint(facts),
    )


def or_list(values: Iterable[str]) -> str:
    """`"A"`, `"A" or "B"`, `"A", "B" or "C"`."""
    quoted = [f'"{v}"' for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def and_list(values: list[str]) -> str:
    """`2`, `2 and 3`, `2, 3 and 4`."""
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " and " + values[-1]


def describe_char(char: str) -> str:
    """A character a name may not hold, as a person can find it: a line break, or its code point."""
    if char in "\r\n\u2028\u2029":
        return "a line break"
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}{' ' + name.title() if name else ''}"
