"""The portal's settings: one object, filled by `importer serve` from its options and the environment."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from importer.settings import Settings

DEFAULT_SESSION_IDLE_SECONDS = 12 * 3600
# Per minute: 30 wrong passwords for one address are refused (429) before they are all tried.
DEFAULT_SIGN_IN_PER_ACCOUNT = "10/minute"
DEFAULT_SIGN_IN_PER_ADDRESS = "30/minute"
DEFAULT_ACTIVATE_PER_ADDRESS = "30/minute"
# A form that is not an upload is small: this caps every other request body.
MAX_FORM_BYTES = 256 * 1024
SECRET_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class WebConfig:
    """How the portal runs: its signing key, its address, its limits."""

    secret_key: str
    base_url: str = "http://127.0.0.1:8000"
    session_idle_seconds: int = DEFAULT_SESSION_IDLE_SECONDS
    rate_limit_storage: str = "memory://"
    sign_in_per_account: str = DEFAULT_SIGN_IN_PER_ACCOUNT
    sign_in_per_address: str = DEFAULT_SIGN_IN_PER_ADDRESS
    activate_per_address: str = DEFAULT_ACTIVATE_PER_ADDRESS
    settings: Settings = field(default_factory=Settings)
    upload_dir: Path = Path("uploads")

    @property
    def https(self) -> bool:
        """Whether the portal is reached over HTTPS (cookies are then `Secure`)."""
        return self.base_url.lower().startswith("https://")


def secret_key_path(database_url: str) -> Path | None:
    """Where the generated key is kept: beside a SQLite database file (None for other databases)."""
    prefix = "sqlite:///"
    if not database_url.startswith(prefix):
        return None
    database = database_url[len(prefix) :].split("?", 1)[0]
    if not database or database == ":memory:":
        return None
    return Path(database).with_name(Path(database).name + ".secret-key")


def load_secret_key(path: Path) -> str:
    """The key kept in `path`, made (random, mode 0600) the first time."""
    try:
        key = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        key = ""
    if key:
        return key
    key = secrets.token_urlsafe(SECRET_KEY_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: two processes starting at once keep the first one's key.
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    return key
