"""Engines: SQLite (default) or PostgreSQL, with the schema created on first use."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import NullPool

from importer.errors import ImporterError
from importer.settings import DEFAULT_SQLITE_BUSY_SECONDS

# The newest migration in importer/migrations/versions (tests/test_db.py keeps them in step).
HEAD_REVISION = "0002"
_MIGRATION_LOCK = 0x1D_0C_0B_1E


def open_database(url: str, *, busy_seconds: float = DEFAULT_SQLITE_BUSY_SECONDS) -> Engine:
    """An engine for any SQLAlchemy URL, its schema created or upgraded (Alembic)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ImporterError(f"--db: {url!r} is not a database URL ({exc}).") from exc
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": busy_seconds}, poolclass=NullPool)
        _configure_sqlite(engine)
    else:
        engine = create_engine(parsed, pool_pre_ping=True)
    try:
        upgrade_schema(engine)
    except OperationalError as exc:
        raise ImporterError(
            f"cannot open the database {parsed.render_as_string(hide_password=True)}: "
            f"{str(exc.orig).strip().splitlines()[0]}"
        ) from exc
    return engine


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None for an empty database)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade_schema(engine: Engine) -> bool:
    """Create or upgrade the schema to the newest revision; True if anything was done.

    Cheap when up to date (one query). Otherwise runs Alembic in one transaction that holds the
    database's write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so two
    processes starting at once on a new database do not both try to create it.
    """
    if current_revision(engine) == HEAD_REVISION:
        return False
    from alembic import command  # only needed when the schema changes
    from alembic.config import Config

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config = Config()
        config.set_main_option("script_location", "importer:migrations")
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    return True


def _configure_sqlite(engine: Engine) -> None:
    """Foreign keys on, WAL, and transactions that take the write lock up front.

    `BEGIN IMMEDIATE` makes a second import wait (busy timeout) for the first instead of failing
    half-way when its read transaction cannot be upgraded to a write.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def is_sqlite(engine: Engine) -> bool:
    """Whether the engine talks to SQLite."""
    return engine.dialect.name == "sqlite"
