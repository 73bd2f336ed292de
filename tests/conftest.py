"""Shared fixtures: test data, databases (SQLite and the real PostgreSQL), an organization."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, create_engine, text

from importer.pipeline import run_import
from importer.settings import Settings
from importer.store.engine import open_database
from importer.store.orgs import create_organization, create_teams
from importer.values import ImportResult, UserType

CHROMIUM = Path("/usr/bin/chromium")


def debian_chromium() -> Path:
    """Debian's chromium for the browser tests (the report, the portal). Missing is a failure with
    the package to install, never a skip: `make test` must run them (`.ci/run` installs it)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)")
    return CHROMIUM


DATA_DIR = Path(__file__).parent / "data"
POSTGRES_ENV = "IMPORTER_TEST_POSTGRES_URL"
# The Redis server the tests use (database 7 unless the URL names another).
REDIS_URL = os.environ.get("IMPORTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/7")
OWNER = "olive.owner@acme.example"
# The keys of `import --json` and summary.json, as PRODUCT.md lists them.
SUMMARY_KEYS = {
    "batch_id",
    "type",
    "dry_run",
    "rows",
    "created",
    "skipped",
    "rejected",
    "errors_by_code",
    "report_dir",
    "warnings",  # not in PRODUCT.md's list: each warning's code and message (issue 11)
}


@pytest.fixture
def data_dir() -> Path:
    """The folder of real test files, named after their case."""
    return DATA_DIR


def _postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set (CI sets it; the PostgreSQL tests then must pass)")
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL to a fresh, empty schema on the real PostgreSQL server, dropped afterwards."""
    base = _postgres_url()
    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(base)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # the server must be there when CI says so: fail, never skip
        pytest.fail(f"PostgreSQL at {base} is unreachable: {exc}")
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database test runs on SQLite and on the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'importer.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine with the schema created."""
    engine = open_database(db_url)
    yield engine
    engine.dispose()


@dataclass(frozen=True)
class Org:
    """An organization with an active Owner and teams Sales, Support, Engineering."""

    engine: Engine
    name: str
    id: int
    owner: str


@pytest.fixture
def org(engine: Engine) -> Org:
    """Acme Corp, its Owner, and three teams."""
    org_id = create_organization(engine, "Acme Corp", owner_email=OWNER, owner_name="Olive Owner")
    create_teams(engine, "Acme Corp", ["Sales", "Support", "Engineering"])
    return Org(engine=engine, name="Acme Corp", id=org_id, owner=OWNER)


@pytest.fixture
def write_csv(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write a small CSV sheet from lines and return its path."""

    def write(name: str, *lines: str, encoding: str = "utf-8") -> Path:
        path = tmp_path / name
        path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
        return path

    return write


def do_import(
    org: Org,
    path: Path,
    tmp_path: Path,
    *,
    user_type: UserType = UserType.PORTAL,
    actor: str | None = None,
    **options: object,
) -> ImportResult:
    """Import a sheet into the org through the library entry point, reports under tmp_path."""
    settings = options.pop("settings", None) or Settings(report_dir=tmp_path / "reports")
    return run_import(
        org.engine,
        path,
        org_ref=org.name,
        actor_email=actor or org.owner,
        user_type=user_type,
        settings=settings,  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )


def errors_of(result: ImportResult) -> list[tuple[int, str, str]]:
    """(row, column, code) of every error, the shape tests assert on."""
    return [(e.row_number, e.column, e.code.value) for e in result.errors]


@pytest.fixture(params=[None, 2], ids=["blocks-of-10000", "blocks-of-2"])
def read_blocks(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run a reading test at the real block size and again with blocks of 2 records, so that rows,
    blank rows, ragged rows and limits that straddle a block boundary are read the same way."""
    from importer.reading.sources import base

    if request.param is not None:
        monkeypatch.setattr(base, "BLOCK_ROWS", request.param)
    return int(base.BLOCK_ROWS)


@pytest.fixture
def helpers_started(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each importer.forked.Helper this test starts, in order: True when spawned, False when forked."""
    from importer import forked

    started: list[bool] = []
    start = forked.Helper.__init__

    def recorded(self, *args, spawn: bool = False, **options):  # type: ignore[no-untyped-def]
        started.append(spawn)
        start(self, *args, spawn=spawn, **options)

    monkeypatch.setattr(forked.Helper, "__init__", recorded)
    return started


def wait_for(
    what: Callable[[], Any], message: str = "", *, deadline: float = 60.0, step: float = 0.05
) -> Any:
    """Poll `what()` every `step` seconds until it is truthy; its value. Fails at the deadline."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = what()
        if value:
            return value
        time.sleep(step)
    pytest.fail(f"timed out after {deadline} s: {message or f'waiting for {what}'}")


def fresh_redis(database: int | None = None) -> str:
    """The URL of a Redis database on the tests' server, emptied first (only it): REDIS_URL's own,
    or `database` there (a test of its own, whose flush must not meet another's). Skipped without a
    server, except in CI, which promises one: there, unreachable is a failure."""
    import redis

    url = REDIS_URL if database is None else f"{REDIS_URL.rsplit('/', 1)[0]}/{database}"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis at {url}")
    client.flushdb()
    return url
