"""Addresses: email-validator's verdict (no DNS) and the one comparison form, for a million rows.

Most addresses are plain ASCII `local@domain`. For those, the local part is checked with a regular
expression that accepts a strict subset of what email-validator accepts, and the domain is checked
once by email-validator and cached. Anything else goes through email-validator in full, so the
verdict is always the one email-validator would give.

Two addresses are one mailbox when their comparison forms (email_key) are equal: the local part
as NFC then lower-case (values.text_key: never NFKC, so a full-width, dotless or Cyrillic letter
there stays a different mailbox), the domain as email-validator normalizes it (IDNA: case,
full-width letters and punycode are only spellings of one domain name, as DNS itself reads them).
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from importer.values import text_key

# RFC 5322 dot-atom local part in ASCII, at most 64 characters, in an address of at most 254:
# what email-validator accepts without question when the domain is fine.
_DOMAIN_PART = r"(?P<domain>[A-Za-z0-9.-]+)"
_SIMPLE = re.compile(
    r"(?=[^@]{1,64}@)(?=.{1,254}\Z)"
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    rf"@{_DOMAIN_PART}"
)


@lru_cache(maxsize=65_536)
def _domain_problem(domain: str) -> str | None:
    return _full_problem(f"a@{domain}")


@lru_cache(maxsize=4096)
def _full_problem(address: str) -> str | None:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc).rstrip(".")
    return None


def check_email(address: str) -> str | None:
    """None when the address is valid; otherwise email-validator's reason, in its words."""
    match = _SIMPLE.fullmatch(address)
    if match is not None and _domain_problem(match["domain"].lower()) is None:
        return None
    return _full_problem(address)


def surely_valid(addresses: list[str]) -> list[bool]:
    """For a column of addresses: True where check_email would surely say valid, False where
    only check_email can tell. One look-up per distinct domain, then one C-level regex pass.

    A column names a few domains: the good ones are spelled out in the pattern (_SIMPLE with its
    domain part replaced by them), so no row's domain is taken out and looked up in Python (half
    the time of a million addresses). A column of many domains takes the general way.
    """
    domains = {address.rpartition("@")[2] for address in addresses}
    good = tuple(
        sorted(d for d in domains if _PLAIN_DOMAIN.fullmatch(d) and _domain_problem(d.lower()) is None)
    )
    if len(good) > _SPELLED_OUT_DOMAINS:
        matches = list(map(_SIMPLE.fullmatch, addresses))
        known = set(good)
        return [m is not None and m["domain"] in known for m in matches]
    if not good:
        return [False] * len(addresses)
    pattern = _with_domains(good)
    return [m is not None for m in map(pattern.fullmatch, addresses)]


_PLAIN_DOMAIN = re.compile(r"[A-Za-z0-9.-]+")
_SPELLED_OUT_DOMAINS = 64


@lru_cache(maxsize=64)
def _with_domains(domains: tuple[str, ...]) -> re.Pattern[str]:
    """_SIMPLE with these domains, and only these, after the @ (longest first)."""
    alternatives = "|".join(map(re.escape, sorted(domains, key=len, reverse=True)))
    return re.compile(_SIMPLE.pattern.replace(_DOMAIN_PART, f"(?:{alternatives})"))


@lru_cache(maxsize=65_536)
def _normalized_domain(domain: str) -> str | None:
    """email-validator's normalized form of a domain (IDNA, Unicode, lower-case); None if invalid."""
    try:
        return validate_email(f"a@{domain}", check_deliverability=False).domain
    except EmailNotValidError:
        return None


def _plain(key: str) -> bool:
    """Whether a lower-cased address is its own comparison form: ASCII, and no punycode label."""
    return key.isascii() and "xn--" not in key


def email_key(address: str) -> str:
    """The comparison form of a valid address: local part NFC then lower-case, domain as
    email-validator normalizes it (`Ann@XN--BCHER-KVA.DE` and `ann@bücher.de` are one mailbox).

    An address email-validator refuses keeps the plain form (NFC, lower-case)."""
    key = address.lower()
    if _plain(key):
        return key
    local, at, domain = address.rpartition("@")
    normal = _normalized_domain(domain) if at else None
    return f"{text_key(local)}@{normal}" if normal is not None else text_key(address)


def email_keys(addresses: list[str]) -> list[str]:
    """email_key of each address ("" stays ""); plain ASCII columns in C-level passes."""
    keys = list(map(str.lower, addresses))
    if _plain("\x00".join(keys)):  # the usual column: every key is the address, lower-cased
        return keys
    return [key if _plain(key) else email_key(address) for address, key in zip(addresses, keys, strict=True)]


# Mail providers whose near-misses are almost always typos (gmial.com, hotmial.com, yaho.com ...).
PROVIDERS = (
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "ymail.com", "hotmail.com",
    "hotmail.co.uk", "hotmail.fr", "outlook.com", "live.com", "msn.com", "icloud.com", "me.com", "mac.com",
    "aol.com", "mail.com", "protonmail.com", "proton.me", "gmx.com", "gmx.de", "gmx.net", "web.de",
    "yandex.ru", "mail.ru", "zoho.com", "fastmail.com", "comcast.net", "verizon.net", "att.net", "qq.com",
    "163.com", "naver.com", "orange.fr", "free.fr", "libero.it", "t-online.de",
)  # fmt: skip
_PROVIDER_SET = frozenset(PROVIDERS)


@lru_cache(maxsize=65_536)
def suggest_domain(domain: str) -> str | None:
    """The mail provider a mistyped domain most likely meant (gmial.com -> gmail.com), or None."""
    domain = domain.lower().rstrip(".")
    if not domain or domain in _PROVIDER_SET:
        return None
    candidates = (domain,) if "." in domain else (domain, domain + ".com")
    for candidate in candidates:
        match = difflib.get_close_matches(candidate, PROVIDERS, n=1, cutoff=0.85)
        if not match or match[0] == domain:
            continue
        # A bare name ("hotmial") is compared with ".com" added, which alone makes short names look
        # alike ("acme.com" and "me.com"): the name itself must be close to the provider's.
        stem = match[0].split(".", 1)[0]
        if candidate is domain or difflib.SequenceMatcher(None, domain, stem).ratio() >= 0.75:
            return match[0]
    return None
