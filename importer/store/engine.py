"""Engines: SQLite (default) or PostgreSQL, with the schema created on first use; named locks."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import zlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from importer.errors import DatabaseBusyError, ImporterError, NoDatabaseError, Remedy, WriteConflictError
from importer.settings import DEFAULT_SQLITE_BUSY_SECONDS

# The newest migration in importer/store/migrations/versions (tests/store/test_engine.py keeps them in step).
HEAD_REVISION = "0008"
_MIGRATION_LOCK = 0x1D_0C_0B_1E


def open_database(
    url: str, *, create: bool = True, busy_seconds: float = DEFAULT_SQLITE_BUSY_SECONDS
) -> Engine:
    """An engine for any SQLAlchemy URL, its schema created or upgraded (Alembic).

    With `create=False` a database that is not there (no SQLite file, or no schema) is a
    NoDatabaseError, and nothing is created: a command that only reads must not leave an empty
    database behind in whatever directory it ran.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ImporterError(f"{url!r} is not a database URL ({exc}).", remedy=Remedy.CHOOSE_DATABASE) from exc
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    where = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.query.get("uri"):
            where = os.path.abspath(parsed.database)
            if not create and not os.path.exists(where):
                raise NoDatabaseError(where)
        engine = create_engine(parsed, connect_args={"timeout": busy_seconds}, poolclass=NullPool)
        _configure_sqlite(engine)
    else:
        engine = create_engine(
            parsed,
            pool_pre_ping=True,
            # No server-side prepared statements: after five runs psycopg would prepare one, and
            # PostgreSQL's generic plan for `IN (<5,000 parameters>)` scans a whole batch each time.
            connect_args={"prepare_threshold": None} if parsed.drivername.endswith("psycopg") else {},
        )
    event.listen(engine, "handle_error", _name_error)
    try:
        if not create and current_revision(engine) is None:
            engine.dispose()
            raise NoDatabaseError(where)
        upgrade_schema(engine)
    except OperationalError as exc:
        raise ImporterError(
            f"cannot open the database {parsed.render_as_string(hide_password=True)}: "
            f"{str(exc.orig).strip().splitlines()[0]}"
        ) from exc
    return engine


# PostgreSQL's SQLSTATEs for "another transaction is in the way".
_PG_LOCK_NOT_AVAILABLE = "55P03"
_PG_CONFLICTS = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure
_SQLITE_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def database_error(exc: BaseException) -> ImporterError | None:
    """The user's own message for a database error caused by another writer, or None for others.

    Used for every statement of every engine (the handle_error hook below) and for the driver
    cursor the PostgreSQL bulk load uses directly.
    """
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(exc, sqlite3.OperationalError) and (
        (code is not None and code & 0xFF in _SQLITE_BUSY_CODES) or "database is locked" in str(exc)
    ):
        return DatabaseBusyError(
            "the database is busy: another import or process kept it locked for longer than this "
            "one waits; nothing was changed. Try again when it has finished."
        )
    state = getattr(exc, "sqlstate", None)
    if state == _PG_LOCK_NOT_AVAILABLE:
        return DatabaseBusyError(
            "the database is busy: another import or process holds a lock this one needs; nothing "
            "was changed. Try again when it has finished."
        )
    if state in _PG_CONFLICTS:
        return WriteConflictError(
            "another import wrote the same members at the same moment and the database stopped "
            "this one; nothing was written. Run the import again: members the other import "
            "created will be reported as skipped."
        )
    return None


def _name_error(context: ExceptionContext) -> None:
    mapped = database_error(context.original_exception)
    if mapped is not None:
        raise mapped from context.original_exception


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
        config.set_main_option("script_location", "importer.store:migrations")
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    return True


_SQLITE_CACHE_KIB = 64 * 1024
_SQLITE_PAGE_BYTES = 16 * 1024


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
            # A new database gets 16 KiB pages (before WAL fixes the size; no-op for an existing
            # one): a million-row import's B-trees are shallower and split less (-15% insert CPU).
            cursor.execute(f"PRAGMA page_size={_SQLITE_PAGE_BYTES}")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            # 64 MiB of page cache (the default is 2 MiB): a million-row import keeps its index
            # pages in memory instead of spilling and re-reading them (-30% insert time measured).
            cursor.execute(f"PRAGMA cache_size=-{_SQLITE_CACHE_KIB}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextlib.contextmanager
def parents_checked_by_writer(conn: Connection) -> Iterator[None]:
    """SQLite: no foreign-key look-up per written row in the block; the writer checks parents itself.

    For a bulk load inside one `BEGIN IMMEDIATE` transaction: it holds the database's write lock,
    so the parents its rows point to (the organization, the batch it just wrote, its teams) cannot
    go away before it commits, and the writer checks the few distinct parents it used once, inside
    the transaction, before committing (MemberLoader.check_parents). SQLite's look-up per row
    and key was 14% of a million-row insert. The pragma cannot change inside a transaction, so it
    is set around it, and set back even when the block fails. Other databases: unchanged.
    """
    driver = conn.connection.driver_connection if conn.dialect.name == "sqlite" else None
    if not isinstance(driver, sqlite3.Connection) or conn.in_transaction():
        yield
        return
    driver.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        with contextlib.suppress(sqlite3.ProgrammingError):  # closed (invalidated): nothing to restore
            try:
                if driver.in_transaction:  # the block left one open (an error): nothing may stay
                    driver.rollback()
            finally:
                driver.execute("PRAGMA foreign_keys=ON")  # a no-op inside a transaction, hence above


def is_sqlite(engine: Engine) -> bool:
    """Whether the engine talks to SQLite."""
    return engine.dialect.name == "sqlite"


# Held while an organization's members are emailed (send-activations) or removed (batch undo).
MAILING_LOCK = "mailing"


class NamedLock:
    """The lock `name` on `key` (an int32, such as a row id): `acquire` waits for it; waiters take turns.

    PostgreSQL: a session advisory lock on a connection of its own, taken and released in short
    transactions, never left idle in one; the server serves waiters in turn. SQLite: flock on
    `<database file>.<name>-<key>.lock`, not a transaction, which would hold the write lock of the
    whole database (and stall imports) for the block. The file exists only while someone holds or
    waits for the lock (each holder removes it as it lets go; a waiter left holding a removed file
    starts again), and waiters pass a second lock, `….gate`, first, so a holder that lets go and
    takes the lock straight back (pass_turn) queues behind them. Either dies with the process that
    holds it. Other databases, and SQLite in memory, get no lock.
    """

    def __init__(self, engine: Engine, name: str, key: int) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        # Two int4 keys: a space apart from the single bigint key of the migration lock.
        self._params = {"space": zlib.crc32(name.encode()) & 0x7FFF_FFFF, "key": key}
        database = "" if self._postgres or not is_sqlite(engine) else _sqlite_file(engine)
        self._path = f"{database}.{name}-{key}" if database else ""
        self._holder: Connection | None = None
        self._descriptor: int | None = None

    def acquire(self) -> None:
        """Wait for the lock and take it."""
        if self._postgres:
            holder = self._engine.connect()
            try:
                with holder.begin():
                    holder.execute(_PG_LOCK, self._params)
            except BaseException:
                holder.close()  # a closed session holds no lock
                raise
            self._holder = holder
        elif self._path:
            gate = _take_file_lock(f"{self._path}.gate")
            try:
                self._descriptor = _take_file_lock(f"{self._path}.lock")
            finally:
                _give_file_lock(f"{self._path}.gate", gate)

    def release(self) -> None:
        """Let the lock go."""
        holder, self._holder = self._holder, None
        if holder is not None:
            try:
                with holder.begin():
                    holder.execute(_PG_UNLOCK, self._params)
            except SQLAlchemyError:
                holder.invalidate()  # a closed session holds no lock
            finally:
                holder.close()
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is not None:
            _give_file_lock(f"{self._path}.lock", descriptor)

    def pass_turn(self) -> None:
        """Let whoever waits for the lock have it first, then take it back."""
        self.release()
        self.acquire()

    def __enter__(self) -> NamedLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _take_file_lock(path: str) -> int:
    """flock on the file at `path`, created if need be; its descriptor, to give to _give_file_lock."""
    while True:
        try:
            # flock needs no write access: whoever may read the lock file may take the lock.
            descriptor = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ImporterError(f"cannot open the lock file {path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)  # held until the descriptor is closed
            if os.path.samestat(os.fstat(descriptor), os.stat(path)):
                return descriptor
        except FileNotFoundError:
            pass  # its holder removed the file as it let go: take the one at the path now
        except BaseException:
            os.close(descriptor)
            raise
        os.close(descriptor)


def _give_file_lock(path: str, descriptor: int) -> None:
    """Remove the lock file (while still holding it), then let go."""
    try:
        with contextlib.suppress(OSError):
            os.unlink(path)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def hold_lock(engine: Engine, name: str, key: int) -> Iterator[None]:
    """Hold the lock `name` on `key` for the block; others wait for it (see NamedLock)."""
    with NamedLock(engine, name, key):
        yield


_PG_LOCK = text("SELECT pg_advisory_lock(CAST(:space AS integer), CAST(:key AS integer))")
_PG_UNLOCK = text("SELECT pg_advisory_unlock(CAST(:space AS integer), CAST(:key AS integer))")


def _sqlite_file(engine: Engine) -> str:
    """The real path of the main database file, as SQLite opened it ("" in memory)."""
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute("PRAGMA database_list")
        found = [str(row[2] or "") for row in cursor.fetchall() if row[1] == "main"]
    finally:
        connection.close()
    return os.path.realpath(found[0]) if found and found[0] else ""
