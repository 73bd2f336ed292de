"""Passwords: an organization's policy (with the common-password and own-address refusals that
every front end applies), and the slow salted hash (scrypt) a password is kept as."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from importer.accounts.audit import Acting, Channel, record
from importer.addresses import email_key
from importer.errors import ImporterError, PermissionDeniedError
from importer.store.models import AuditAction, Member, Organization
from importer.store.orgs import find_organization
from importer.values import Role, Status

DEFAULT_MIN_PASSWORD_LENGTH = 8
MIN_PASSWORD_LENGTH_RANGE = (8, 128)
MAX_PASSWORD_LENGTH = 1024
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_SALT_BYTES = 16
SCRYPT_HASH_BYTES = 32
# The 11,611 passwords of 8 characters or more among the 30,000 most common in zxcvbn 4.5's
# frequency list (MIT; from leaked-password corpora): shipped, never downloaded at run time.
COMMON_PASSWORDS = Path(__file__).parent / "common-passwords.txt"
# The address's local part is refused inside a password from this many characters on.
MIN_ADDRESS_PART = 3


def _is_symbol(ch: str) -> bool:
    return not ch.isalnum() and not ch.isspace()


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords, lower-cased."""
    return frozenset(line.strip().lower() for line in COMMON_PASSWORDS.read_text("utf-8").splitlines())


def guessable_reasons(password: str, *, email: str) -> list[str]:
    """Why a password is easy to guess whatever the policy: a common one, or the address inside it."""
    reasons: list[str] = []
    lowered = password.lower()
    if lowered in common_passwords():
        reasons.append("it is one of the most common passwords, which attackers try first")
    address = email.strip().lower()
    local = address.split("@", 1)[0]
    if address and (address in lowered or (len(local) >= MIN_ADDRESS_PART and local in lowered)):
        reasons.append("it contains the email address")
    return reasons


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """An organization's password rules: a minimum length, letters and digits, maybe a symbol."""

    min_length: int = DEFAULT_MIN_PASSWORD_LENGTH
    require_symbol: bool = False

    @classmethod
    def for_organization(cls, org: Organization) -> PasswordPolicy:
        """The policy the organization has set."""
        return cls(
            min_length=org.password_min_length or DEFAULT_MIN_PASSWORD_LENGTH,
            require_symbol=bool(org.password_require_symbol),
        )

    def problems(self, password: str) -> list[str]:
        """Every rule the password breaks, each in words (empty when it is acceptable)."""
        found: list[str] = []
        length = len(password)
        if length < self.min_length:
            found.append(f"at least {self.min_length} characters (it has {length})")
        if length > MAX_PASSWORD_LENGTH:
            found.append(f"at most {MAX_PASSWORD_LENGTH} characters (it has {length})")
        if not any(ch.isalpha() for ch in password):
            found.append("at least one letter")
        if not any(ch.isdigit() for ch in password):
            found.append("at least one digit")
        if self.require_symbol and not any(_is_symbol(ch) for ch in password):
            found.append("at least one symbol, such as ! # % or ? (not a letter, digit or space)")
        return found

    def refusals(self, password: str, *, email: str) -> list[str]:
        """Every reason to refuse the password for this address, each a clause ("it needs ...",
        "it is one of the most common passwords"); empty when it may be used."""
        return [f"it needs {problem}" for problem in self.problems(password)] + guessable_reasons(
            password, email=email
        )

    def refusal(self, password: str, *, email: str, whose: str) -> str | None:
        """The one sentence that refuses the password (every reason in it), or None when it may be used."""
        problems = self.problems(password)
        reasons = ([f"it needs {'; '.join(problems)}"] if problems else []) + guessable_reasons(
            password, email=email
        )
        if not reasons:
            return None
        return f"This password does not meet the policy of {whose}: {'; '.join(reasons)}."

    def describe(self) -> str:
        """The policy in words."""
        symbol = " and a symbol" if self.require_symbol else ""
        return f"at least {self.min_length} characters, with letters, digits{symbol}"


def _password_bytes(password: str) -> bytes:
    # NFKC so that the same password typed on another keyboard or OS hashes the same.
    return unicodedata.normalize("NFKC", password).encode("utf-8", "surrogatepass")


def hash_password(password: str) -> str:
    """A slow salted hash: `scrypt$n$r$p$salt_b64$hash_b64` (n=2**14, r=8, p=1, 16-byte salt)."""
    salt = secrets.token_bytes(SCRYPT_SALT_BYTES)
    digest = hashlib.scrypt(
        _password_bytes(password),
        salt=salt,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        dklen=SCRYPT_HASH_BYTES,
    )
    return "$".join(
        (
            "scrypt",
            str(SCRYPT_N),
            str(SCRYPT_R),
            str(SCRYPT_P),
            base64.b64encode(salt).decode("ascii"),
            base64.b64encode(digest).decode("ascii"),
        )
    )


def verify_password(stored: str, password: str) -> bool:
    """Whether the password matches a hash made by hash_password (False for a malformed hash)."""
    try:
        scheme, n, r, p, salt_b64, hash_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(hash_b64, validate=True)
        digest = hashlib.scrypt(
            _password_bytes(password),
            salt=base64.b64decode(salt_b64, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=128 * 1024 * 1024,
        )
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(digest, expected)


def get_password_policy(engine: Engine, org_ref: str) -> PasswordPolicy:
    """The organization's password policy."""
    with Session(engine) as session:
        return PasswordPolicy.for_organization(find_organization(session, org_ref))


def set_password_policy(
    engine: Engine,
    org_ref: str,
    *,
    actor_email: str,
    min_length: int | None = None,
    require_symbol: bool | None = None,
    channel: Channel = Channel.CLI,
) -> PasswordPolicy:
    """Change the organization's password policy; only its active Owner may (`channel`: how they came)."""
    low, high = MIN_PASSWORD_LENGTH_RANGE
    if min_length is not None and not low <= min_length <= high:
        raise ImporterError(
            f"the minimum password length must be between {low} and {high} (not {min_length})."
        )
    with Session(engine) as session, session.begin():
        org = find_organization(session, org_ref)
        actor = session.scalar(
            select(Member).where(
                Member.organization_id == org.id, Member.email_key == email_key(actor_email.strip())
            )
        )
        if actor is None or actor.role is not Role.OWNER or actor.status is not Status.ACTIVE:
            raise PermissionDeniedError(
                f"{actor_email} is not the active Owner of {org.name}; "
                "only the Owner may change its password policy."
            )
        before = PasswordPolicy.for_organization(org)
        if min_length is not None:
            org.password_min_length = min_length
        if require_symbol is not None:
            org.password_require_symbol = require_symbol
        after = PasswordPolicy.for_organization(org)
        if after != before:
            record(
                session,
                actor=Acting(actor_email, channel).label,
                action=AuditAction.PASSWORD_POLICY_CHANGED,
                organization_id=org.id,
                subject=org.name,
                detail=f"{before.describe()} -> {after.describe()}",
            )
        return after
