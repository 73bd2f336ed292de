"""PINs of No Portal Access members: how many digits a generated one has, and how one is kept."""

from __future__ import annotations

import hashlib
import secrets

PIN_DIGITS = 6


def hash_pin(pin: str) -> str:
    """A salted hash of a PIN.

    Salted SHA-256, not a slow hash: a million PINs must load in seconds, and a 4–8 digit PIN
    cannot be protected by hashing alone anyway; the hash only keeps PINs out of plain sight.
    """
    salt = secrets.token_hex(8)
    return f"sha256${salt}${hashlib.sha256((salt + pin).encode()).hexdigest()}"


def verify_pin(stored: str, pin: str) -> bool:
    """Whether a PIN matches its stored hash."""
    _, salt, digest = stored.split("$")
    return secrets.compare_digest(hashlib.sha256((salt + pin).encode()).hexdigest(), digest)
