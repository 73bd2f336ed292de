"""Engines: SQLite (default) or PostgreSQL, with the schema created on first use."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import NullPool

from importer.errors import ImporterError
from importer.models import Base
from importer.settings import DEFAULT_SQLITE_BUSY_SECONDS


def open_database(url: str, *, busy_seconds: float = DEFAULT_SQLITE_BUSY_SECONDS) -> Engine:
    """An engine for any SQLAlchemy URL, its schema created or upgraded."""
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
        Base.metadata.create_all(engine)
    except OperationalError as exc:
        raise ImporterError(
            f"cannot open the database {parsed.render_as_string(hide_password=True)}: "
            f"{str(exc.orig).strip().splitlines()[0]}"
        ) from exc
    return engine


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
