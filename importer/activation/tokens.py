"""Activation tokens, their links, and the moments they are stated in.

A token is `secrets.token_urlsafe(32)`; only its SHA-256 is stored.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

from importer.errors import ImporterError
from importer.store.models import utcnow

ACTIVATION_DAYS = 30
TOKEN_BYTES = 32
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def new_token() -> str:
    """A fresh activation token: 32 random bytes, URL-safe, never starting with `-`.

    A token starting with `-` (1 in 64) reads as an option on a command line; drawing again costs
    less than a tenth of a bit. Older tokens that start with `-` still work.
    """
    while (token := secrets.token_urlsafe(TOKEN_BYTES)).startswith("-"):
        pass
    return token


def hash_token(token: str) -> str:
    """The stored form of a token: SHA-256, hex (a token has 256 bits of entropy; no salt needed)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def activation_link(base_url: str, *, token: str) -> str:
    """The set-password link of a token: `BASE_URL/activate?token=TOKEN`."""
    return f"{base_url.rstrip('/')}/activate?token={token}"


def check_base_url(base_url: str) -> str:
    """The portal's address, checked fit for links (http or https, no query string), without a final /."""
    base = base_url.strip().rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ImporterError(
            f"the base URL {base_url!r} is not usable for links: give the portal's address, "
            "such as https://portal.example.com (http or https, no query string)."
        )
    return base


# --- sending -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def format_moment(moment: dt.datetime) -> str:
    """A UTC moment in words, as emails and errors state it: `22 December 2026 at 14:03 UTC`."""
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year} at {moment:%H:%M} UTC"


def naive_utc(moment: dt.datetime | None) -> dt.datetime:
    """A moment as naive UTC, as the database stores it (now when None)."""
    if moment is None:
        return utcnow()
    if moment.tzinfo is not None:
        return moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment


def token_from(value: str) -> str:
    """The token itself, also when the whole link was pasted."""
    value = value.strip()
    if "token=" in value:
        found = parse_qs(urlsplit(value).query).get("token")
        if found:
            return found[0].strip()
    return value
