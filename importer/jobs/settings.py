"""What a worker needs to know: the import's Settings, the job limits, and how mail goes out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from importer.errors import ImporterError
from importer.settings import Settings

# Imports that may run at once for one organization, and in all (further ones wait their turn).
DEFAULT_MAX_IMPORTS_PER_ORG = 1
DEFAULT_MAX_IMPORTS = 4
# A running job's claim lasts this long unless its worker renews it (the heartbeat): a worker
# killed mid-job lets it run out, and another worker claims the job again.
DEFAULT_LEASE_SECONDS = 30.0
# How many times a job is tried before it fails for good (an error that will not pass: once).
DEFAULT_MAX_ATTEMPTS = 3
# How often an idle worker looks at the job table for work the queue did not wake it for.
DEFAULT_POLL_SECONDS = 2.0
# How long a batch's report files are kept (then purged by the workers; an undo purges them at once).
DEFAULT_REPORT_DAYS = 30.0


@dataclass(frozen=True, slots=True)
class MailSettings:
    """How an activations job sends: a folder of .eml files or an SMTP server (as the CLI's options)."""

    sender: str | None = None
    base_url: str | None = None
    transport: str = "file"  # or "smtp"
    outbox: Path = Path("outbox")
    smtp_host: str = "localhost"
    smtp_port: int | None = None
    smtp_security: str = "none"  # none | starttls | tls
    smtp_user: str | None = None
    smtp_password: str | None = None
    # SMTP connections sending at once (IMPORTER_SMTP_CONNECTIONS); 1, as the CLI's default.
    smtp_connections: int = 1


@dataclass(frozen=True, slots=True)
class JobSettings:
    """A worker's settings; the entry points fill them from the environment (settings_from_env)."""

    imports: Settings = field(default_factory=Settings)
    mail: MailSettings = field(default_factory=MailSettings)
    max_imports_per_org: int = DEFAULT_MAX_IMPORTS_PER_ORG
    max_imports: int = DEFAULT_MAX_IMPORTS
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    poll_seconds: float = DEFAULT_POLL_SECONDS
    report_days: float = DEFAULT_REPORT_DAYS

    @property
    def heartbeat_seconds(self) -> float:
        """How often a running job renews its lease and writes its progress."""
        return min(0.5, self.lease_seconds / 4)


# Each environment variable a worker reads, and the JobSettings/MailSettings/Settings field it sets.
_NUMBERS: dict[str, tuple[str, type[int] | type[float]]] = {
    "IMPORTER_MAX_IMPORTS_PER_ORG": ("max_imports_per_org", int),
    "IMPORTER_MAX_IMPORTS": ("max_imports", int),
    "IMPORTER_JOB_LEASE_SECONDS": ("lease_seconds", float),
    "IMPORTER_JOB_ATTEMPTS": ("max_attempts", int),
    "IMPORTER_JOB_POLL_SECONDS": ("poll_seconds", float),
    "IMPORTER_REPORT_DAYS": ("report_days", float),
}


def _number(environ: Mapping[str, str], name: str, kind: type[int] | type[float]) -> int | float | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise ImporterError(f"{name}={raw!r} is not a number.") from None
    if value <= 0:
        raise ImporterError(f"{name}={raw!r} must be more than 0.")
    return value


def settings_from_env(environ: Mapping[str, str]) -> JobSettings:
    """JobSettings from environment variables (the entry point passes os.environ): the mail
    settings as `send-activations` reads them (IMPORTER_FROM, IMPORTER_BASE_URL, IMPORTER_TRANSPORT,
    IMPORTER_OUTBOX, IMPORTER_SMTP_HOST/PORT/SECURITY/USER/PASSWORD/CONNECTIONS), the limits and
    timings (_NUMBERS) and IMPORTER_CHUNK_ROWS."""
    from importer.activation.transports.smtp import MAX_SMTP_CONNECTIONS

    port = _number(environ, "IMPORTER_SMTP_PORT", int)
    connections = _number(environ, "IMPORTER_SMTP_CONNECTIONS", int) or 1
    if connections > MAX_SMTP_CONNECTIONS:
        raise ImporterError(
            f"IMPORTER_SMTP_CONNECTIONS={connections}: choose from 1 to {MAX_SMTP_CONNECTIONS}."
        )
    transport = environ.get("IMPORTER_TRANSPORT", "file").strip() or "file"
    if transport not in ("file", "smtp"):
        raise ImporterError(f"IMPORTER_TRANSPORT={transport!r}: choose file or smtp.")
    security = environ.get("IMPORTER_SMTP_SECURITY", "none").strip() or "none"
    if security not in ("none", "starttls", "tls"):
        raise ImporterError(f"IMPORTER_SMTP_SECURITY={security!r}: choose none, starttls or tls.")
    mail = MailSettings(
        sender=environ.get("IMPORTER_FROM") or None,
        base_url=environ.get("IMPORTER_BASE_URL") or None,
        transport=transport,
        outbox=Path(environ.get("IMPORTER_OUTBOX") or "outbox"),
        smtp_host=environ.get("IMPORTER_SMTP_HOST") or "localhost",
        smtp_port=int(port) if port is not None else None,
        smtp_security=security,
        smtp_user=environ.get("IMPORTER_SMTP_USER") or None,
        smtp_password=environ.get("IMPORTER_SMTP_PASSWORD") or None,
        smtp_connections=int(connections),
    )
    imports = Settings()
    chunk_rows = _number(environ, "IMPORTER_CHUNK_ROWS", int)
    if chunk_rows is not None:
        imports = replace(imports, chunk_rows=int(chunk_rows))
    numbers: dict[str, Any] = {}
    for name, (attribute, kind) in _NUMBERS.items():
        value = _number(environ, name, kind)
        if value is not None:
            numbers[attribute] = kind(value)
    return JobSettings(imports=imports, mail=mail, **numbers)
