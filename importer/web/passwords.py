"""Password checks the portal adds to an organization's policy: common or breached passwords, the
address inside the password, the confirmation. Every unmet rule is named, not just the first."""

from __future__ import annotations

import functools
from pathlib import Path

from importer.accounts.passwords import PasswordPolicy

# The 11,611 passwords of 8 characters or more among the 30,000 most common in zxcvbn 4.5's
# frequency list (MIT; from leaked-password corpora): shipped, never downloaded at run time.
COMMON_PASSWORDS = Path(__file__).parent / "common-passwords.txt"
MIN_ADDRESS_PART = 3


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list, lower-cased."""
    return frozenset(line.strip().lower() for line in COMMON_PASSWORDS.read_text("utf-8").splitlines())


def password_problems(
    password: str, *, confirm: str, email: str, policy: PasswordPolicy | None = None
) -> list[str]:
    """Every rule the password breaks, in words (empty when it may be used)."""
    problems: list[str] = []
    if password != confirm:
        problems.append("the two passwords are not the same")
    if policy is not None:
        problems.extend(f"it needs {problem}" for problem in policy.problems(password))
    lowered = password.lower()
    if lowered in common_passwords():
        problems.append("it is one of the most common passwords, which are tried first by attackers")
    address = email.strip().lower()
    local = address.split("@", 1)[0]
    if address and (address in lowered or (len(local) >= MIN_ADDRESS_PART and local in lowered)):
        problems.append("it must not contain your email address")
    return problems
