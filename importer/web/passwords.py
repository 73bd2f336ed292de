"""The password forms' answer: the confirmation, then every refusal of the policy (accounts.passwords:
its rules, common passwords, the address inside it), each named, not just the first."""

from __future__ import annotations

from importer.accounts.passwords import PasswordPolicy, guessable_reasons


def password_problems(
    password: str, *, confirm: str, email: str, policy: PasswordPolicy | None = None
) -> list[str]:
    """Every reason the form refuses the password, in words (empty when it may be used).

    Without a policy (a change of password: the account's strictest policy is applied when it is
    saved), only what no policy allows is checked here.
    """
    problems: list[str] = []
    if password != confirm:
        problems.append("the two passwords are not the same")
    if policy is not None:
        problems.extend(policy.refusals(password, email=email))
    else:
        problems.extend(guessable_reasons(password, email=email))
    return problems
